"""A zone's day schedule as the platform holds it: the body the adapter PUTs, the plan read back
from one, a small digest to tell bodies apart, and when anything can have played. Pure, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from consumers.loudspeaker.outputs import to_json
from consumers.loudspeaker.platform import aware_time
from consumers.loudspeaker.scheduler import DaySchedule, Reason, Slot, Unplaced
from schemas.models import Priority
from schemas.windows import ZoneWindows


def schedule_body(plan: DaySchedule, digest: str | None) -> dict[str, Any]:
    """What is PUT for a zone and day: the JSON output without its planning time (so that the
    same plan is the same body, byte for byte) plus, for the first day pushed, the digest of the
    zone's bulletin set (``None``: no ``state`` key; see ``LoudspeakerAdapter._push``)."""
    body = to_json(plan)
    body.pop("as_of", None)
    if digest is not None:
        body["state"] = digest
    return body


def body_digest(raw: bytes) -> bytes:
    """What the adapter remembers of a body it sent or read: enough to tell "the same", small
    enough for thousands of zones × days (the bodies themselves are tens of kB on a full day)."""
    return hashlib.blake2b(raw, digest_size=16).digest()


def could_play(
    windows: ZoneWindows, start: datetime, end: datetime, plans: Iterable[DaySchedule] = ()
) -> bool:
    """Could a scheduled bulletin have started playing in the zone between ``start`` and ``end``?
    Slots only ever sit inside the zone's windows (and the platform reports a play only for a slot
    that started), so: does a window, or a slot of ``plans``, overlap [start, end]? Pure."""
    if end < start:
        return False
    tz = windows.tz
    first, last = start.astimezone(tz).date(), end.astimezone(tz).date()
    if (last - first).days > 366:
        return True
    if any(ws <= end and we >= start for ws, we in windows.windows_between(first, last)):
        return True
    return any(s.start <= end and s.end >= start for plan in plans for s in plan.slots)


def day_from_json(body: Mapping[str, Any]) -> DaySchedule:
    """A DaySchedule back from a schedule body (``schedule_body``/``to_json``). Raises
    KeyError/ValueError on a body that is not one."""
    zone = str(body["zone"])

    def moment(raw: Any) -> datetime:
        parsed = aware_time(raw)
        if parsed is None:
            raise ValueError(f"not an aware time: {raw!r}")
        return parsed

    slots = tuple(
        Slot(
            zone,
            str(s["bulletin_id"]),
            str(s["uri"]),
            int(s["version"]),
            Priority(s["priority"]),
            moment(s["start"]),
            moment(s["end"]),
            int(s["window_index"]),
            str(s.get("title") or ""),
            bool(s.get("correction")),
            float(s.get("duration_s") or 0.0),
            s.get("audio_url"),
            s.get("audio_path"),
        )
        for s in body.get("slots") or ()
    )
    unplaced = tuple(
        Unplaced(
            str(u["bulletin_id"]),
            str(u["uri"]),
            int(u["version"]),
            Reason(u["reason"]),
            str(u.get("detail") or ""),
        )
        for u in body.get("unplaced") or ()
    )
    windows = tuple((moment(w["start"]), moment(w["end"])) for w in body.get("windows") or ())
    return DaySchedule(
        zone, date.fromisoformat(str(body["date"])), str(body["timezone"]), windows, slots, unplaced
    )
