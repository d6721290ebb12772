"""The broadcast scheduler: which bulletin plays when, per zone and day. Pure and deterministic.

Rules (see the loudspeaker section of the channel contracts):

* Normal and priority bulletins are packed into the zone's windows; emergencies are not (they
  interrupt at once on the platform: the emergency lane plays them, see ``emergency_now``).
* Order of preference: priority before normal; within a priority, corrections first (they fix
  something listeners already heard), then by publish time, then uri and bulletin id, so the
  order is total and never depends on input, dict or set order.
* Greedy first fit, window by window: at each free moment the most preferred bulletin that is
  published, fits in what is left of the window and would end before it expires is placed. A
  bulletin that does not fit is passed over (a smaller one may use the room) and carries over to
  the next window or day until it expires. Windows are never overrun and audio never truncated;
  a bulletin longer than every window of the zone is reported ``too_long``.
* A slot lasts the bulletin's duration rounded up to whole seconds (ICS and M3U speak seconds).
* Only the newest version of a uri is scheduled; older ones are ``superseded``.
* ``retracted = {uri: (version, retracted_at)}`` withdraws every version <= ``version`` and every
  version published at or before ``retracted_at``; a later republication stays. A correction
  bulletin (``correction_for``) is scheduled only when the bulletin it corrects was played or
  had started (a slot frozen by ``now``); otherwise it is ``correction_not_needed``.
* ``now`` freezes the past: slots of ``previous`` that started before ``now`` stay as they are
  (also when their bulletin was since retracted or replaced: they are history), and nothing new
  is placed before ``now``. Replanning with the result as ``previous`` changes nothing unless
  the inputs changed.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from schemas.models import Priority
from schemas.windows import ZoneWindows

DEFAULT_EXPIRY_DAYS = 3.0
# Bound on how far ahead a leftover bulletin is checked for a window it could still use.
_LOOKAHEAD_DAYS = 400
_RANK = {Priority.NORMAL: 0, Priority.PRIORITY: 1, Priority.EMERGENCY: 2}
UTC = UTC


def _aware(name: str, value: datetime) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")


def _ceil_second(moment: datetime) -> datetime:
    """UTC, rounded up to a whole second, so that every slot boundary is a whole second."""
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment


@dataclass(frozen=True, slots=True)
class Bulletin:
    """One rendered bulletin ready to broadcast. ``duration_s`` is the rendered audio's length.

    A correction (``correction=True``) names the bulletin it corrects in ``corrects`` and the
    reason in ``reason``. Raises ValueError on naive datetimes or a non-positive duration.
    """

    bulletin_id: str
    uri: str
    version: int
    priority: Priority
    title: str
    duration_s: float
    published_at: datetime
    expires_at: datetime
    audio_url: str | None = None
    audio_path: str | None = None
    correction: bool = False
    corrects: str | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        if not self.bulletin_id or not self.uri:
            raise ValueError(f"bulletin needs an id and a uri: {self.bulletin_id!r} {self.uri!r}")
        _aware(f"bulletin {self.bulletin_id}: published_at", self.published_at)
        _aware(f"bulletin {self.bulletin_id}: expires_at", self.expires_at)
        if not math.isfinite(self.duration_s) or self.duration_s <= 0:
            raise ValueError(f"bulletin {self.bulletin_id}: duration_s must be > 0, got {self.duration_s!r}")
        if self.correction != (self.corrects is not None):
            raise ValueError(
                f"bulletin {self.bulletin_id}: a correction names what it corrects, and only a correction"
            )

    @property
    def length(self) -> timedelta:
        """How long the slot lasts: the duration rounded up to whole seconds."""
        return timedelta(seconds=math.ceil(self.duration_s))

    def sort_key(self) -> tuple[int, bool, datetime, str, int, str]:
        """Most preferred first: priority, corrections, publish time, uri, version, id."""
        return (
            -_RANK[self.priority],
            not self.correction,
            self.published_at.astimezone(UTC),
            self.uri,
            -self.version,
            self.bulletin_id,
        )


def default_expiry(published_at: datetime, days: float = DEFAULT_EXPIRY_DAYS) -> datetime:
    """``days`` × 24 h after publication (for bulletins whose source gives no expiry)."""
    _aware("published_at", published_at)
    if not days > 0:
        raise ValueError(f"expiry days must be > 0, got {days!r}")
    return (published_at.astimezone(UTC) + timedelta(days=days)).astimezone(published_at.tzinfo)


def correction_for(
    bulletin: Bulletin,
    reason: str,
    duration_s: float,
    *,
    issued_at: datetime | None = None,
    expiry_days: float = DEFAULT_EXPIRY_DAYS,
    audio_url: str | None = None,
    audio_path: str | None = None,
) -> Bulletin:
    """The short correction to broadcast after ``bulletin`` was played and then retracted.

    Same uri, version, title and priority as the original; the id is derived from the
    original's id, so building it again yields the same bulletin. ``issued_at`` (the retraction
    time) orders it and starts its expiry; it defaults to the original's publish time.
    """
    if not reason.strip():
        raise ValueError(f"correction of {bulletin.bulletin_id}: a reason is required")
    issued = issued_at or bulletin.published_at
    digest = hashlib.sha256(bulletin.bulletin_id.encode()).hexdigest()[:12]
    return Bulletin(
        bulletin_id=f"{bulletin.bulletin_id}~correction-{digest}",
        uri=bulletin.uri,
        version=bulletin.version,
        priority=bulletin.priority,
        title=bulletin.title,
        duration_s=duration_s,
        published_at=issued,
        expires_at=default_expiry(issued, expiry_days),
        audio_url=audio_url,
        audio_path=audio_path,
        correction=True,
        corrects=bulletin.bulletin_id,
        reason=reason.strip(),
    )


@dataclass(frozen=True, slots=True)
class Slot:
    """One planned play. ``start``/``end`` are aware, in the zone's time zone."""

    zone_id: str
    bulletin_id: str
    uri: str
    version: int
    priority: Priority
    start: datetime
    end: datetime
    window_index: int
    title: str
    correction: bool = False
    duration_s: float = 0.0
    audio_url: str | None = None
    audio_path: str | None = None

    @classmethod
    def of(cls, zone_id: str, b: Bulletin, start: datetime, end: datetime, window_index: int) -> Slot:
        return cls(
            zone_id, b.bulletin_id, b.uri, b.version, b.priority, start, end, window_index, b.title,
            b.correction, b.duration_s, b.audio_url, b.audio_path,
        )  # fmt: skip


class Reason(StrEnum):
    """Why a bulletin given to ``schedule_day`` has no slot that day."""

    TOO_LONG = "too_long"  # longer than every window of the zone: never schedulable
    CARRIED_OVER = "carried_over"  # still valid, a later window can take it
    EXPIRED = "expired"  # no window left before it expires
    SUPERSEDED = "superseded"  # a newer version of the uri exists
    RETRACTED = "retracted"
    EMERGENCY = "emergency"  # played by the emergency lane, not in windows
    CORRECTION_NOT_NEEDED = "correction_not_needed"  # the corrected bulletin never played


@dataclass(frozen=True, slots=True)
class Unplaced:
    bulletin_id: str
    uri: str
    version: int
    reason: Reason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class DaySchedule:
    """One zone's plan for one local day: slots in time order plus what was left out and why.

    Iterating yields the slots. ``as_of`` is the ``now`` it was planned at (None: planned
    without freezing anything).
    """

    zone_id: str
    day: date
    timezone: str
    windows: tuple[tuple[datetime, datetime], ...]
    slots: tuple[Slot, ...]
    unplaced: tuple[Unplaced, ...] = ()
    as_of: datetime | None = None

    def __iter__(self) -> Iterator[Slot]:
        return iter(self.slots)

    def __len__(self) -> int:
        return len(self.slots)

    def _with(self, reason: Reason) -> tuple[Unplaced, ...]:
        return tuple(u for u in self.unplaced if u.reason is reason)

    @property
    def unschedulable(self) -> tuple[Unplaced, ...]:
        return self._with(Reason.TOO_LONG)

    @property
    def carried_over(self) -> tuple[Unplaced, ...]:
        return self._with(Reason.CARRIED_OVER)

    @property
    def expired(self) -> tuple[Unplaced, ...]:
        return self._with(Reason.EXPIRED)


class _Placed(NamedTuple):
    bulletin: Bulletin
    window_index: int
    start: datetime  # UTC
    end: datetime


def _dedupe(bulletins: Iterable[Bulletin]) -> list[Bulletin]:
    by_id: dict[str, Bulletin] = {}
    for b in bulletins:
        seen = by_id.setdefault(b.bulletin_id, b)
        if seen != b:
            raise ValueError(f"two different bulletins share the id {b.bulletin_id!r}")
    return sorted(by_id.values(), key=Bulletin.sort_key)


def _is_retracted(b: Bulletin, retracted: Mapping[str, tuple[int, datetime]]) -> bool:
    if b.correction or b.uri not in retracted:
        return False
    version, at = retracted[b.uri]
    return b.version <= version or b.published_at.astimezone(UTC) <= at.astimezone(UTC)


def _still_possible(b: Bulletin, future: list[tuple[datetime, datetime]]) -> bool:
    """Could ``b`` still play in one of the ``future`` windows (UTC) before it expires?"""
    expires = b.expires_at.astimezone(UTC)
    for ws, we in future:
        if ws >= expires:
            return False
        start = max(ws, _ceil_second(b.published_at))
        if start + b.length <= min(we, expires):
            return True
    return False


def _pack(
    windows: list[tuple[datetime, datetime]],
    candidates: list[Bulletin],
    now: datetime | None,
    frozen: tuple[Slot, ...],
) -> list[_Placed]:
    """Greedy first fit in preference order, window by window (all times UTC)."""
    remaining = list(candidates)  # already in preference order
    placed: list[_Placed] = []
    for index, (ws, we) in enumerate(windows):
        cursor = ws if now is None else max(ws, now)
        for slot in frozen:
            if slot.start.astimezone(UTC) < we and slot.end.astimezone(UTC) > ws:
                cursor = max(cursor, slot.end.astimezone(UTC))
        while cursor < we and remaining:
            chosen = next(
                (
                    b
                    for b in remaining
                    if b.published_at.astimezone(UTC) <= cursor
                    and cursor + b.length <= min(we, b.expires_at.astimezone(UTC))
                ),
                None,
            )
            if chosen is not None:
                placed.append(_Placed(chosen, index, cursor, cursor + chosen.length))
                cursor += chosen.length
                remaining.remove(chosen)
                continue
            # Nothing fits now; wait for the next publication that would fit when it arrives.
            later = [
                _ceil_second(b.published_at)
                for b in remaining
                if b.published_at.astimezone(UTC) > cursor
                and _ceil_second(b.published_at) + b.length <= min(we, b.expires_at.astimezone(UTC))
            ]
            if not later:
                break
            cursor = min(later)
    return placed


def schedule_day(
    zone_id: str,
    windows: ZoneWindows,
    bulletins: Iterable[Bulletin],
    day: date,
    played: Iterable[str] = (),
    now: datetime | None = None,
    *,
    retracted: Mapping[str, tuple[int, datetime]] | None = None,
    previous: DaySchedule | None = None,
    planned: Iterable[str] = (),
) -> DaySchedule:
    """Plan ``day`` (local date of the zone) for one zone.

    ``played``: ids of bulletins already played (never planned again; a correction of one of
    them is scheduled). ``planned``: ids already planned on earlier days (excluded, but not
    counted as played). ``now``/``previous``: see the module docstring. Raises ValueError on
    naive datetimes, mismatched zone or day, or two different bulletins sharing an id.
    """
    if windows.zone_id != zone_id:
        raise ValueError(f"windows are for zone {windows.zone_id}, not {zone_id}")
    if now is not None:
        _aware("now", now)
    retracted = dict(retracted or {})
    for uri, (_, at) in retracted.items():
        _aware(f"retraction of {uri}", at)
    frozen: tuple[Slot, ...] = ()
    if previous is not None:
        if (previous.zone_id, previous.day) != (zone_id, day):
            raise ValueError(
                f"previous schedule is for {previous.zone_id} {previous.day}, not {zone_id} {day}"
            )
        if now is not None:
            frozen = tuple(s for s in previous.slots if s.start.astimezone(UTC) < now.astimezone(UTC))
    done = set(played)
    started = done | {s.bulletin_id for s in frozen}
    excluded = started | set(planned)

    everything = _dedupe(bulletins)
    unplaced: list[Unplaced] = []

    def drop(b: Bulletin, reason: Reason, detail: str = "") -> None:
        unplaced.append(Unplaced(b.bulletin_id, b.uri, b.version, reason, detail))

    newest: dict[str, Bulletin] = {}
    for b in everything:
        if not b.correction and not _is_retracted(b, retracted):
            best = newest.get(b.uri)
            if best is None or (b.version, b.bulletin_id) > (best.version, best.bulletin_id):
                newest[b.uri] = b
    candidates: list[Bulletin] = []
    longest = windows.longest_s
    for b in everything:  # preference order
        if b.bulletin_id in excluded:
            continue
        if _is_retracted(b, retracted):
            drop(b, Reason.RETRACTED, f"retracted at version {retracted[b.uri][0]}")
        elif not b.correction and newest[b.uri] is not b:
            drop(b, Reason.SUPERSEDED, f"version {newest[b.uri].version} replaces it")
        elif b.priority is Priority.EMERGENCY:
            drop(b, Reason.EMERGENCY, "played at once by the emergency lane")
        elif b.correction and b.corrects not in started:
            drop(b, Reason.CORRECTION_NOT_NEEDED, f"{b.corrects} was never played")
        elif b.length.total_seconds() > longest:
            drop(b, Reason.TOO_LONG, f"{b.length.total_seconds():.0f} s > longest window {longest:.0f} s")
        else:
            candidates.append(b)

    tz = windows.tz
    day_windows = windows.windows_on(day)
    utc_windows = [(ws.astimezone(UTC), we.astimezone(UTC)) for ws, we in day_windows]
    placed = _pack(utc_windows, candidates, None if now is None else _ceil_second(now), frozen)

    taken = {p.bulletin.bulletin_id for p in placed}
    leftovers = [b for b in candidates if b.bulletin_id not in taken]
    if leftovers:
        horizon = max(b.expires_at.astimezone(tz).date() for b in leftovers)
        horizon = min(horizon, day + timedelta(days=_LOOKAHEAD_DAYS))
        future = [
            (ws.astimezone(UTC), we.astimezone(UTC))
            for ws, we in windows.windows_between(day + timedelta(days=1), horizon)
        ]
        for b in leftovers:
            if _still_possible(b, future):
                drop(b, Reason.CARRIED_OVER)
            else:
                drop(b, Reason.EXPIRED, f"expires {b.expires_at.isoformat()}")

    slots = list(frozen) + [
        Slot.of(zone_id, p.bulletin, p.start.astimezone(tz), p.end.astimezone(tz), p.window_index)
        for p in placed
    ]
    slots.sort(key=lambda s: (s.start.astimezone(UTC), s.bulletin_id))
    unplaced.sort(key=lambda u: (u.reason.value, u.bulletin_id))
    return DaySchedule(
        zone_id=zone_id,
        day=day,
        timezone=windows.timezone,
        windows=tuple(day_windows),
        slots=tuple(slots),
        unplaced=tuple(unplaced),
        as_of=now,
    )


def schedule_days(
    zone_id: str,
    windows: ZoneWindows,
    bulletins: Iterable[Bulletin],
    first_day: date,
    days: int,
    played: Iterable[str] = (),
    now: datetime | None = None,
    *,
    retracted: Mapping[str, tuple[int, datetime]] | None = None,
    previous: Mapping[date, DaySchedule] | None = None,
) -> list[DaySchedule]:
    """Plan ``days`` consecutive days; what one day planned is not planned again on the next
    (carry-over: what did not fit moves on to the following days until it expires)."""
    items = list(bulletins)
    planned: set[str] = set()
    out: list[DaySchedule] = []
    for offset in range(days):
        day = first_day + timedelta(days=offset)
        plan = schedule_day(
            zone_id, windows, items, day, played, now,
            retracted=retracted, previous=(previous or {}).get(day), planned=planned,
        )  # fmt: skip
        planned |= {s.bulletin_id for s in plan.slots}
        out.append(plan)
    return out


@dataclass(frozen=True, slots=True)
class EmergencyPlan:
    """When an emergency bulletin plays: at once, then every ``repeat_interval_s``."""

    zone_id: str
    bulletin_id: str
    plays: tuple[Slot, ...] = field(default=())

    @property
    def starts(self) -> tuple[datetime, ...]:
        return tuple(s.start for s in self.plays)


def emergency_now(
    zone_id: str,
    bulletin: Bulletin,
    now: datetime,
    repeat_interval_s: float | None = None,
    *,
    max_plays: int | None = None,
) -> EmergencyPlan:
    """Plays of an emergency bulletin in one zone: the first at ``now``, ignoring windows (the
    platform interrupts whatever is playing), then every ``repeat_interval_s`` seconds while the
    play starts before ``expires_at`` (an alert still valid is worth starting; unlike windowed
    bulletins it need not end before expiry). None as interval: play once. Nothing when already
    expired. Slots have ``window_index == -1`` and the time zone of ``now``.

    Raises ValueError if the bulletin is not an emergency, or the interval is shorter than the
    bulletin (plays would overlap).
    """
    _aware("now", now)
    if bulletin.priority is not Priority.EMERGENCY:
        raise ValueError(f"bulletin {bulletin.bulletin_id} is {bulletin.priority.value}, not emergency")
    if repeat_interval_s is not None and repeat_interval_s < bulletin.length.total_seconds():
        raise ValueError(
            f"bulletin {bulletin.bulletin_id}: repeat interval {repeat_interval_s} s is shorter than the bulletin"
        )
    tz = now.tzinfo
    expires = bulletin.expires_at.astimezone(UTC)
    start = now.astimezone(UTC)
    plays: list[Slot] = []
    while start < expires and (max_plays is None or len(plays) < max_plays):
        plays.append(
            Slot.of(zone_id, bulletin, start.astimezone(tz), (start + bulletin.length).astimezone(tz), -1)
        )
        if repeat_interval_s is None:
            break
        start += timedelta(seconds=repeat_interval_s)
    return EmergencyPlan(zone_id, bulletin.bulletin_id, tuple(plays))
