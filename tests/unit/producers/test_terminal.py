"""producers.cli.terminal.printable: what the CLI does to untrusted text before it reaches a terminal."""

from __future__ import annotations

import unicodedata

import pytest

from producers.cli.terminal import MAX_SHOWN_CHARS, printable


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\x1b[2J\x1b]0;owned\x07", "\\x1b[2J\\x1b]0;owned\\x07"),  # ESC and OSC: the screen stays as it is
        ("a\x9b31mb", "a\\x9b31mb"),  # C1 CSI, which some terminals take as ESC [
        ("line\r\nnext\x85\u2028", "line\\x0d\\x0anext\\x85\\u2028"),  # one line whatever the breaks
        (
            "\u202eabc\u2066\u200f\u200b\ufeff",
            "\\u202eabc\\u2066\\u200f\\u200b\\ufeff",
        ),  # bidi and zero-width
        (
            "name\udcff.json",
            "name\\udcff.json",
        ),  # a lone surrogate from an undecodable file name: printable bytes
        ("\U000e0041", "\\U000e0041"),  # a tag character
        (
            "👨\u200d👩\u200d👧",
            "👨\u200d👩\u200d👧",
        ),  # ZWJ kept: an emoji sequence, nothing a terminal acts on
        ("Ủy ban nhân dân xã Bão số 5", "Ủy ban nhân dân xã Bão số 5"),  # Vietnamese kept as it is
        (
            unicodedata.normalize("NFD", "Ủy ban"),
            unicodedata.normalize("NFD", "Ủy ban"),
        ),  # NFD marks are printable
    ],
)
def test_what_a_terminal_would_act_on_is_escaped(text: str, shown: str) -> None:
    assert printable(ValueError(text)) == shown  # any object, as str() gives it
    assert printable(text) == shown
    shown.encode("utf-8")  # strict: no lone surrogate left to fail the print


def test_long_text_is_cut_at_the_limit_with_a_count() -> None:
    assert printable("x" * 5000) == "x" * 5000  # no limit unless asked
    assert printable("x" * MAX_SHOWN_CHARS, limit=MAX_SHOWN_CHARS) == "x" * MAX_SHOWN_CHARS
    assert (
        printable("x" * (MAX_SHOWN_CHARS + 1), limit=MAX_SHOWN_CHARS)
        == "x" * MAX_SHOWN_CHARS + " … (1 more characters)"
    )
    assert printable("\x1b" * 100, limit=10) == "\\x1b\\x1b … (98 more characters)"  # never half an escape
