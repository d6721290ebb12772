"""Vietnamese text normalisation for text-to-speech: the written form → the spoken form. Pure.

espeak-ng reads raw Vietnamese news text badly (dates, times, units, decimal commas, acronyms), so
every bulletin goes through ``normalize`` first. The passes run in a fixed order because the
patterns overlap: separators (quotes, brackets, ellipses) first, phone numbers before thousands
grouping, Roman numerals and abbreviations, full dates before ranges, ranges before dates and
times (so "7h30-11h" reads "đến"), then ordinals, numbers with their units, symbols. Whatever
survives is read digit by digit, so no digit ever reaches the synthesiser.

``normalize`` is idempotent (property-tested): the renderer normalises again, so text that was
already normalised upstream renders, and caches, exactly like its written form.

Output: NFC text, one paragraph per line ("\\n"), single spaces, only the pause marks
``. , ; : ? !`` and a spaced " - ". A paragraph followed by another one always ends with a
pause mark (headings get a "."), so the renderer can insert paragraph breaks.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from typing import Final

from schemas.speech.numbers import (
    DIGITS,
    ZeroTens,
    decimal_to_words,
    digits_to_words,
    number_to_words,
    ordinal_to_words,
)
from schemas.speech.tables import ABBREVIATIONS, CAPS_AMBIGUOUS, PER_UNITS, UNITS

# The word tables are in schemas/speech/tables.py (add abbreviations and units there); their
# names stay importable from here.
__all__ = ["normalize"]

# Words after which a number is a code read digit by digit ("Đề án 06" → "không sáu").
_CODE_WORDS: Final = r"[Đđ]ề án"
# Words after which a number is a phone number.
_PHONE_WORDS: Final = r"[Ss]ố điện thoại|[Đđ]iện thoại|[Hh]otline|[Đđ]ường dây nóng|[Tt]ổng đài|SĐT"

_PUNCT: Final = ".,;:?!"
_PUNCT_STRENGTH: Final = {c: i for i, c in enumerate(",:;.!?")}
_NEWLINES: Final = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")
_DASHES: Final = frozenset("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d")
_DROP_CATEGORIES: Final = frozenset({"Cf", "Cs", "Co", "Cn"})


def _alternation(keys: Mapping[str, str], *, boundary: str = r"(?!\w)") -> str:
    """Longest first, each followed by ``boundary`` unless it ends in a symbol."""
    parts = []
    for key in sorted(keys, key=len, reverse=True):
        tail = boundary if key[-1].isalnum() else ""
        parts.append(re.escape(key) + tail)
    return "|".join(parts)


# Context words may touch a digit ("0quý"): digits are spoken as separate words anyway, and a
# second pass over the output must find the same words.
_WORD_START: Final = r"(?<![^\W\d_])"
_WORD_END: Final = r"(?![^\W\d_])"
_ROMAN: Final = (
    rf"(?=[IVXLCDM])M{{0,3}}(?:CM|CD|D?C{{0,3}})(?:XC|XL|L?X{{0,3}})(?:IX|IV|V?I{{0,3}}){_WORD_END}"
)
_NUM: Final = (
    r"(?:[0-9]{1,3}(?:\.[0-9]{3})+(?![0-9])(?:,[0-9]+)?"
    r"|[0-9]+(?:,[0-9]+|\.[0-9]{1,2}(?![0-9]))?)"
)
_NOT_AFTER_NUM: Final = r"(?![0-9]|[.,/][0-9])"
_NOT_BEFORE_NUM: Final = r"(?<![0-9/.,])"

_ABBREV_RE: Final = re.compile(rf"{_WORD_START}(?:{_alternation(ABBREVIATIONS, boundary=_WORD_END)})")
_PHONE_RE: Final = re.compile(
    rf"{_NOT_BEFORE_NUM}(?:\+84[ .-]?|0)[0-9]{{1,4}}(?:[ .-][0-9]{{2,4}}){{1,4}}{_NOT_AFTER_NUM}"
)
_PHONE_AFTER_WORD_RE: Final = re.compile(
    rf"{_WORD_START}(?P<pre>{_PHONE_WORDS})(?P<mid> ?:? ?)(?P<num>\+?[0-9]+(?:[ .-][0-9]+)*){_NOT_AFTER_NUM}"
)
_EMERGENCY_CALL_RE: Final = re.compile(rf"{_WORD_START}(?P<pre>[Gg]ọi) (?P<num>11[1-5])(?![0-9])")
_LONG_DIGITS_RE: Final = re.compile(rf"{_NOT_BEFORE_NUM}[0-9]{{8,}}{_NOT_AFTER_NUM}")
_HIGHWAY_RE: Final = re.compile(rf"{_WORD_START}QL\.? ?(?P<num>[0-9]+)(?P<suffix>[A-Z]?){_WORD_END}")
_ROMAN_CONTEXT_RE: Final = re.compile(
    rf"{_WORD_START}(?P<pre>(?:[Ll]ần|[Kk]ỳ họp|[Kk]hóa|[Kk]hoá) thứ|[Đđ]ại hội|[Kk]hóa|[Kk]hoá|[Kk]ỳ họp"
    rf"|[Tt]hế kỷ|[Cc]hương|[Pp]hần) (?P<roman>{_ROMAN})"
)
_QUARTER_RE: Final = re.compile(
    rf"{_WORD_START}(?P<pre>[Qq]uý) (?:(?P<roman>IV|I{{1,3}})|(?P<num>[1-4])){_WORD_END}"
    r"(?: ?/ ?(?P<y>[0-9]{4})(?![0-9]))?"
)
_DMY_RE: Final = re.compile(
    rf"{_NOT_BEFORE_NUM}(?:(?P<pre>[Nn]gày) )?(?P<d>[0-9]{{1,2}})(?P<sep>[/.-])(?P<m>[0-9]{{1,2}})"
    rf"(?P=sep)(?P<y>[0-9]{{4}})(?![0-9]|[/.,-][0-9])"
)
# "ngày 17-9", "chiều 14-11": a day-month written with a dash needs a word before it, or it is a range.
_DASH_DATE_RE: Final = re.compile(
    rf"{_WORD_START}(?P<pre>[Nn]gày|[Ss]áng|[Tt]rưa|[Cc]hiều|[Tt]ối|[Đđ]êm|[Hh]ôm) (?P<d>[0-9]{{1,2}})-(?P<m>[0-9]{{1,2}})"
    r"(?![0-9]|[-/.,][0-9]| ?(?:giờ|h|g|tiếng|phút|ngày|tháng|năm)(?!\w))"
)
_DAY_RANGE_RE: Final = re.compile(
    rf"{_NOT_BEFORE_NUM}(?:(?P<pre>[Nn]gày) )?(?P<d1>[0-9]{{1,2}}) ?- ?(?P<d>[0-9]{{1,2}})/"
    rf"(?P<m>[0-9]{{1,2}})(?:/(?P<y>[0-9]{{4}}))?{_NOT_AFTER_NUM}"
)
_RANGE_DASH_RE: Final = re.compile(r"(?:(?<=[0-9])|(?<=[0-9][h%])) ?- ?(?=-?[0-9])")
_MY_RE: Final = re.compile(
    rf"{_NOT_BEFORE_NUM}(?:(?P<pre>[Tt]háng) )?(?P<m>[0-9]{{1,2}})/(?P<y>[0-9]{{4}}){_NOT_AFTER_NUM}"
)
_DM_RE: Final = re.compile(
    rf"{_NOT_BEFORE_NUM}(?:(?P<pre>[Nn]gày) )?(?P<d>[0-9]{{1,2}})/(?P<m>[0-9]{{1,2}}){_NOT_AFTER_NUM}"
)
_TIME_RE: Final = re.compile(
    r"(?<![0-9.,:])(?P<h>[0-9]{1,2})(?:[hg](?P<m>[0-9]{2})|:(?P<cm>[0-9]{2})(?::(?P<s>[0-9]{2}))?)"
    r"(?:p(?!\w)| ?phút(?!\w))?(?![0-9])"
)
_HOURS_RE: Final = re.compile(r"(?<![0-9.,:])(?P<h>[0-9]{1,3})h(?!\w)")
_MONTH_RE: Final = re.compile(rf"{_WORD_START}(?P<pre>[Tt]háng) (?P<m>[0-9]{{1,2}}){_NOT_AFTER_NUM}")
_ORDINAL_RE: Final = re.compile(rf"{_WORD_START}(?P<pre>[Tt]hứ) (?P<n>[0-9]{{1,3}}){_NOT_AFTER_NUM}")
_CODE_RE: Final = re.compile(rf"{_WORD_START}(?P<pre>{_CODE_WORDS}) (?P<num>0[0-9]+)(?![0-9])")
_SLASH_BETWEEN_NUMBERS_RE: Final = re.compile(r"(?<=[0-9]) ?/ ?(?=[0-9])")
_WORD_DIGIT_HYPHEN_RE: Final = re.compile(r"(?<=[^\W\d_])-(?=[0-9])|(?<=[0-9])-(?=[^\W\d_])")
_NUMBER_RE: Final = re.compile(
    rf"(?P<dollar>\$ ?)?(?P<sign>(?<![\w)\]])-)?(?<![0-9])(?P<num>{_NUM})"
    rf"(?: ?(?P<unit>{_alternation(UNITS)})(?:/(?P<per>{_alternation(PER_UNITS)}))?)?"
)
# Marks that only separate words: handled first, so that every later pattern sees the words they
# leave side by side (and a second pass over the output sees exactly what the first pass saw).
_SEPARATORS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(r"\.{2,}|…"), ", "),
    (re.compile(r"[()\[\]{}|]"), ", "),
    (re.compile(r"[\"“”„‟«»‹›‘’‚‛'`´]"), ""),
    (re.compile(r"[\\*•·#_^<>@]"), " "),
)
# Symbols read as words once the numbers and units around them are done.
_SYMBOLS: Final[tuple[tuple[re.Pattern[str], str], ...]] = (
    (re.compile(rf"{_WORD_START}km/h(?!\w)"), " ki lô mét trên giờ "),
    (re.compile(rf"{_WORD_START}độ C(?!\w)|° ?C(?!\w)"), " độ xê "),
    (re.compile(r"°"), " độ "),
    (re.compile(r"%"), " phần trăm "),
    (re.compile(r"&"), " và "),
    (re.compile(r"\+"), " cộng "),
    (re.compile(r"="), " bằng "),
    (re.compile(r"~"), " khoảng "),
    (re.compile(r"\$"), " đô la "),
    (re.compile(r"/"), ", "),  # "và/hoặc": a short pause; never glue the two words into a pattern
)
_WORD_HYPHEN_RE: Final = re.compile(r"(?<=\w)-(?=\w)")
_DASH_RUN_RE: Final = re.compile(r" *-[- ]*")
_DASH_BEFORE_PUNCT_RE: Final = re.compile(r"^ *-(?: |$)| - *(?=[.,;:?!]|$)")
_DASH_AFTER_PUNCT_RE: Final = re.compile(r"(?<=[.,;:?!]) *- ")
_SPACE_BEFORE_PUNCT_RE: Final = re.compile(r" +(?=[.,;:?!])")
_PUNCT_RUN_RE: Final = re.compile(r"[.,;:?!](?: *[.,;:?!])+")
_PUNCT_THEN_WORD_RE: Final = re.compile(r"([.,;:?!])(?=[^ .,;:?!])")
_LEADING_PUNCT_RE: Final = re.compile(r"^[ .,;:?!]+")
_SPACES_RE: Final = re.compile(r" {2,}")
_LETTERS_BEFORE_RE: Final = re.compile(r"([^\W\d_]+) +$")
_LETTERS_AFTER_RE: Final = re.compile(r" +([^\W\d_]+)")


def _pad(words: str) -> str:
    # Spaces on both sides so "1A" never glues into "mộtA"; the tidy pass collapses them.
    return f" {words} "


def _days_in_month(month: int, year: int | None) -> int:
    if month == 2:
        leap = year is None or (year % 4 == 0 and (year % 100 != 0 or year % 400 == 0))
        return 29 if leap else 28
    return 30 if month in (4, 6, 9, 11) else 31


def _month_words(month: int, zero_tens: ZeroTens) -> str:
    return "tư" if month == 4 else number_to_words(month, zero_tens=zero_tens)


def _prepare(text: str) -> str:
    """NFC; every digit made ASCII (so later patterns need only [0-9]); dashes made "-"; one kind
    of space; invisible characters out."""
    out: list[str] = []
    for ch in unicodedata.normalize("NFC", text):
        if ch in _NEWLINES:
            out.append("\n")
        elif ch.isspace() or unicodedata.category(ch) == "Cc":
            out.append(" ")
        elif ch in _DASHES:
            out.append("-")
        elif ch == "º":  # the ordinal indicator typed for the degree sign: "25ºC"
            out.append("°")
        elif "0" <= ch <= "9" or ch.isascii():
            out.append(ch)
        else:
            category = unicodedata.category(ch)
            if ch.isdigit():  # "１２", "٣", and also "²" in "m²", which then reads like "m2"
                out.append(chr(48 + unicodedata.digit(ch)))
            elif category not in _DROP_CATEGORIES:
                out.append(ch)
    # Dropping format characters can leave a base letter next to its combining mark.
    return unicodedata.normalize("NFC", "".join(out))


def _capitalised_neighbour(m: re.Match[str]) -> bool:
    """Is the word right before or after the match, across spaces only, in capitals (and not an
    abbreviation or unit that will itself be expanded)? Only spaces count, because the tidy pass
    moves punctuation and line ends, and a second pass over the output must decide the same."""
    before = m.string[max(0, m.start() - 40) : m.start()]
    after = m.string[m.end() : m.end() + 40]
    found = [(b.group(1), before.split()[-1]) for b in [_LETTERS_BEFORE_RE.search(before)] if b]
    found += [(a.group(1), after.split()[0]) for a in [_LETTERS_AFTER_RE.match(after)] if a]
    return any(
        len(word) > 1
        and word.isupper()
        and not {word, token.strip(_PUNCT)} & (ABBREVIATIONS.keys() | UNITS.keys())
        for word, token in found
    )


def _expand_abbreviation(m: re.Match[str]) -> str:
    key = m.group(0)
    if key in CAPS_AMBIGUOUS:
        if _capitalised_neighbour(m):
            return key
    words = ABBREVIATIONS[key]
    if key.endswith(".") and m.string[m.end() : m.end() + 1] in ("", "\n"):
        words += "."  # "v.v." ending a paragraph also ended the sentence
    return _pad(words)


def _roman_value(roman: str) -> int:
    values = {"I": 1, "V": 5, "X": 10, "L": 50, "C": 100, "D": 500, "M": 1000}
    total = 0
    for i, ch in enumerate(roman):
        value = values[ch]
        if i + 1 < len(roman) and values[roman[i + 1]] > value:
            total -= value
        else:
            total += value
    return total


def _digit_groups(text: str) -> str:
    """A phone number: digits one by one, a pause between written groups."""
    groups = [g for g in re.split(r"[^0-9+]+", text) if g]
    spoken = [("cộng " if g.startswith("+") else "") + digits_to_words(g) for g in groups]
    return ", ".join(s for s in spoken if s)


Step = Callable[[str, ZeroTens], str]


def _phones(s: str, z: ZeroTens) -> str:
    s = _PHONE_AFTER_WORD_RE.sub(
        lambda m: f"{m.group('pre')}{m.group('mid')}{_pad(_digit_groups(m.group('num')))}", s
    )
    s = _EMERGENCY_CALL_RE.sub(lambda m: f"{m.group('pre')}{_pad(digits_to_words(m.group('num')))}", s)

    def phone(m: re.Match[str]) -> str:
        if sum(c.isdigit() for c in m.group(0)) < 9:
            return m.group(0)
        return _pad(_digit_groups(m.group(0)))

    s = _PHONE_RE.sub(phone, s)
    return _LONG_DIGITS_RE.sub(lambda m: _pad(digits_to_words(m.group(0))), s)


def _abbreviations(s: str, z: ZeroTens) -> str:
    def highway(m: re.Match[str]) -> str:
        suffix = f" {m.group('suffix')}" if m.group("suffix") else ""
        return _pad(f"quốc lộ {number_to_words(int(m.group('num')), zero_tens=z)}{suffix}")

    s = _HIGHWAY_RE.sub(highway, s)
    return _ABBREV_RE.sub(_expand_abbreviation, s)


def _roman_numerals(s: str, z: ZeroTens) -> str:
    def context(m: re.Match[str]) -> str:
        value = _roman_value(m.group("roman"))
        pre = m.group("pre")
        words = (
            ordinal_to_words(value, zero_tens=z)
            if pre.endswith("thứ")
            else number_to_words(value, zero_tens=z)
        )
        return f"{pre}{_pad(words)}"

    def quarter(m: re.Match[str]) -> str:
        roman, num = m.group("roman"), m.group("num")
        value = _roman_value(roman) if roman else int(num)
        words = f"{m.group('pre')} {number_to_words(value, zero_tens=z)}"
        if m.group("y"):
            words += f" năm {number_to_words(int(m.group('y')), zero_tens=z)}"
        return _pad(words)

    s = _ROMAN_CONTEXT_RE.sub(context, s)
    return _QUARTER_RE.sub(quarter, s)


def _date_words(m: re.Match[str], z: ZeroTens, *, first_day: int | None = None) -> str:
    """ "ngày D tháng M [năm Y]", or the match unchanged if it is not a real date."""
    groups = m.groupdict()
    day, month = int(m.group("d")), int(m.group("m"))
    year = int(groups["y"]) if groups.get("y") else None
    if year is not None and year < 1000:
        return m.group(0)
    if not 1 <= month <= 12:
        return m.group(0)
    last = _days_in_month(month, year)
    if not 1 <= day <= last or (first_day is not None and not 1 <= first_day <= last):
        return m.group(0)
    days = number_to_words(day, zero_tens=z)
    if first_day is not None:
        days = f"{number_to_words(first_day, zero_tens=z)} đến {days}"
    pre = m.group("pre") or "ngày"
    if pre.lower() != "ngày":
        pre = f"{pre} ngày"  # "chiều 14-11" → "chiều ngày mười bốn tháng mười một"
    words = f"{pre} {days} tháng {_month_words(month, z)}"
    if year is not None:
        words += f" năm {number_to_words(year, zero_tens=z)}"
    return _pad(words)


def _full_dates(s: str, z: ZeroTens) -> str:
    s = _DMY_RE.sub(lambda m: _date_words(m, z), s)
    s = _DASH_DATE_RE.sub(lambda m: _date_words(m, z), s)
    return _DAY_RANGE_RE.sub(lambda m: _date_words(m, z, first_day=int(m.group("d1"))), s)


def _ranges(s: str, z: ZeroTens) -> str:
    return _RANGE_DASH_RE.sub(" đến ", s)


def _dates_and_times(s: str, z: ZeroTens) -> str:
    def month_year(m: re.Match[str]) -> str:
        month, year = int(m.group("m")), int(m.group("y"))
        if not 1 <= month <= 12 or year < 1000:
            return m.group(0)
        pre = m.group("pre") or "tháng"
        return _pad(f"{pre} {_month_words(month, z)} năm {number_to_words(year, zero_tens=z)}")

    def clock(m: re.Match[str]) -> str:
        hours = int(m.group("h"))
        minutes = int(m.group("m") or m.group("cm"))
        seconds = int(m.group("s")) if m.group("s") else 0
        if hours > 24 or minutes > 59 or seconds > 59:
            return m.group(0)
        words = f"{number_to_words(hours, zero_tens=z)} giờ"
        if minutes:
            words += f" {number_to_words(minutes, zero_tens=z)} phút"
        if seconds:
            words += f" {number_to_words(seconds, zero_tens=z)} giây"
        return _pad(words)

    def month(m: re.Match[str]) -> str:
        value = int(m.group("m"))
        if not 1 <= value <= 12:
            return m.group(0)
        return f"{m.group('pre')}{_pad(_month_words(value, z))}"

    s = _MY_RE.sub(month_year, s)
    s = _DM_RE.sub(lambda m: _date_words(m, z), s)
    s = _SLASH_BETWEEN_NUMBERS_RE.sub(" trên ", s)  # what is left is a ratio: "24/24" (hours)
    s = _TIME_RE.sub(clock, s)
    s = _HOURS_RE.sub(lambda m: _pad(f"{number_to_words(int(m.group('h')), zero_tens=z)} giờ"), s)
    return _MONTH_RE.sub(month, s)


def _special_numbers(s: str, z: ZeroTens) -> str:
    s = _ORDINAL_RE.sub(
        lambda m: f"{m.group('pre')}{_pad(ordinal_to_words(int(m.group('n')), zero_tens=z))}", s
    )
    s = _CODE_RE.sub(lambda m: f"{m.group('pre')}{_pad(digits_to_words(m.group('num')))}", s)
    return _WORD_DIGIT_HYPHEN_RE.sub(" ", s)


def _numbers(s: str, z: ZeroTens) -> str:
    def number(m: re.Match[str]) -> str:
        num = m.group("num")
        if len(num) >= 3 and num[0] == "0" and num.isdigit():
            words = digits_to_words(num)  # a code such as "007", not a quantity
        else:
            words = decimal_to_words(num, zero_tens=z)
        if m.group("sign"):
            words = f"âm {words}"
        unit = m.group("unit")
        if unit:
            words += f" {UNITS[unit]}"
            if m.group("per"):
                words += f" trên {PER_UNITS[m.group('per')]}"
        if m.group("dollar"):
            words += " đô la"
        return _pad(words)

    return _NUMBER_RE.sub(number, s)


def _separators(s: str, z: ZeroTens) -> str:
    for pattern, replacement in _SEPARATORS:
        s = pattern.sub(replacement, s)
    return s


def _symbols(s: str, z: ZeroTens) -> str:
    for pattern, replacement in _SYMBOLS:
        s = pattern.sub(replacement, s)
    return s


def _leftover_digits(s: str, z: ZeroTens) -> str:
    if not any(ch.isdigit() for ch in s):
        return s
    return "".join(_pad(DIGITS[unicodedata.digit(ch)]) if ch.isdigit() else ch for ch in s)


_STEPS: Final[tuple[Step, ...]] = (
    _separators,
    _phones,
    _roman_numerals,
    _abbreviations,
    _full_dates,
    _ranges,
    _dates_and_times,
    _special_numbers,
    _numbers,
    _symbols,
    _leftover_digits,
)


def _strongest(m: re.Match[str]) -> str:
    marks = [c for c in m.group(0) if c in _PUNCT]
    return max(marks, key=lambda c: _PUNCT_STRENGTH[c])


def _tidy_line(line: str) -> str:
    line = _WORD_HYPHEN_RE.sub(" - ", line)
    line = _DASH_RUN_RE.sub(" - ", f" {line} ").strip()
    line = _DASH_BEFORE_PUNCT_RE.sub("", line)
    line = _DASH_AFTER_PUNCT_RE.sub(" ", line)
    line = _SPACE_BEFORE_PUNCT_RE.sub("", line)
    line = _PUNCT_RUN_RE.sub(_strongest, line)
    line = _PUNCT_THEN_WORD_RE.sub(r"\1 ", line)
    line = _LEADING_PUNCT_RE.sub("", line)
    line = _SPACES_RE.sub(" ", line).strip()
    # A dash left dangling at either end after the punctuation moved.
    line = _DASH_BEFORE_PUNCT_RE.sub("", line).strip()
    return line


def _tidy(s: str) -> str:
    lines = [t for t in (_tidy_line(line) for line in s.split("\n")) if t]
    for i in range(len(lines) - 1):
        if lines[i][-1] == ",":
            lines[i] = lines[i][:-1] + "."
        elif lines[i][-1] not in _PUNCT:
            lines[i] += "."
    if lines and lines[-1][-1] == ",":
        lines[-1] = lines[-1][:-1].rstrip()
    return "\n".join(line for line in lines if line)


def normalize(text: str, *, zero_tens: ZeroTens = "linh") -> str:
    """The spoken form of Vietnamese written ``text``, ready for espeak-ng.

    ``zero_tens`` is the word for a zero tens digit (105 một trăm *linh* năm; southern *lẻ*).
    Never raises for a ``str``; the result holds no digits (anything unrecognised is read digit
    by digit).
    """
    s = _prepare(text)
    for step in _STEPS:
        # Steps pad their output with spaces; the patterns expect single ones.
        s = _SPACES_RE.sub(" ", step(s, zero_tens))
    return _tidy(s)
