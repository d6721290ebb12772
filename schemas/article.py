"""The article as the pipeline sees it, read from any ninjs version (2.x lower-case names, 3.x camelCase).

Pure functions: Unicode NFC, whitespace, and the few Lantoa rules on top of ninjs (a uri, an
integer version) that ordering needs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

from schemas.errors import InvalidContent
from schemas.text import identifier, invisible_in, visible
from schemas.times import checked_instant

_WS = re.compile(r"[ \t\u00a0\u2000-\u200b\u3000]+")
_VERSION = re.compile(r"^[1-9][0-9]{0,17}$")
_PLACE = re.compile(r"^urn:lantoa:place:(province|ward):([0-9]{1,6})$")

USABLE = "usable"
RETRACTING_STATUSES = frozenset({"withheld", "canceled"})
# The top-level date-times of each ninjs generation: the pipeline, the archive page and the status
# views read them, so each must be an instant schemas/times.py accepts.
_TIMES_V2 = ("versioncreated", "firstcreated", "embargoed")
_TIMES_V3 = ("versionCreated", "firstCreated", "contentCreated", "embargoedUntil")

# Field bounds, in characters of the plain text the pipeline reads (after HTML is stripped and
# blanks squashed). Past one of them the article is absurd and refused whole (InvalidContent →
# dead letter with the reason); what a single channel cannot take is decided per channel at
# fan-out (streams/articles/bounds.py), so the other channels still get the article.
# A uri is the key of every record and part of every command of the article (3,321 for a
# national one) and of the public link; real ones are under 200.
URI_MAX_CHARS = 512
# A headline is one line on a fanpage, in a Zalo group and on air; real ones are under 200.
HEADLINE_MAX_CHARS = 500
# The summary is what fanpages, Zalo groups and loudspeakers carry (headline + summary): 8,000
# characters is ~1,400 words, ~10 minutes of speech (real summaries are a few hundred). It also
# bounds each of the 3,321 loudspeaker commands of a national article, which all carry the text
# (streams/articles/bounds.py LOUDSPEAKER_PAYLOAD_MAX_BYTES; the worker's peak is in bench/RESULTS.md).
SUMMARY_MAX_CHARS = 8_000
# The body reaches only the archive (page, QR bulletin); the longest long-form pieces are about
# 100,000 characters. The record itself is bounded too (streams/articles/intake.py MAX_EVENT_BYTES).
BODY_MAX_CHARS = 300_000


def nfc(value: Any) -> Any:
    """Unicode NFC on every string of a JSON value, keys included."""
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [nfc(v) for v in value]
    if isinstance(value, dict):
        return {unicodedata.normalize("NFC", k): nfc(v) for k, v in value.items()}
    return value


def squash(text: str) -> str:
    """Collapse runs of blanks inside lines and trim; paragraph breaks are kept."""
    lines = [_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip()


class _TextExtractor(HTMLParser):
    _BLOCK = frozenset({"p", "br", "div", "li", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in self._BLOCK:
            self.parts.append("\n\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Plain text of an HTML fragment: scripts and styles dropped, blocks become paragraphs."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return squash("".join(parser.parts))


def parse_time(value: str | None, what: str = "date-time") -> datetime | None:
    """An RFC 3339 date-time as an aware datetime (naive values are taken as UTC); None for none.

    Raises InvalidContent when it is not a date-time or its year is outside the window of
    schemas/times.py, so the record carrying it is dead-lettered with the reason instead of
    overflowing later in whatever converts it to UTC.
    """
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidContent(f"{what} is not an RFC 3339 date-time: {value[:64]!r}") from None
    checked_instant(moment, what)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Place:
    """A place the article is about, as Lantoa understands it."""

    kind: str  # "province" | "ward"
    code: int


@dataclass(frozen=True, slots=True)
class Article:
    """One version of one article, read from a validated ninjs document."""

    uri: str
    version: int
    ninjs_version: str
    pub_status: str
    headline: str
    summary: str
    body: str
    language: str | None
    urgency: int | None
    embargoed_until: datetime | None
    version_created: str | None
    places: tuple[Place, ...]
    subjects: tuple[str, ...]
    document: dict[str, Any]

    @property
    def retracting(self) -> bool:
        return self.pub_status in RETRACTING_STATUSES


def _first_by_role(items: Any, role: str = "main") -> dict[str, Any] | None:
    if not isinstance(items, list) or not items:
        return None
    for item in items:
        if isinstance(item, dict) and item.get("role") == role:
            return item
    first = items[0]
    return first if isinstance(first, dict) else None


def _text_of(item: dict[str, Any] | None, ctype_name: str = "contentType") -> str:
    if not item:
        return ""
    value = str(item.get("value", ""))
    ctype = str(item.get(ctype_name, "text/plain"))
    # Invisible controls dropped after HTML decoding (``&#x202E;`` is one too), then blanks squashed.
    return squash(visible(html_to_text(value) if "html" in ctype else value))


def _places(raw: Any) -> tuple[Place, ...]:
    found: list[Place] = []
    for item in raw if isinstance(raw, list) else ():
        if not isinstance(item, dict):
            continue
        uri = str(item.get("uri") or item.get("code") or "")
        match = _PLACE.match(uri)
        if match:
            place = Place(match.group(1), int(match.group(2)))
            if place not in found:
                found.append(place)
    return tuple(found)


def _subjects(raw: Any) -> tuple[str, ...]:
    found: list[str] = []
    for item in raw if isinstance(raw, list) else ():
        if isinstance(item, dict):
            uri = item.get("uri") or item.get("code")
            if isinstance(uri, str) and uri and uri not in found:
                found.append(uri)
    return tuple(found)


def check_uri(uri: str) -> None:
    """Refuse a uri past URI_MAX_CHARS (InvalidContent with its length and the bound)."""
    if len(uri) > URI_MAX_CHARS:
        raise InvalidContent(f"uri of {len(uri):,} characters exceeds the {URI_MAX_CHARS:,}-character limit")


def check_lengths(headline: str, summary: str, body: str) -> None:
    """Refuse an article whose headline, summary or body is past its bound (InvalidContent, the
    field, its length and the bound in the reason)."""
    for name, text, bound in (
        ("headline", headline, HEADLINE_MAX_CHARS),
        ("summary", summary, SUMMARY_MAX_CHARS),
        ("body", body, BODY_MAX_CHARS),
    ):
        if len(text) > bound:
            raise InvalidContent(f"{name} of {len(text):,} characters exceeds the {bound:,}-character limit")


def parse_version(value: Any) -> int:
    """The Lantoa rule: ninjs ``version`` must be a positive integer string, so revisions order."""
    if value is None:
        raise InvalidContent("version is missing: Lantoa orders revisions by an integer version")
    if not isinstance(value, str) or not _VERSION.match(value):
        raise InvalidContent(f"version must be a positive integer string, got {value!r}")
    return int(value)


def article_from_ninjs(doc: dict[str, Any], ninjs_version: str) -> Article:
    """Read a schema-valid ninjs document. Raises InvalidContent on the Lantoa rules."""
    doc = nfc(doc)
    uri = doc.get("uri")
    if not isinstance(uri, str) or not uri.strip():
        raise InvalidContent("uri is missing: every article needs a stable uri")
    check_uri(uri)
    version = parse_version(doc.get("version"))
    # 2.x spells property names in lower case (pubstatus, contenttype, embargoed); 3.x camelCase.
    v2 = ninjs_version.startswith("2.")
    pub_status = str(doc.get("pubstatus" if v2 else "pubStatus", USABLE))
    # A uri that hides characters is refused before anything is published under it; a withdrawal
    # is not (one accepted before this rule must still retract, and one of nothing does nothing).
    if pub_status not in RETRACTING_STATUSES and (refused := invisible_in(uri, "uri")) is not None:
        raise InvalidContent(refused)
    ctype = "contenttype" if v2 else "contentType"
    headline = _text_of(_first_by_role(doc.get("headlines")), ctype)
    summary = _text_of(_first_by_role(doc.get("descriptions"), "summary"), ctype)
    body = _text_of(_first_by_role(doc.get("bodies")), ctype)
    if (
        pub_status not in RETRACTING_STATUSES
    ):  # a withdrawal is never refused for its text: nothing of it is sent
        check_lengths(headline, summary, body)
    embargo = doc.get("embargoed" if v2 else "embargoedUntil")
    version_created = doc.get("versioncreated" if v2 else "versionCreated")
    for name in (
        _TIMES_V2 if v2 else _TIMES_V3
    ):  # the schema allows years 1..9999: refuse the absurd ones here
        if isinstance(doc.get(name), str):
            parse_time(doc[name], name)
    places = _places(doc.get("places"))
    subjects = _subjects(doc.get("subjects"))
    urgency = doc.get("urgency")
    return Article(
        uri=identifier(uri),
        version=version,
        ninjs_version=ninjs_version,
        pub_status=pub_status,
        headline=headline,
        summary=summary,
        body=body,
        language=doc.get("language") if isinstance(doc.get("language"), str) else None,
        urgency=urgency if isinstance(urgency, int) else None,
        embargoed_until=parse_time(embargo, "embargo") if isinstance(embargo, str) else None,
        version_created=version_created if isinstance(version_created, str) else None,
        places=places,
        subjects=subjects,
        document=doc,
    )
