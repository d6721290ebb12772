"""schemas/text.py: one NFC rule for identifiers, one rule for what a reader may be shown, bounds."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from schemas.text import INVISIBLE, KEPT_JOINERS, bounded, identifier, visible, visible_json

BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
ZERO_WIDTH = "\u200b\u2060\ufeff\u180e\u00ad"


def test_every_format_character_but_the_joiners_is_invisible() -> None:
    # Checked against the running Python's Unicode database, so a newer Unicode that adds a
    # format character fails here until INVISIBLE names it.
    missing = [
        f"U+{c:04X}"
        for c in range(sys.maxunicode + 1)
        if unicodedata.category(chr(c)) == "Cf" and chr(c) not in KEPT_JOINERS and not INVISIBLE.match(chr(c))
    ]
    assert not missing, missing
    assert not INVISIBLE.search(KEPT_JOINERS)


@pytest.mark.parametrize(
    "ch",
    list(BIDI + ZERO_WIDTH)
    + ["\U000e0041", "\x1b", "\x00", "\x7f", "\x9b", "\ufffe", "\U0010ffff", "\ufdd0"],
)
def test_bidi_zero_width_controls_and_noncharacters_are_dropped(ch: str) -> None:
    assert visible(f"Tin{ch} nóng") == "Tin nóng"


def test_headline_spoofing_is_undone() -> None:
    # U+202E shows "tấn gnôc" reversed; the reader must see the letters as they are stored.
    assert visible("Giá vàng \u202egnảig\u202c hôm nay") == "Giá vàng gnảig hôm nay"
    assert visible("\u2067\u05d0\u2069 \u200fx") == "\u05d0 x"  # isolates and marks gone, the letters kept


def test_what_vietnamese_needs_is_kept() -> None:
    decomposed = unicodedata.normalize("NFD", "Ủy ban nhân dân phường Hà Đông")
    assert visible(decomposed) == "Ủy ban nhân dân phường Hà Đông"  # combining marks composed, not dropped
    assert visible("x\u0303\u0323") == unicodedata.normalize(
        "NFC", "x\u0303\u0323"
    )  # no precomposed form: kept
    assert visible("Dòng 1\n\tDòng 2") == "Dòng 1\n\tDòng 2"
    assert visible("a\r\nb\rc") == "a\nb\nc"


def test_the_joiners_are_kept_for_emoji_and_the_scripts_that_need_them() -> None:
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"
    assert visible(f"Gia đình {family}") == f"Gia đình {family}"
    assert visible("\u17a2\u200c\u17d2") == "\u17a2\u200c\u17d2"  # ZWNJ inside Khmer
    assert visible("\u2764\ufe0f") == "\u2764\ufe0f"  # variation selector: emoji presentation


def test_visible_json_cleans_every_string_value() -> None:
    assert visible_json({"title": "a\u202eb", "parts": ["c\u200bd", 3, None], "n": {"x": "\ufeffe"}}) == {
        "title": "ab",
        "parts": ["cd", 3, None],
        "n": {"x": "e"},
    }


def test_identifier_is_nfc_and_trimmed() -> None:
    nfd = unicodedata.normalize("NFD", " urn:lantoa:article:tin-hà-nội ")
    assert identifier(nfd) == "urn:lantoa:article:tin-hà-nội"
    assert unicodedata.is_normalized("NFC", identifier(nfd))


def test_bounded_at_the_bound_and_past_it() -> None:
    assert bounded("x" * 100, 100) == "x" * 100
    cut = bounded("x" * 101, 100)
    assert len(cut) == 100 and cut.startswith("x" * 50) and cut.endswith("[cut, 101 characters]")
    huge = bounded("k" * 800_000, 2000)
    assert len(huge) == 2000 and "800000 characters" in huge
