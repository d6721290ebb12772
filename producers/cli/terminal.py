"""What the CLI prints of strings it did not write: header values, keys, reasons, citizens' texts.

A dead letter's headers, a receipt's reason or a citizen's question may hold anything, terminal
escape sequences included (``ESC ] 52`` writes the operator's clipboard, ``ESC [ 2 J`` clears the
screen, a bidi override reverses what a line seems to say, a newline forges a line of output).
Every such string goes through ``printable`` (text output) or ``printable_json`` (``--json``):
each control character is shown escaped the way Python writes it (``\\x1b``, ``\\u202e``), so the
operator sees exactly what the record holds and the terminal interprets none of it.

Escaped: C0 and C1 controls (tab, newline and carriage return too, unless a multi-line value is
printed with ``newlines=True``), every invisible character schemas/text.py drops from payloads
(bidi, zero-width and other format characters, non-characters, lone surrogates) and the line and
paragraph separators. Kept: everything visible, Vietnamese letters and combining marks, and the
two joiners ZWNJ/ZWJ (emoji sequences in citizens' messages), which no terminal acts on.
A backslash is printed as it is: the output is for reading, not for parsing back.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from schemas.text import INVISIBLE

# Longest untrusted text the CLI's doors print in one place (``limit=MAX_SHOWN_CHARS``): a reason
# quotes at most a few dozen characters of the input, so 300 keeps every reason whole while a
# hostile value (a 5,000-digit version, a megabyte uri) cannot flood the terminal.
MAX_SHOWN_CHARS: Final = 300

_EXTRA: Final = re.compile("[\t\n\r\u2028\u2029]")
_EXTRA_MULTILINE: Final = re.compile("[\t\r\u2028\u2029]")
_SEPARATORS: Final = re.compile("[\u2028\u2029]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shown(text: str, newlines: bool) -> str:
    return (_EXTRA_MULTILINE if newlines else _EXTRA).sub(_escaped, INVISIBLE.sub(_escaped, text))


def printable(value: object, *, newlines: bool = False, limit: int | None = None) -> str:
    """``str(value)`` with every control character escaped (newlines kept if ``newlines``); past
    ``limit`` characters of output the rest is replaced by `` … (N more characters)``, never half
    an escape."""
    text = str(value)
    shown = _shown(text, newlines)
    if limit is None or len(shown) <= limit:
        return shown
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        piece = _shown(ch, newlines)
        if size + len(piece) > limit:
            return "".join(out) + f" … ({len(text) - i} more characters)"
        out.append(piece)
        size += len(piece)
    return "".join(out)


def _json_escaped(match: re.Match[str]) -> str:
    data = match.group().encode("utf-16-be", "surrogatepass")
    return "".join(f"\\u{int.from_bytes(data[i : i + 2], 'big'):04x}" for i in range(0, len(data), 2))


def printable_json(value: Any) -> str:
    """``value`` as indented JSON whose strings hold no raw control character: orjson escapes C0
    already; DEL, C1, bidi, zero-width and the separators become ``\\uXXXX`` escapes (still valid
    JSON, the same value for a program reading it)."""
    text = orjson.dumps(value, option=orjson.OPT_INDENT_2).decode()
    return escape_json_text(text)


def escape_json_text(text: str) -> str:
    """JSON text (from any encoder) with the raw controls inside its strings as ``\\uXXXX``. A raw
    tab, newline or carriage return in JSON text is structure (an encoder escapes them inside
    strings), so they stay."""
    return _SEPARATORS.sub(_json_escaped, INVISIBLE.sub(_json_escaped, text))
