"""Vietnamese number words: integers, decimals, digit strings. Pure, no I/O.

The reading follows the rules newsreaders use (and that espeak-ng does not know):

- 10 is "mười", tens from 20 are "<digit> mươi";
- a final 1 after tens >= 20 is "mốt" (21 hai mươi mốt, but 11 mười một, 101 một trăm linh một);
- a final 4 after tens >= 20 is "tư" (24 hai mươi tư, but 14 mười bốn);
- a final 5 after any tens is "lăm" (15 mười lăm, 25 hai mươi lăm, but 105 một trăm linh năm);
- a zero tens digit before a unit is "linh" (northern) or "lẻ" (southern): 105 một trăm linh năm;
- a three-digit group that is not the leading one is read in full, zero hundreds included:
  2018 hai nghìn không trăm mười tám, 1.005 một nghìn không trăm linh năm; a group that is
  entirely zero is skipped (1.000.500 một triệu năm trăm);
- scales: nghìn, triệu, tỷ, then "nghìn tỷ", "triệu tỷ"... by recursion on tỷ.

Written numbers use the Vietnamese convention: "." groups thousands, "," is the decimal mark.
"""

from __future__ import annotations

import re
from typing import Final, Literal

__all__ = [
    "DIGITS",
    "MAX_WORDS_DIGITS",
    "ZeroTens",
    "decimal_to_words",
    "digits_to_words",
    "number_to_words",
    "ordinal_to_words",
    "parse_number",
]

ZeroTens = Literal["linh", "lẻ"]

DIGITS: Final[tuple[str, ...]] = ("không", "một", "hai", "ba", "bốn", "năm", "sáu", "bảy", "tám", "chín")

# Integers longer than this are read digit by digit: nobody says "mười tám tỷ tỷ", and it keeps
# both the recursion and int() (which refuses > 4300 digits) far from their limits.
MAX_WORDS_DIGITS: Final = 18

_BILLION: Final = 1_000_000_000

# A written number: thousands grouped with ".", or a "," decimal, or the "5.3" short decimal, or
# plain digits. The short-decimal branch ("." then exactly one or two digits) is what the channel
# contracts specify; "5.300" stays five thousand three hundred.
_NUMBER_RE: Final = re.compile(
    r"(?P<sign>[-−])?"
    r"(?:(?P<grouped>[0-9]{1,3}(?:\.[0-9]{3})+)(?:,(?P<gfrac>[0-9]+))?"
    r"|(?P<int>[0-9]+)(?:,(?P<frac>[0-9]+)|\.(?P<dfrac>[0-9]{1,2}))?)"
)


def _below_hundred(n: int) -> str:
    """0-99 on its own (a zero tens digit inside a group is the caller's business)."""
    tens, unit = divmod(n, 10)
    if tens == 0:
        return DIGITS[unit]
    if tens == 1:
        head = "mười"
    else:
        head = f"{DIGITS[tens]} mươi"
    if unit == 0:
        return head
    if unit == 5:
        tail = "lăm"
    elif unit == 1 and tens >= 2:
        tail = "mốt"
    elif unit == 4 and tens >= 2:
        tail = "tư"
    else:
        tail = DIGITS[unit]
    return f"{head} {tail}"


def _group(n: int, *, leading: bool, zero_tens: ZeroTens) -> str:
    """A three-digit group 0-999, ``leading`` when nothing bigger is spoken before it."""
    hundreds, rest = divmod(n, 100)
    if leading and hundreds == 0:
        return _below_hundred(rest)
    words = f"{DIGITS[hundreds]} trăm"
    if rest == 0:
        return words
    if rest < 10:
        return f"{words} {zero_tens} {DIGITS[rest]}"
    return f"{words} {_below_hundred(rest)}"


def _below_billion(n: int, *, leading: bool, zero_tens: ZeroTens) -> str:
    millions, rest = divmod(n, 1_000_000)
    thousands, units = divmod(rest, 1000)
    parts: list[str] = []
    for value, scale in ((millions, "triệu"), (thousands, "nghìn"), (units, "")):
        if value == 0:
            continue
        words = _group(value, leading=leading and not parts, zero_tens=zero_tens)
        parts.append(f"{words} {scale}" if scale else words)
    return " ".join(parts)


def _words(n: int, *, leading: bool, zero_tens: ZeroTens) -> str:
    if n < _BILLION:
        return _below_billion(n, leading=leading, zero_tens=zero_tens)
    billions, rest = divmod(n, _BILLION)
    head = f"{_words(billions, leading=leading, zero_tens=zero_tens)} tỷ"
    if rest == 0:
        return head
    return f"{head} {_words(rest, leading=False, zero_tens=zero_tens)}"


def number_to_words(n: int, *, zero_tens: ZeroTens = "linh") -> str:
    """The Vietnamese reading of an integer: 2018 → "hai nghìn không trăm mười tám".

    Negative numbers are prefixed with "âm". Integers of more than ``MAX_WORDS_DIGITS`` digits
    are read digit by digit. Never raises for an ``int``.
    """
    if n < 0:
        return f"âm {number_to_words(-n, zero_tens=zero_tens)}"
    if n == 0:
        return DIGITS[0]
    if n >= 10**MAX_WORDS_DIGITS:
        return digits_to_words(str(n))
    return _words(n, leading=True, zero_tens=zero_tens)


def ordinal_to_words(n: int, *, zero_tens: ZeroTens = "linh") -> str:
    """The number after "thứ": 1 → "nhất", 4 → "tư", otherwise the cardinal (thứ 14 mười bốn)."""
    if n == 1:
        return "nhất"
    if n == 4:
        return "tư"
    return number_to_words(n, zero_tens=zero_tens)


def digits_to_words(digits: str) -> str:
    """Read ASCII digits one by one ("0912" → "không chín một hai"); other characters are skipped."""
    return " ".join(DIGITS[ord(c) - 48] for c in digits if "0" <= c <= "9")


def _int_words(digits: str, zero_tens: ZeroTens) -> str:
    stripped = digits.lstrip("0")
    if not stripped:
        return DIGITS[0]
    if len(stripped) > MAX_WORDS_DIGITS:
        return digits_to_words(digits)
    return number_to_words(int(stripped), zero_tens=zero_tens)


def _fraction_words(digits: str, zero_tens: ZeroTens) -> str:
    """After "phẩy": leading zeros one by one, then up to three digits as a number (5,25 → hai
    mươi lăm; 5,05 → không năm), longer tails digit by digit."""
    stripped = digits.lstrip("0")
    zeros = [DIGITS[0]] * (len(digits) - len(stripped))
    if not stripped:
        return " ".join(zeros)
    if len(stripped) > 3:
        tail = digits_to_words(stripped)
    else:
        tail = number_to_words(int(stripped), zero_tens=zero_tens)
    return " ".join([*zeros, tail])


def parse_number(text: str) -> tuple[bool, str, str | None]:
    """Split a written number into (negative, integer digits, fraction digits or None).

    Accepts "5.000", "5.300,25", "5,3", "5.3" (short decimal), "-5", "12". Raises ``ValueError``
    for anything else (the whole string must be one number).
    """
    m = _NUMBER_RE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"not a written number: {text!r}")
    negative = m.group("sign") is not None
    if m.group("grouped") is not None:
        return negative, m.group("grouped").replace(".", ""), m.group("gfrac")
    frac = m.group("frac") if m.group("frac") is not None else m.group("dfrac")
    return negative, m.group("int"), frac


def decimal_to_words(text: str, *, zero_tens: ZeroTens = "linh") -> str:
    """The reading of a written (possibly decimal) number: "5,3" → "năm phẩy ba",
    "5.3" → "năm phẩy ba", "5.300" → "năm nghìn ba trăm", "-17,8" → "âm mười bảy phẩy tám".

    Raises ``ValueError`` if ``text`` is not a single written number.
    """
    negative, integer, fraction = parse_number(text)
    words = _int_words(integer, zero_tens)
    if fraction is not None:
        words = f"{words} phẩy {_fraction_words(fraction, zero_tens)}"
    return f"âm {words}" if negative else words
