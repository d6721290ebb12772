"""The public Atom feed of active CAP alerts (the Google Public Alerts / WMO alert hub model). Pure.

Alert hubs and apps poll a publisher's Atom feed: one entry per alert in force, each linking the
alert's CAP XML (``rel="alternate" type="application/cap+xml"``) and its page. Two writers render
the same feed from the same entry records: the archive adapter (``alerts/feed.atom`` in the bucket,
static objects a CDN serves, links relative to the feed) and the status web (``/alerts/feed.atom``,
links to its own copies). An entry record is the ``alert`` object of an archive command
(streams/alerts/render.py ``feed_record``); ``checked_entry`` is the one reader of it.

An alert leaves the feed when it is cancelled (its archive retraction) or when it expires: every
rendering drops the entries whose ``expires`` has passed, so a feed written later, or served now,
never lists an expired alert (``next_expiry`` tells a writer when to write it again).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final
from xml.etree import ElementTree as ET

from schemas.errors import InvalidContent
from schemas.text import visible

FEED_TITLE: Final = "Cảnh báo đang có hiệu lực"
CAP_TYPE: Final = "application/cap+xml"
ATOM_TYPE: Final = "application/atom+xml; charset=utf-8"
ATOM_NS: Final = "http://www.w3.org/2005/Atom"
MAX_ENTRIES: Final = 1000  # a feed is polled often: the newest thousand alerts in force at most
MAX_CANCELLED: Final = 10 * MAX_ENTRIES  # chains remembered as cancelled (the oldest forgotten first)
FEED_ID: Final = "urn:lantoa:alerts:feed"
_FIELDS: Final = ("identifier", "uri", "sent", "headline", "event", "area", "sender", "status", "msg_type")
_MAX_FIELD: Final = 2000
_LINK: Final = re.compile(r"https?://[A-Za-z0-9.-]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%!$&()*+,;=:@/-]*)?")


def _instant(value: Any, what: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidContent(f"feed entry {what} must be an ISO 8601 time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidContent(f"feed entry {what} {value[:40]!r} is not an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise InvalidContent(f"feed entry {what} {value[:40]!r} has no UTC offset")
    return moment


def checked_entry(raw: Any, uri: str | None = None, version: int | None = None) -> dict[str, Any]:
    """The feed entry record, checked: strings bounded and cleaned, times with offsets, version an
    integer, and (given the command's ``uri`` and ``version``) the entry's own the same. Raises
    `InvalidContent` for anything else (the record came from a topic)."""
    if not isinstance(raw, Mapping):
        raise InvalidContent("feed entry must be an object")
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = raw.get(name, "")
        if not isinstance(value, str):
            raise InvalidContent(f"feed entry {name} must be a string")
        out[name] = visible(value)[:_MAX_FIELD]
    if not out["identifier"] or not out["uri"]:
        raise InvalidContent("feed entry without identifier or uri")
    if uri is not None and out["uri"] != uri:
        raise InvalidContent(f"feed entry of {out['uri'][:200]!r} in a command for {uri[:200]!r}")
    number = raw.get("version")
    if not isinstance(number, int) or isinstance(number, bool) or number < 1:
        raise InvalidContent("feed entry version must be a positive integer")
    if version is not None and number != version:
        raise InvalidContent(f"feed entry version {number} in a command of version {version}")
    out["version"] = number
    _instant(out["sent"], "sent")
    expires = raw.get("expires")
    if expires is not None:
        _instant(expires, "expires")
    out["expires"] = expires
    out["exercise"] = bool(raw.get("exercise", False))
    link = raw.get("link")
    out["link"] = link if isinstance(link, str) and _LINK.fullmatch(link) else None
    return out


def merge_alert(entries: dict[str, Any], cancelled: dict[str, int], entry: dict[str, Any]) -> bool:
    """List a checked entry by its chain uri, unless the chain is cancelled at or above its version
    or a newer version is listed (replays and late messages never go back). True if listed."""
    uri, version = entry["uri"], entry["version"]
    listed = entries.get(uri)
    if int(cancelled.get(uri, 0)) >= version or (listed is not None and int(listed["version"]) > version):
        return False
    entries[uri] = entry
    return True


def merge_cancel(entries: dict[str, Any], cancelled: dict[str, int], uri: str, version: int) -> None:
    """The chain ``uri`` is cancelled at ``version``: out of ``entries``, and kept out."""
    listed = entries.get(uri)
    if listed is not None and int(listed["version"]) <= version:
        del entries[uri]
    cancelled[uri] = max(version, int(cancelled.get(uri, 0)))
    if len(cancelled) > MAX_CANCELLED:
        for old in sorted(cancelled, key=cancelled.__getitem__)[
            : len(cancelled) - MAX_CANCELLED + MAX_ENTRIES
        ]:
            del cancelled[old]


def in_force_only(entries: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The entries still in force at ``now``, the newest ``MAX_ENTRIES`` by ``sent``; a malformed
    one (an old state file) is dropped."""
    live = []
    for uri, entry in entries.items():
        try:
            if in_force(entry, now):
                live.append((_instant(entry["sent"], "sent"), uri, entry))
        except (InvalidContent, KeyError, TypeError):
            continue
    live.sort(key=lambda item: (item[0], item[1]))
    return {uri: entry for _, uri, entry in live[-MAX_ENTRIES:]}


def in_force(entry: Mapping[str, Any], now: datetime) -> bool:
    expires = entry.get("expires")
    return expires is None or _instant(expires, "expires") > now


def next_expiry(entries: Iterable[Mapping[str, Any]], now: datetime) -> datetime | None:
    """The earliest future expiry among ``entries`` (when the feed must be written again)."""
    ends = [_instant(e["expires"], "expires") for e in entries if e.get("expires")]
    future = [t for t in ends if t > now]
    return min(future) if future else None


def atom_feed(
    entries: Iterable[Mapping[str, Any]],
    *,
    feed_id: str,
    self_href: str,
    cap_href: Callable[[Mapping[str, Any]], str],
    page_href: Callable[[Mapping[str, Any]], str | None],
    now: datetime,
    title: str = FEED_TITLE,
    updated: datetime | None = None,
) -> bytes:
    """The Atom document (RFC 4287) of the entries in force at ``now``, newest ``sent`` first;
    ``cap_href`` and ``page_href`` give each entry's links (relative ones resolve against the feed).

    Built with ElementTree: feedgen 1.0.0 drops the ``rel`` and ``type`` of entry links (its
    entry.py rebinds ``link`` to the new element before reading them), and a CAP link without its
    type is no CAP link for a hub."""
    live = sorted(
        (e for e in entries if in_force(e, now)),
        key=lambda e: (_instant(e["sent"], "sent"), e["uri"]),
        reverse=True,
    )[:MAX_ENTRIES]
    feed = ET.Element("feed", {"xmlns": ATOM_NS, "xml:lang": "vi"})
    ET.SubElement(feed, "id").text = feed_id
    ET.SubElement(feed, "title").text = title
    # The feed's time: its newest entry, else when the set last changed (a writer passes it, so
    # that an empty feed written again is the same bytes), else now.
    newest = max((_instant(e["sent"], "sent") for e in live), default=None)
    ET.SubElement(feed, "updated").text = _stamp(newest or updated or now)
    ET.SubElement(ET.SubElement(feed, "author"), "name").text = "Lantoa"
    ET.SubElement(feed, "link", {"href": self_href, "rel": "self", "type": "application/atom+xml"})
    for e in live:
        entry = ET.SubElement(feed, "entry")
        ET.SubElement(entry, "id").text = e["uri"]
        ET.SubElement(entry, "title").text = e["headline"] or e["event"] or e["identifier"]
        sent = _stamp(_instant(e["sent"], "sent"))
        ET.SubElement(entry, "published").text = sent
        ET.SubElement(entry, "updated").text = sent
        ET.SubElement(ET.SubElement(entry, "author"), "name").text = e["sender"] or "Lantoa"
        parts = [e["event"], e["area"]]
        if e.get("expires"):
            parts.append(f"hết hiệu lực {e['expires']}")
        ET.SubElement(entry, "summary").text = " · ".join(p for p in parts if p)
        ET.SubElement(entry, "link", {"href": cap_href(e), "rel": "alternate", "type": CAP_TYPE})
        page = page_href(e)
        if page:
            ET.SubElement(entry, "link", {"href": page, "rel": "related", "type": "text/html"})
    ET.indent(feed)
    out: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return out


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
