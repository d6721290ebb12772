"""Archive rendering (pure): the displayable text of a ninjs document, the reading page, the
printable bulletin, the QR code and the takedown markers. Nothing here touches S3.

Pages come from Jinja2 templates with autoescape (consumers/archive/templates); the only value
from input that becomes an attribute is the public URL, and ``valid_public_url`` admits only plain http(s) URLs safe inside one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from html.parser import HTMLParser
from typing import Any, Final

import jinja2
import orjson
import segno
from markupsafe import Markup

from schemas.article import squash
from schemas.errors import InvalidContent
from schemas.text import visible
from schemas.times import checked_instant

TAKEDOWN_TITLE: Final = "Bài viết đã được gỡ"
VN_TZ: Final = timezone(timedelta(hours=7))

# The public URL is the one value from input that becomes an attribute: http(s), an ASCII host,
# and only URL characters that need no quoting inside a double-quoted attribute (no quotes,
# no angle brackets, no backslash, no blanks).
_URL_RE = re.compile(
    r"^https?://[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
    r"(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%!$&()*+,;=:@/-]*)?(?:\?[A-Za-z0-9._~%!$&()*+,;=:@/?-]*)?"
    r"(?:#[A-Za-z0-9._~%!$&()*+,;=:@/?-]*)?$"
)
_MAX_URL = 2048


def canonical_json(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


@dataclass(frozen=True, slots=True)
class _View:
    headline: str
    summary: str
    paragraphs: tuple[str, ...]
    byline: str
    version_created: str
    subjects: tuple[str, ...]
    places: tuple[str, ...]


def clean_text(text: str) -> str:
    """Displayed text: NFC, no C0/C1 control but tab and newline, no bidi or zero-width control,
    no non-character: the one rule every channel follows (schemas/text.py ``visible``)."""
    return visible(text)


class _HtmlText(HTMLParser):
    """The readable text of an HTML fragment: block boundaries become line breaks, and the
    content of elements that are code or media rather than text is dropped."""

    _BLOCK = frozenset(
        {
            "p",
            "br",
            "div",
            "li",
            "ul",
            "ol",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "tr",
            "table",
            "blockquote",
            "section",
            "article",
            "header",
            "footer",
            "figure",
            "figcaption",
            "hr",
            "pre",
        }
    )
    _DROP = frozenset(
        {"script", "style", "template", "noscript", "iframe", "object", "svg", "math", "head", "title"}
    )

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._DROP:
            self._dropping += 1
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._DROP:
            self._dropping = max(0, self._dropping - 1)
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self.parts.append(data)


def html_text(fragment: str) -> str:
    """Plain text of an HTML fragment (never markup): what the archive page shows of it."""
    parser = _HtmlText()
    parser.feed(fragment)
    parser.close()
    return squash("".join(parser.parts))


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return clean_text(squash(item))
    if not isinstance(item, dict):
        return ""
    value = item.get("value")
    if not isinstance(value, str):
        return ""
    ctype = str(item.get("contentType") or item.get("contenttype") or "text/plain").lower()
    # HTML is reduced to its text (scripts and styles dropped); it is never passed through.
    return clean_text(html_text(value) if "html" in ctype else squash(value))


def _pick(items: Any, role: str) -> Any:
    if not isinstance(items, list) or not items:
        return None
    for item in items:
        if isinstance(item, dict) and item.get("role") == role:
            return item
    return items[0]


def _legacy(doc: dict[str, Any], text_key: str, html_key: str) -> str:
    # ninjs 1.x: headline / body_text / body_html / description_text / description_html.
    if isinstance(doc.get(text_key), str):
        return _item_text(doc[text_key])
    if isinstance(doc.get(html_key), str):
        return _item_text({"value": doc[html_key], "contentType": "text/html"})
    return ""


def _names(items: Any, limit: int = 50) -> tuple[str, ...]:
    out: list[str] = []
    for item in items if isinstance(items, list) else ():
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str) and (text := clean_text(squash(name))) and text not in out:
            out.append(text)
    return tuple(out[:limit])


def _display_time(value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    try:
        # Outside the accepted years (schemas/times.py) the conversion to Vietnam time overflows:
        # such a time is shown as written, like one that does not parse.
        moment = checked_instant(datetime.fromisoformat(value.replace("Z", "+00:00")))
    except (ValueError, InvalidContent):
        return clean_text(value)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(VN_TZ).strftime("%H:%M ngày %d/%m/%Y (giờ Việt Nam)")


def article_view(doc: dict[str, Any]) -> _View:
    """The displayable text of a ninjs document (1.x, 2.x or 3.x), as plain strings."""
    headline = _item_text(_pick(doc.get("headlines"), "main")) or _legacy(doc, "headline", "headline_html")
    summary = _item_text(_pick(doc.get("descriptions"), "summary")) or _legacy(
        doc, "description_text", "description_html"
    )
    bodies = doc.get("bodies")
    if isinstance(bodies, list) and bodies:
        mains = [b for b in bodies if isinstance(b, dict) and b.get("role") in (None, "main")] or bodies[:1]
        body = "\n\n".join(t for t in (_item_text(b) for b in mains) if t)
    else:
        body = _legacy(doc, "body_text", "body_html")
    paragraphs = tuple(p.strip() for p in body.split("\n") if p.strip())
    byline = doc.get("by") if isinstance(doc.get("by"), str) else doc.get("byline")
    created = doc.get("versionCreated") or doc.get("versioncreated")
    return _View(
        headline=headline or "(không có tiêu đề)",
        summary=summary,
        paragraphs=paragraphs,
        byline=clean_text(squash(byline)) if isinstance(byline, str) else "",
        version_created=_display_time(created),
        subjects=_names(doc.get("subjects")),
        places=_names(doc.get("places")),
    )


def valid_public_url(url: Any) -> str:
    """The URL itself if it is a plain http(s) URL safe inside an attribute; InvalidContent if not."""
    if not isinstance(url, str) or not url or len(url) > _MAX_URL or not _URL_RE.fullmatch(url):
        raise InvalidContent(f"public_url must be a plain http(s) URL, got {str(url)[:200]!r}")
    return url


_CSS: Final = (
    "body{font-family:'Noto Serif','Times New Roman',serif;max-width:42rem;margin:2rem auto;"
    "padding:0 1rem;line-height:1.6;color:#111}h1{line-height:1.25}.meta,.archive{color:#555;"
    "font-size:.9rem}.summary{font-weight:bold}figure{margin:1.5rem 0}img{image-rendering:pixelated}"
    "@media print{@page{size:A5;margin:12mm}body{margin:0}}"
)
# The one inline style is allowed by its hash; nothing else may load or run.
_CSP: Final = (
    "default-src 'none'; img-src 'self'; "
    f"style-src 'sha256-{base64.b64encode(hashlib.sha256(_CSS.encode()).digest()).decode()}'; "
    "base-uri 'none'; form-action 'none'"
)


# The pages come from templates next to this module (consumers/archive/templates) with
# autoescape on: every value from input is escaped by Jinja2, and the only markup that is not is
# the constant stylesheet (its hash is in the CSP). StrictUndefined: a misspelt name is an error,
# not an empty string on a public page.
_TEMPLATES: Final = jinja2.Environment(
    loader=jinja2.PackageLoader("consumers.archive", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)


def _page(template: str, canonical: str | None = None, **values: Any) -> bytes:
    page = _TEMPLATES.get_template(template).render(csp=_CSP, css=Markup(_CSS), canonical=canonical, **values)
    return page.encode("utf-8")


def render_index(view: _View, url: str, uri: str, version: int, document_sha256: str) -> bytes:
    """The reading page. Every text is escaped; the only attribute from input is ``url``."""
    meta = [f"Phiên bản {version}"]
    if view.version_created:
        meta.append(f"Cập nhật {view.version_created}")
    if view.byline:
        meta.append(f"Tác giả: {view.byline}")
    return _page(
        "index.html",
        canonical=url,
        view=view,
        meta=meta,
        url=url,
        uri=uri,
        version=version,
        document_sha256=document_sha256,
    )


def render_bulletin(view: _View, url: str, version: int) -> bytes:
    """A printable internal bulletin (A5): headline, summary and the QR code to the article."""
    return _page("bulletin.html", view=view, url=url, version=version)


# QR codes rendered lately, by their content (the public URL, the only input): every version of
# an article, and every replay, shows the same code. Bounded: ~600 B a code.
_QR_CACHE_SIZE: Final = 1024


@functools.lru_cache(maxsize=_QR_CACHE_SIZE)
def render_qr(url: str) -> bytes:
    """PNG of the QR code for ``url``, error correction level M (deterministic bytes: the same
    as segno's own PNG writer at scale 8, border 4, which this replaces because it is ~6 ms of
    pure-Python bit packing per code)."""
    qr = segno.make(url, error="m", boost_error=False, micro=False)
    return qr_png(qr.matrix, scale=8, border=4)


def qr_png(matrix: Sequence[Sequence[int]], *, scale: int, border: int) -> bytes:
    """A 1-bit greyscale PNG of a QR matrix (1 = dark module), byte for byte what segno's
    ``write_png`` writes for black on white at compression level 9: one "None"-filtered scanline
    per module row, followed by ``scale - 1`` "Up"-filtered copies (all zero: same as above)."""
    width = (len(matrix) + 2 * border) * scale
    row_bytes = (width + 7) // 8
    pad = "0" * (row_bytes * 8 - width)
    dark, light = "0" * scale, "1" * scale  # black is palette index 0
    edge = light * border

    def scanline(bits: str) -> bytes:
        return b"\0" + int(bits + pad, 2).to_bytes(row_bytes, "big")

    quiet = scanline("1" * width) * (border * scale)
    same_as_above = (b"\2" + bytes(row_bytes)) * (scale - 1)
    idat = bytearray(quiet)
    for row in matrix:
        idat += scanline(edge + "".join(dark if module else light for module in row) + edge)
        idat += same_as_above
    idat += quiet

    def chunk(name: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + name + data + struct.pack(">I", zlib.crc32(name + data))

    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">2I5B", width, width, 1, 0, 0, 0, 0)),
            chunk(b"IDAT", zlib.compress(bytes(idat), 9)),
            chunk(b"IEND", b""),
        )
    )


def render_takedown(
    name: str,
    *,
    uri: str,
    version: int,
    reason: str,
    requested_at: str,
    at: str,
    command_id: str,
    title: str | None = None,
) -> tuple[bytes, str]:
    """The marker that replaces a public object: an HTML page for .html keys, JSON otherwise
    (``title``: the page's, default ``TAKEDOWN_TITLE``; a cancelled warning says so)."""
    if name.endswith(".html"):
        when = _display_time(at) or at
        page = _page("takedown.html", title=title or TAKEDOWN_TITLE, reason=reason, when=when)
        return page, "text/html; charset=utf-8"
    marker = {
        "takedown": True,
        "message": title or TAKEDOWN_TITLE,
        "uri": uri,
        "retraction_version": version,
        "reason": reason,
        "requested_at": requested_at,
        "taken_down_at": at,
        "command_id": command_id,
    }
    return canonical_json(marker), "application/json; charset=utf-8"
