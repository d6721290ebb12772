"""Text hygiene at the doors: one NFC rule for identifiers, one rule for what may be shown. Pure.

- ``identifier`` is how every door reads an article uri, a question or target id, a CAP
  identifier: Unicode NFC, outer blanks trimmed. Articles are stored under the NFC form of their
  uri, so a retraction, a status query or a CLI argument typed or sent in NFD (macOS file names,
  some input methods: "Hà" as ``H a U+0300``) must name the same article, not a stranger.
- ``visible`` is how every text that reaches a reader (fanpage post, Zalo message, loudspeaker
  bulletin, archive page, an editor's reply, a CAP headline) is cleaned, once where it enters and
  again in the renderers: NFC, and the characters that change what a reader sees without being
  seen are dropped (``INVISIBLE``). Bidi overrides and isolates reorder a line ("headline
  spoofing": U+202E turns "gnâht" into "thâng"); zero-width and other format characters hide text
  from filters and from the editor's eye; C0/C1 controls are not text.
  Kept, on purpose: what Vietnamese needs (combining marks, category Mn: after NFC they are mostly
  composed into precomposed letters, and the few that are not, such as a tone mark on a letter
  with no precomposed form, must stay), variation selectors (emoji presentation), tab and newline,
  and the two joiners ZWNJ (U+200C) and ZWJ (U+200D): they only choose how adjacent characters
  join (emoji sequences such as a family or a flag; Khmer and other scripts of Vietnam's
  minorities), cannot reorder or hide a run of text, and dropping them breaks those sequences.
- ``bounded`` cuts a string from untrusted input (a reason quoting a key, a header value) to a
  documented size, saying how long it was.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any, Final

# Unicode format characters (category Cf) but ZWNJ/ZWJ, as of Unicode 15 (a test checks this
# against the running Python's unicodedata): soft hyphen, Arabic and Syriac number signs, ALM
# (U+061C), Mongolian vowel separator, ZWSP (U+200B), LRM/RLM (U+200E/F), the bidi embeddings and
# overrides (U+202A-E), word joiner and invisible operators (U+2060-4), the bidi isolates
# (U+2066-9) and deprecated format characters (U+206A-F), BOM/ZWNBSP (U+FEFF), interlinear
# annotation (U+FFF9-B), and the format controls of a few historic scripts, music and tags
# (U+E0001, U+E0020-7F: invisible "tag" letters that smuggle text past a reader).
_FORMAT: Final = (
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b\u200e\u200f\u202a-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
# C0 and C1 controls but tab and newline (a carriage return becomes a newline first).
_CONTROLS: Final = "\x00-\x08\x0b-\x1f\x7f-\x9f"
# Lone surrogates cannot be encoded to UTF-8; non-characters are never text to interchange.
_NONCHARACTERS: Final = "\ud800-\udfff\ufdd0-\ufdef" + "".join(
    f"{chr(plane * 0x10000 + 0xFFFE)}{chr(plane * 0x10000 + 0xFFFF)}" for plane in range(17)
)
INVISIBLE: Final = re.compile(f"[{_FORMAT}{_CONTROLS}{_NONCHARACTERS}]")
KEPT_JOINERS: Final = "\u200c\u200d"

_NEWLINES = re.compile(r"\r\n?")


def nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def identifier(text: str) -> str:
    """An identifier as every door reads it: NFC, outer blanks trimmed."""
    return unicodedata.normalize("NFC", text).strip()


def visible(text: str) -> str:
    """``text`` as a reader may be shown it: NFC, line ends as newlines, INVISIBLE dropped."""
    return INVISIBLE.sub("", _NEWLINES.sub("\n", unicodedata.normalize("NFC", text)))


def visible_json(value: Any) -> Any:
    """``visible`` on every string value of a JSON value (keys are Lantoa's own and left alone)."""
    if isinstance(value, str):
        return visible(value)
    if isinstance(value, list):
        return [visible_json(v) for v in value]
    if isinstance(value, dict):
        return {k: visible_json(v) for k, v in value.items()}
    return value


def invisible_in(text: str, what: str) -> str | None:
    """The reason to refuse identifier ``text`` when it holds an invisible character, else None.
    Identifiers are refused rather than cleaned: two uris that look alike must not be two articles,
    and a cleaned key would no longer be the record's key."""
    found = INVISIBLE.search(text)
    if found is None:
        return None
    return (
        f"{what} contains the invisible character U+{ord(found.group()):04X} (a bidi, zero-width or "
        "control character): identifiers must be visible text"
    )


def bounded(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and how long it was,
    ``limit`` characters in all (``limit`` must leave room for that note: at least 40)."""
    if len(text) <= limit:
        return text
    note = f"… [cut, {len(text)} characters]"
    return text[: max(0, limit - len(note))] + note
