"""What a day's schedule looks like to the outside: JSON, an iCalendar feed, an M3U8 playlist.

Pure: every function maps a DaySchedule to bytes or text and nothing else, so the same schedule
always renders to the same bytes (the ICS stamp comes from the inputs, never from the clock).
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, time
from typing import Any
from urllib.parse import quote, urlsplit
from zoneinfo import ZoneInfo

from icalendar import Calendar, Event, Timezone

from consumers.loudspeaker.scheduler import DaySchedule, Reason, Slot
from schemas.models import Priority

PRODID = "-//Lantoa//Lich phat thanh//VI"
CORRECTION_PREFIX = "Đính chính: "


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def _seconds(slot: Slot) -> int:
    return int((slot.end - slot.start).total_seconds())


def display_title(slot: Slot) -> str:
    """The title people see: corrections say so up front."""
    return f"{CORRECTION_PREFIX}{slot.title}" if slot.correction else slot.title


def to_json(day: DaySchedule) -> dict[str, Any]:
    """A JSON-ready dict: zone, date, windows with their use, slots in order, what was left out,
    and totals. Times are ISO 8601 with the zone's offset."""
    used: Counter[int] = Counter()
    for s in day.slots:
        used[s.window_index] += _seconds(s)
    by_priority = Counter(s.priority.value for s in day.slots)
    by_reason = Counter(u.reason.value for u in day.unplaced)
    return {
        "zone": day.zone_id,
        "date": day.day.isoformat(),
        "timezone": day.timezone,
        "as_of": None if day.as_of is None else _iso(day.as_of),
        "windows": [
            {
                "index": i,
                "start": _iso(ws),
                "end": _iso(we),
                "capacity_s": int((we - ws).total_seconds()),
                "used_s": used[i],
            }
            for i, (ws, we) in enumerate(day.windows)
        ],
        "slots": [
            {
                "bulletin_id": s.bulletin_id,
                "uri": s.uri,
                "version": s.version,
                "priority": s.priority.value,
                "title": s.title,
                "correction": s.correction,
                "window_index": s.window_index,
                "start": _iso(s.start),
                "end": _iso(s.end),
                "duration_s": s.duration_s,
                "audio_url": s.audio_url,
                "audio_path": s.audio_path,
            }
            for s in day.slots
        ],
        "unplaced": [
            {
                "bulletin_id": u.bulletin_id,
                "uri": u.uri,
                "version": u.version,
                "reason": u.reason.value,
                "detail": u.detail,
            }
            for u in day.unplaced
        ],
        "totals": {
            "slots": len(day.slots),
            "seconds": sum(_seconds(s) for s in day.slots),
            "by_priority": {p.value: by_priority[p.value] for p in (Priority.PRIORITY, Priority.NORMAL)},
            "corrections": sum(1 for s in day.slots if s.correction),
            "unplaced": {r.value: by_reason[r.value] for r in Reason},
        },
    }


def ics_uid(slot: Slot) -> str:
    """Stable across replans as long as the slot does not move: bulletin, zone, local start."""
    return f"{slot.bulletin_id}-{slot.zone_id}-{slot.start:%Y%m%dT%H%M}@lantoa"


def to_ics(day: DaySchedule, zone_name: str, stamp: datetime | None = None) -> bytes:
    """RFC 5545 calendar (METHOD:PUBLISH) with one VEVENT per slot and the zone's VTIMEZONE.

    DTSTAMP is ``stamp``, else the schedule's ``as_of``, else local midnight of the day: derived
    from the inputs, so rendering twice gives the same bytes. icalendar folds lines at 75 octets
    and ends them with CRLF.
    """
    tz = Timezone.from_tzid(
        day.timezone, first_date=date(day.day.year, 1, 1), last_date=date(day.day.year + 2, 1, 1)
    )
    zone_tz = ZoneInfo(day.timezone)
    if stamp is None:
        stamp = day.as_of or datetime.combine(day.day, time(0), tzinfo=zone_tz)
    if stamp.tzinfo is None:
        raise ValueError(f"ICS stamp must be timezone-aware, got {stamp!r}")
    cal = Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", f"Lịch phát thanh {zone_name}")
    cal.add("x-wr-timezone", day.timezone)
    cal.add_component(tz)
    for slot in day.slots:
        event = Event()
        event.add("uid", ics_uid(slot))
        event.add("dtstamp", stamp.astimezone(UTC))
        event.add("dtstart", slot.start.astimezone(zone_tz))
        event.add("dtend", slot.end.astimezone(zone_tz))
        event.add("summary", display_title(slot))
        event.add("categories", [slot.priority.value])
        event.add("description", f"uri: {slot.uri}\nversion: {slot.version}\nbulletin: {slot.bulletin_id}")
        cal.add_component(event)
    ical: bytes = cal.to_ical()
    return ical


def audio_location(slot: Slot, base_url: str) -> str:
    """The slot's audio: its absolute ``audio_url``, else ``audio_path`` under ``base_url``.

    Raises ValueError for a slot without audio (a bulletin is scheduled only once rendered, so
    this is a wiring bug, not something to paper over with a guessed URL).
    """
    if slot.audio_url:
        return slot.audio_url
    if slot.audio_path:
        return f"{base_url.rstrip('/')}/{quote(slot.audio_path.lstrip('/'), safe='/')}"
    raise ValueError(f"slot of {slot.bulletin_id} in {slot.zone_id} has no audio_url or audio_path")


def to_m3u(day: DaySchedule, base_url: str) -> str:
    """Extended M3U in UTF-8 (serve as .m3u8): the day's slots in order, one
    ``#EXTINF:<seconds>,<title>`` and one URL each."""
    if not urlsplit(base_url).scheme:
        raise ValueError(f"base_url must be absolute, got {base_url!r}")
    lines = ["#EXTM3U"]
    for slot in day.slots:
        title = " ".join(display_title(slot).split())  # no line breaks inside an entry
        lines.append(f"#EXTINF:{_seconds(slot)},{title}")
        lines.append(audio_location(slot, base_url))
    return "\n".join(lines) + "\n"
