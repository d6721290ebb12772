"""What the loudspeaker emulator's API is sent, read and checked: the path's date, a day's
schedule, an emergency, the conditional headers of a schedule PUT and the plays query (which the
control API answers too). Errors are ``PlatformError`` (the API's envelope); the limits come from
the platform's settings, passed in."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date
from itertools import pairwise
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aiohttp import web

from infra.local.emulators.loudspeaker_model import (
    API,
    SCHEDULE_PRIORITIES,
    Emergency,
    PlatformError,
    ScheduleDoc,
    Slot,
    iso,
    parse_iso,
    parse_moment,
)
from infra.local.emulators.loudspeaker_platform import LoudspeakerPlatform

__all__ = [
    "check_preconditions",
    "parse_day",
    "parse_emergency",
    "parse_schedule",
    "play_filters",
    "plays_reply",
]


def parse_schedule(zone: str, day: str, body: Any, *, max_slots: int) -> tuple[Slot, ...]:
    """The slots of a day's schedule ``body`` for ``zone``, sorted; 400 ``invalid_request`` if it
    is not one (at most ``max_slots``, none overlapping, each starting on ``day``)."""
    if not isinstance(body, dict):
        raise PlatformError(400, "invalid_request", "the schedule must be a JSON object")
    for name, expected in (("zone", zone), ("date", day)):
        if name in body and body[name] != expected:
            raise PlatformError(
                400, "invalid_request", f"{name} {body[name]!r} does not match the path ({expected})"
            )
    tz: ZoneInfo | None = None
    if body.get("timezone") is not None:
        try:
            tz = ZoneInfo(str(body["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise PlatformError(400, "invalid_request", f"unknown timezone {body['timezone']!r}") from None
    raw_slots = body.get("slots")
    if not isinstance(raw_slots, list):
        raise PlatformError(400, "invalid_request", "slots must be a list")
    if len(raw_slots) > max_slots:
        raise PlatformError(400, "invalid_request", f"at most {max_slots} slots a day")
    slots: list[Slot] = []
    for i, raw in enumerate(raw_slots):
        where = f"slots[{i}]"
        if not isinstance(raw, dict):
            raise PlatformError(400, "invalid_request", f"{where} must be an object")
        bid = raw.get("bulletin_id")
        if not isinstance(bid, str) or not bid:
            raise PlatformError(400, "invalid_request", f"{where}.bulletin_id is required")
        local = parse_iso(raw.get("start"), f"{where}.start")
        start, end = local.timestamp(), parse_iso(raw.get("end"), f"{where}.end").timestamp()
        if end <= start:
            raise PlatformError(400, "invalid_request", f"{where} must end after it starts")
        priority = raw.get("priority", "normal")
        if priority == "emergency":
            raise PlatformError(
                400, "invalid_request", f"{where}: emergencies are not scheduled; POST {API}/emergencies"
            )
        if priority not in SCHEDULE_PRIORITIES:
            raise PlatformError(400, "invalid_request", f"{where}.priority must be normal or priority")
        audio = raw.get("audio_url")
        if not isinstance(audio, str) or urlsplit(audio).scheme not in ("http", "https"):
            raise PlatformError(400, "invalid_request", f"{where}.audio_url must be an absolute http(s) URL")
        title = raw.get("title", "")
        if not isinstance(title, str):
            raise PlatformError(400, "invalid_request", f"{where}.title must be a string")
        if tz is not None:
            local = local.astimezone(tz)
        if local.date().isoformat() != day:
            raise PlatformError(400, "invalid_request", f"{where} starts on {local.date()}, not {day}")
        slots.append(Slot(bid, start, end, title, str(priority), audio))
    slots.sort(key=lambda s: s.start)
    for a, b in pairwise(slots):
        if b.start < a.end:
            raise PlatformError(
                400, "invalid_request", f"slots of {a.bulletin_id} and {b.bulletin_id} overlap"
            )
    return tuple(slots)


def parse_day(raw: str) -> str:
    try:
        return date.fromisoformat(raw).isoformat()
    except ValueError:
        raise PlatformError(400, "invalid_request", f"date {raw!r} is not YYYY-MM-DD") from None


def check_preconditions(request: web.Request, current: ScheduleDoc | None) -> None:
    """412 ``precondition_failed`` unless ``If-Match`` / ``If-None-Match: *`` hold for ``current``."""
    match = request.headers.get("If-Match")
    if match is not None:
        wanted = {m.strip() for m in match.split(",")}
        if current is None or ("*" not in wanted and current.etag not in wanted):
            raise PlatformError(
                412,
                "precondition_failed",
                "the schedule changed (If-Match)",
                current_etag=None if current is None else current.etag,
            )
    if request.headers.get("If-None-Match", "").strip() == "*" and current is not None:
        raise PlatformError(
            412, "precondition_failed", "a schedule exists (If-None-Match: *)", current_etag=current.etag
        )


def parse_emergency(
    body: Any, now: float, *, max_zones: int, default_duration_s: float, min_repeat_interval_s: float
) -> Emergency:
    """The emergency posted at ``now`` (zones deduplicated, in order); 413 ``too_many_zones`` over
    ``max_zones``, else 400 ``invalid_request`` if ``body`` is not one."""
    if not isinstance(body, dict):
        raise PlatformError(400, "invalid_request", "the emergency must be a JSON object")
    eid = body.get("emergency_id")
    if not isinstance(eid, str) or not eid.strip() or len(eid) > 200:
        raise PlatformError(400, "invalid_request", "emergency_id is required (at most 200 characters)")
    if body.get("priority", "emergency") != "emergency":
        raise PlatformError(400, "invalid_request", "priority must be emergency")
    zones = body.get("zones")
    if not isinstance(zones, list) or not zones or not all(isinstance(z, str) and z for z in zones):
        raise PlatformError(400, "invalid_request", "zones must be a non-empty list of zone codes")
    if len(zones) > max_zones:
        raise PlatformError(
            413,
            "too_many_zones",
            f"at most {max_zones} zones per call",
            max_zones=max_zones,
        )
    text, audio = body.get("text"), body.get("audio_url")
    if audio is not None and (not isinstance(audio, str) or urlsplit(audio).scheme not in ("http", "https")):
        raise PlatformError(400, "invalid_request", "audio_url must be an absolute http(s) URL")
    if text is not None and (not isinstance(text, str) or not text.strip()):
        raise PlatformError(400, "invalid_request", "text must be a non-empty string")
    if audio is None and text is None:
        raise PlatformError(400, "invalid_request", "audio_url or text is required")
    duration = body.get("duration_s", default_duration_s)
    interval = body.get("repeat_interval_s")
    for name, value in (("duration_s", duration), ("repeat_interval_s", interval)):
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value <= 0
        ):
            raise PlatformError(400, "invalid_request", f"{name} must be a positive number of seconds")
    assert isinstance(duration, (int, float)) and isinstance(interval, (int, float))
    if interval < max(min_repeat_interval_s, duration):
        raise PlatformError(
            400,
            "invalid_request",
            f"repeat_interval_s must be at least {max(min_repeat_interval_s, duration):g} s "
            "(the minimum and the bulletin's length)",
        )
    expires = parse_moment(body.get("expires_at"), "expires_at")
    if expires <= now:
        raise PlatformError(400, "invalid_request", "expires_at is in the past")
    replaces = body.get("replaces") or []
    replaces = [replaces] if isinstance(replaces, str) else replaces
    if not isinstance(replaces, list) or not all(isinstance(r, str) for r in replaces):
        raise PlatformError(400, "invalid_request", "replaces must be an emergency id or a list of them")
    title = body.get("title") or ""
    return Emergency(
        eid,
        tuple(dict.fromkeys(zones)),
        text,
        audio,
        str(title),
        float(duration),
        float(interval),
        now,
        expires,
        tuple(replaces),
    )


def play_filters(query: Mapping[str, str]) -> dict[str, Any]:
    """The keyword arguments of ``LoudspeakerPlatform.plays`` a plays query string asks for."""
    out: dict[str, Any] = {
        "zone": query.get("zone"),
        "bulletin_id": query.get("bulletin_id"),
        "kind": query.get("kind"),
    }
    if query.get("since"):
        out["since"] = parse_moment(query["since"], "since")
    try:
        out["after"] = int(query.get("after", "0") or 0)
    except ValueError:
        raise PlatformError(400, "invalid_request", "after must be an integer") from None
    return out


def plays_reply(platform: LoudspeakerPlatform, query: Mapping[str, str]) -> dict[str, Any]:
    """The plays a query asks for, a page of ``limit`` (ValueError if not an integer)."""
    found = platform.plays(**play_filters(query))
    limit = int(query.get("limit", "10000") or 10000)
    page = found[:limit]
    return {
        "plays": [p.to_json() for p in page],
        "now": iso(platform.clock()),
        "next_after": page[-1].seq if page else int(query.get("after", "0") or 0),
    }
