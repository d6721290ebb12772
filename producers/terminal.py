"""Untrusted text (file names, reasons quoting the input) made safe to print on one terminal line. No I/O."""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_SHOWN_CHARS", "printable"]

# Longest untrusted text the CLI prints in one place: a reason quotes at most a few dozen characters
# of the input, so 300 keeps every reason whole while a hostile value cannot flood the terminal.
MAX_SHOWN_CHARS: Final = 300


def printable(text: str, limit: int = MAX_SHOWN_CHARS) -> str:
    """``text`` with nothing a terminal acts on, on one line, at most ``limit`` characters (plus " …").

    Every character that is not printable (C0/C1 controls such as ESC and CSI, line breaks, bidi and
    zero-width format characters, lone surrogates from undecodable file names, unassigned code
    points) is written as its Python escape (``\\x1b``, ``\\u202e``, ``\\udcff``); letters with
    diacritics, Vietnamese included, are kept as they are.
    """
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        shown = ch if ch.isprintable() else _escape(ch)
        if size + len(shown) > limit:
            return "".join(out) + f" … ({len(text) - i} more characters)"
        out.append(shown)
        size += len(shown)
    return "".join(out)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
