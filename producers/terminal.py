"""Untrusted text (file names, reasons quoting the input, identifiers) made safe to print on one
terminal line. No I/O."""

from __future__ import annotations

from typing import Final

__all__ = ["MAX_SHOWN_CHARS", "printable"]

# Longest untrusted text the CLI's doors print in one place: a reason quotes at most a few dozen
# characters of the input, so 300 keeps every reason whole while a hostile value (a 5,000-digit
# version, a megabyte uri) cannot flood the terminal.
MAX_SHOWN_CHARS: Final = 300
_KEPT: Final = frozenset("\u200c\u200d")  # ZWNJ, ZWJ: emoji sequences and scripts need them; no terminal acts on them


def printable(value: object, *, limit: int | None = None) -> str:
    """``str(value)`` with nothing a terminal acts on, on one line; cut at ``limit`` characters.

    Every character that is not printable (C0/C1 controls such as ESC and CSI, line breaks, bidi and
    zero-width format characters, lone surrogates from undecodable file names, unassigned code
    points) is written as its Python escape (``\\x1b``, ``\\u202e``, ``\\udcff``); letters with
    diacritics, Vietnamese included, are kept as they are. Past ``limit`` the rest is replaced by
    `` … (N more characters)``, never half an escape.
    """
    text = str(value)
    out: list[str] = []
    size = 0
    for i, ch in enumerate(text):
        shown = ch if ch.isprintable() or ch in _KEPT else _escape(ch)
        if limit is not None and size + len(shown) > limit:
            return "".join(out) + f" … ({len(text) - i} more characters)"
        out.append(shown)
        size += len(shown)
    return "".join(out)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
