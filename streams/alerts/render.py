"""Render: a CAP alert → the payload of each channel besides the loudspeakers. Pure.

Text comes from the Vietnamese ``<info>`` (the first one, else the first of any language): event,
headline, description, instruction, the areas' names, the sender, effective and expiry times in
Vietnam's local time, and a link to the archived page. Every other ``<info>`` is kept in the
archived document (``infos``) and the CAP XML as received is archived beside it, signature intact.
Exercise and Test copies say so in their first words, so that a screenshot of a test page is
never mistaken for a warning.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from schemas.cap_model import Alert, Info, MsgType, Status
from schemas.emergency import alert_uri
from schemas.text import visible, visible_json
from schemas.topics import Channel
from streams.articles.render import public_url

VN_TZ: Final = ZoneInfo("Asia/Ho_Chi_Minh")
MAX_AREA_NAMES: Final = 12  # a post names this many areas, then "và N khu vực khác"
MAX_FIELD_CHARS: Final = 4000  # description and instruction, each, in a post or a message
CANCEL_NOTICE: Final = "ĐÃ HỦY CẢNH BÁO"
ARCHIVE_NINJS_VERSION: Final = "2.1"
_MARKS: Final = {Status.EXERCISE: "[DIỄN TẬP] ", Status.TEST: "[THỬ NGHIỆM] "}


def vietnamese_info(alert: Alert, among: Callable[[Info], bool] | None = None) -> Info | None:
    """The first Vietnamese info (of those ``among`` admits, when given), else the first of them,
    else the alert's first info."""
    infos = [i for i in alert.infos if among is None or among(i)]
    for info in infos:
        if (info.language or "").lower().startswith("vi"):
            return info
    return infos[0] if infos else (alert.infos[0] if alert.infos else None)


def audio_resource(info: Info | None) -> dict[str, Any] | None:
    """The first audio resource of an info as the lane's records carry it (None: none). The
    emergency pusher decodes, bounds and checks it (consumers/loudspeaker/cap_audio.py)."""
    for res in info.resources if info else ():
        if (res.mime_type or "").lower().startswith("audio/") and (res.deref or res.uri):
            return {
                "desc": res.desc[:200],
                "mime_type": res.mime_type,
                "uri": res.uri,
                "deref": res.deref,
                "digest": res.digest,
            }
    return None


def local_time(moment: datetime) -> str:
    return moment.astimezone(VN_TZ).strftime("%H:%M ngày %d/%m/%Y")


def _clip(text: str | None, limit: int = MAX_FIELD_CHARS) -> str:
    text = visible(text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def area_names(info: Info | None) -> str:
    names: list[str] = []
    for area in info.areas if info else ():
        name = _clip(area.area_desc, 200)
        if name and name not in names:
            names.append(name)
    shown = "; ".join(names[:MAX_AREA_NAMES])
    more = len(names) - MAX_AREA_NAMES
    return shown + (f" và {more} khu vực khác" if more > 0 else "")


def headline_of(alert: Alert, info: Info | None) -> str:
    return _clip((info.headline or info.event) if info else alert.identifier, 300) or alert.identifier


def _lines(alert: Alert, info: Info | None) -> list[str]:
    mark = _MARKS.get(alert.status, "")
    kind = "CẬP NHẬT CẢNH BÁO" if alert.msg_type is MsgType.UPDATE else "CẢNH BÁO"
    event = _clip(info.event, 300) if info else ""
    lines = [f"{mark}{kind}" + (f": {event.upper()}" if event else ""), headline_of(alert, info)]
    if info is not None:
        lines += [_clip(info.description)]
        if info.instruction:
            lines.append("Hướng dẫn: " + _clip(info.instruction))
    areas = area_names(info)
    if areas:
        lines.append("Khu vực: " + areas)
    sender = _clip((info.sender_name if info else None) or alert.sender, 300)
    lines.append("Nguồn: " + sender)
    start = (info.effective or info.onset) if info else None
    when = []
    if start is not None:
        when.append("từ " + local_time(start))
    if info is not None and info.expires is not None:
        when.append("đến " + local_time(info.expires))
    if when:
        lines.append("Hiệu lực: " + " ".join(when))
    return [line for line in lines if line]


def feed_record(alert: Alert, root: str, version: int, info: Info | None, base_url: str) -> dict[str, Any]:
    """The alert's entry in the public feed (schemas/cap_feed.py ``checked_entry`` reads it)."""
    expires = [i.expires for i in alert.infos if i.expires is not None]
    return {
        "identifier": alert.identifier,
        "uri": alert_uri(root),
        "version": version,
        "sent": alert.sent.isoformat(),
        "expires": max(expires).isoformat() if expires else None,
        "headline": headline_of(alert, info),
        "event": _clip(info.event, 300) if info else "",
        "area": area_names(info),
        "sender": _clip((info.sender_name if info else None) or alert.sender, 300),
        "status": alert.status.value,
        "msg_type": alert.msg_type.value,
        "exercise": alert.status in _MARKS,
        "link": public_url(base_url, alert_uri(root)),
    }


def _info_doc(info: Info) -> dict[str, Any]:
    return {
        "language": info.language,
        "event": info.event,
        "urgency": info.urgency.value,
        "severity": info.severity.value,
        "certainty": info.certainty.value,
        "headline": info.headline,
        "description": info.description,
        "instruction": info.instruction,
        "sender_name": info.sender_name,
        "effective": info.effective.isoformat() if info.effective else None,
        "onset": info.onset.isoformat() if info.onset else None,
        "expires": info.expires.isoformat() if info.expires else None,
        "areas": [a.area_desc for a in info.areas],
    }


def render_alert(
    alert: Alert, root: str, version: int, base_url: str, cap_xml: str | None
) -> dict[Channel, dict[str, Any]]:
    """The publish/update payload of each channel (one per channel, shared by its targets)."""
    info = vietnamese_info(alert)
    uri = alert_uri(root)
    link = public_url(base_url, uri)
    lines = _lines(alert, info)
    text = "\n\n".join(lines)
    headline = headline_of(alert, info)
    document = {
        "uri": uri,
        "version": version,
        "type": "text",
        "language": "vi",
        "headline": headline,
        "description_text": _clip(info.description) if info else "",
        "body_text": "\n".join([lines[0], *lines[2:]]),  # all but the headline, which is the title
        "versioncreated": alert.sent.isoformat(),
        "cap": {
            "identifier": alert.identifier,
            "sender": alert.sender,
            "sent": alert.sent.isoformat(),
            "status": alert.status.value,
            "msg_type": alert.msg_type.value,
            "references": [r.identifier for r in alert.references],
            "infos": [_info_doc(i) for i in alert.infos],  # every language, as received
        },
    }
    archive: dict[str, Any] = {
        "document": document,
        "public_url": link,
        "ninjs_version": ARCHIVE_NINJS_VERSION,
        "alert": feed_record(alert, root, version, info, base_url),
    }
    if cap_xml is not None:
        archive["cap_xml"] = cap_xml
    return {
        Channel.FANPAGE: dict(visible_json({"message": text, "link": link, "title": headline})),
        Channel.ZALO: dict(visible_json({"text": f"{text}\n\nChi tiết: {link}", "title": headline})),
        Channel.ARCHIVE: archive,
    }


def withdraw_payload(alert: Alert, cancel: bool) -> dict[str, Any]:
    """The payload of a retraction: a Cancel ("đã hủy cảnh báo", with the office's own words if it
    gave any), or an Update that no longer concerns the target."""
    info = vietnamese_info(alert)
    if cancel:
        words = _clip(info.description or info.headline, 1000) if info else ""
        reason = words or f"{alert.sender} đã hủy cảnh báo ({alert.identifier})"
        return {"reason": _clip(reason, 1000), "notice": _MARKS.get(alert.status, "") + CANCEL_NOTICE}
    return {"reason": f"khu vực không còn trong cảnh báo cập nhật {_clip(alert.identifier, 256)}"}
