"""The timeline page: one loudspeaker zone's day (windows, slots, emergencies, now) from a
``ZoneDay`` that a ``TimelineFetcher`` found (schemas/timeline.py: consumers/loudspeaker/
timeline.py ``PlatformTimeline``, or a fake in tests), rendered from ``templates/timeline.html``: the order of the day and the words are
worked out here, the template lays them out."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from schemas.timeline import ZoneDay
from schemas.times import moment
from streams.status.layout import (
    EMERGENCY_STATUS_VI,
    PRIORITY_VI,
    REASON_VI,
    TIMELINE_REFRESH_S,
    WEEKDAY_VI,
    render_page,
    status_path,
    timeline_path,
)

__all__ = ["render_timeline"]


def _seconds(value: Any) -> str:
    try:
        return f"{float(value):.0f}"
    except (TypeError, ValueError):
        return "?"


def _minutes(seconds: Any) -> str:
    try:
        value = float(seconds)
    except (TypeError, ValueError):
        return "?"
    return f"{value / 60:.0f}" if value >= 60 or value == 0 else f"{value / 60:.1f}"


def render_timeline(zd: ZoneDay, now: datetime, refresh: int | None = TIMELINE_REFRESH_S) -> str:
    """The zone's day as one vertical list in time order: windows, slots, emergencies, now."""
    tz = ZoneInfo(zd.timezone)
    day_start = datetime.combine(zd.day, datetime.min.time(), tzinfo=tz)
    day_end = day_start + timedelta(days=1)
    where = " — ".join(x for x in (zd.name, zd.province) if x) or zd.zone
    zone = zd.target_id or zd.zone
    emergencies = sorted(zd.emergencies, key=lambda e: str(e.get("created_at") or ""))
    schedule = zd.schedule
    # (when, rank among items at the same moment, the item): window starts, then emergencies,
    # slots, now, window ends.
    items: list[tuple[datetime, int, dict[str, Any]]] = []
    windows: list[Mapping[str, Any]]
    if schedule is None:
        windows = [
            {"index": i, "start": s.isoformat(), "end": e.isoformat()} for i, (s, e) in enumerate(zd.windows)
        ]
    else:
        windows = list(schedule.get("windows") or [])
    for number, w in enumerate(windows, 1):
        start, end = moment(w.get("start")), moment(w.get("end"))
        if start is None or end is None:
            continue
        used = (
            f" · đã dùng {_minutes(w.get('used_s'))}/{_minutes(w.get('capacity_s'))} phút"
            if "used_s" in w
            else ""
        )
        window = {"index": w.get("index"), "number": number, "start": start, "end": end, "used": used}
        items.append((start, 0, {"kind": "window", **window}))
        items.append((end, 4, {"kind": "window-end", **window}))
    for s in (schedule or {}).get("slots") or []:
        start, end = moment(s.get("start")), moment(s.get("end"))
        if start is None or end is None:
            continue
        clash = any(_overlaps_emergency(e, start, end) for e in emergencies)
        items.append((start, 2, _slot(s, start, end, now, clash)))
    for e in emergencies:
        created = moment(e.get("created_at"))
        if created is not None:
            shown = max(created, day_start)
            since_before = created < day_start
            items.append(
                (shown, 1, {"kind": "emergency", "at": shown, "since_before": since_before, **_emergency(e)})
            )
    if day_start <= now < day_end:
        items.append((now, 3, {"kind": "now", "at": now}))
    items.sort(key=lambda i: (i[0], i[1]))
    totals = (schedule or {}).get("totals") or {}
    return render_page(
        "timeline.html",
        f"Lịch phát thanh {where}",
        refresh=refresh,
        tz=tz,
        now=now,
        zone=zd.zone,
        target_id=zd.target_id if zd.target_id and zd.target_id != zd.zone else None,
        timezone=zd.timezone,
        weekday=WEEKDAY_VI[zd.day.weekday()],
        day=f"{zd.day:%d/%m/%Y}",
        day_iso=zd.day.isoformat(),
        before_path=timeline_path(zone, zd.day - timedelta(days=1)),
        today_path=timeline_path(zone),
        after_path=timeline_path(zone, zd.day + timedelta(days=1)),
        emergencies=[_emergency(e) for e in emergencies],
        scheduled=schedule is not None,
        items=[i[2] for i in items],
        slot_count=totals.get("slots", 0),
        minutes=_minutes(totals.get("seconds", 0)),
        corrections=totals.get("corrections", 0),
        unplaced=[_unplaced(u) for u in (schedule or {}).get("unplaced") or []],
        platform=zd.platform or None,
    )


def _overlaps_emergency(e: Mapping[str, Any], start: datetime, end: datetime) -> bool:
    """Whether a play of emergency ``e`` (one every ``repeat_interval_s`` from ``created_at``
    until it stops or expires, ``duration_s`` each) shares time with the slot: the platform
    then cuts the slot, or skips it if it would start during the play."""
    created = moment(e.get("created_at"))
    stop = moment(e.get("stopped_at")) or moment(e.get("expires_at"))
    try:
        every, length = float(e.get("repeat_interval_s") or 0), float(e.get("duration_s") or 0)
    except (TypeError, ValueError):
        return False
    if created is None or stop is None or every <= 0 or length <= 0:
        return False
    a = (start - created).total_seconds()
    b = (min(end, stop) - created).total_seconds()
    if b <= 0:
        return False
    k = max(0, int((a - length) // every))  # the first play that could still be running at the slot's start
    while k * every < b:
        if k * every + length > a:
            return True
        k += 1
    return False


def _slot(s: Mapping[str, Any], start: datetime, end: datetime, now: datetime, clash: bool) -> dict[str, Any]:
    priority = str(s.get("priority") or "normal")
    correction = bool(s.get("correction"))
    classes = (
        ["slot", f"p-{priority}-slot"]
        + (["correction"] if correction else [])
        + (["past"] if end <= now else [])
        + (["clash"] if clash else [])
    )
    uri = str(s.get("uri") or "")
    return {
        "kind": "slot",
        "classes": " ".join(classes),
        "bulletin": s.get("bulletin_id"),
        "priority": priority,
        "priority_word": PRIORITY_VI.get(priority, priority),
        "correction": correction,
        "clash": clash,
        "playing": start <= now < end,
        "start": start,
        "end": end,
        "title": ("Đính chính: " if correction else "") + str(s.get("title") or s.get("bulletin_id") or ""),
        "version": s.get("version"),
        "seconds": _seconds(s.get("duration_s")),
        "status_path": status_path(uri) if uri else None,
    }


def _emergency(e: Mapping[str, Any]) -> dict[str, Any]:
    """What the page says of an emergency record, in its box and in the timeline."""
    status = str(e.get("status") or "")
    try:
        every = f"lặp lại mỗi {float(e.get('repeat_interval_s') or 0) / 60:g} phút"
    except (TypeError, ValueError):
        every = ""
    return {
        "id": e.get("emergency_id"),
        "status": e.get("status"),
        "status_word": EMERGENCY_STATUS_VI.get(status, status),
        "title": str(e.get("title") or (str(e.get("text") or "")[:160]) or e.get("emergency_id") or ""),
        "ended": status != "active",
        "created_at": e.get("created_at"),
        "every": every,
        "until": e.get("stopped_at") or e.get("expires_at"),
        "plays": e.get("plays_started", "?"),
        "zone_count": e.get("zone_count", "?"),
    }


def _unplaced(u: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "uri": u.get("uri"),
        "status_path": status_path(str(u.get("uri") or "")),
        "version": u.get("version"),
        "reason": u.get("reason"),
        "reason_word": REASON_VI.get(str(u.get("reason")), u.get("reason")),
        "detail": u.get("detail") or "",
    }
