"""Broadcast windows of one loudspeaker zone, parsed from its registry entry. Pure, no I/O.

A zone's Target (schemas/registry.py) carries ``windows`` (local "HH:MM-HH:MM" strings),
``days`` (ISO weekdays, Monday=1) and ``timezone`` in its config, merged from the
``[loudspeaker]`` section of infra/targets.toml and the zone's own override. Anything missing
falls back to the same defaults as that section.

Windows never cross midnight and never overlap: a station plays one programme at a time, and a
window that ran past midnight would belong to two broadcast days. Bad config raises ValueError
naming the zone and the offending value, so a typo in targets.toml stops ``targets load``
instead of silently muting a commune.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from schemas.models import Target
from schemas.topics import Channel

DEFAULT_WINDOWS: tuple[str, ...] = ("05:30-06:15", "17:00-17:45")
DEFAULT_DAYS: tuple[int, ...] = (1, 2, 3, 4, 5, 6)
DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"

_WINDOW = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """One daily window in local wall-clock time; ``start < end`` on the same day."""

    start: time
    end: time

    @classmethod
    def parse(cls, spec: str, zone_id: str = "?") -> Window:
        """Parse "HH:MM-HH:MM". Raises ValueError naming the zone and the value."""
        match = _WINDOW.fullmatch(spec) if isinstance(spec, str) else None
        if match is None:
            raise ValueError(f"zone {zone_id}: window {spec!r} is not 'HH:MM-HH:MM' (24-hour local time)")
        h1, m1, h2, m2 = (int(g) for g in match.groups())
        start, end = time(h1, m1), time(h2, m2)
        if end <= start:
            raise ValueError(f"zone {zone_id}: window {spec!r} must end after it starts on the same day")
        return cls(start, end)

    @property
    def spec(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    @property
    def nominal_s(self) -> float:
        """Length in wall-clock seconds (the real length differs only across a DST change)."""
        return float((self.end.hour * 60 + self.end.minute - self.start.hour * 60 - self.start.minute) * 60)


@dataclass(frozen=True, slots=True)
class ZoneWindows:
    """When one zone broadcasts: daily windows, on which ISO weekdays, in which time zone."""

    zone_id: str
    windows: tuple[Window, ...] = tuple(Window.parse(w) for w in DEFAULT_WINDOWS)
    days: tuple[int, ...] = DEFAULT_DAYS
    timezone: str = DEFAULT_TIMEZONE

    def __post_init__(self) -> None:
        zid = self.zone_id
        if not self.windows:
            raise ValueError(f"zone {zid}: no broadcast windows (deactivate the zone instead)")
        if list(self.windows) != sorted(self.windows):
            raise ValueError(f"zone {zid}: windows must be in time order: {[w.spec for w in self.windows]}")
        for a, b in pairwise(self.windows):
            if b.start < a.end:
                raise ValueError(f"zone {zid}: windows {a.spec!r} and {b.spec!r} overlap")
        if not self.days:
            raise ValueError(f"zone {zid}: no broadcast days (deactivate the zone instead)")
        for d in self.days:
            if isinstance(d, bool) or not isinstance(d, int) or not 1 <= d <= 7:
                raise ValueError(f"zone {zid}: day {d!r} is not an ISO weekday 1..7 (Monday=1)")
        if len(set(self.days)) != len(self.days) or list(self.days) != sorted(self.days):
            raise ValueError(f"zone {zid}: days must be increasing without repeats: {list(self.days)}")
        _zone_info(zid, self.timezone)

    @classmethod
    def from_config(
        cls, zone_id: str, config: Mapping[str, Any], defaults: Mapping[str, Any] | None = None
    ) -> ZoneWindows:
        """Build from a zone's config mapping; missing keys come from ``defaults`` (the
        ``[loudspeaker]`` section) and then from this module's defaults.

        Windows may be listed in any order (they are sorted); days likewise (repeats are an
        error: they are a typo more often than an intent). Raises ValueError on bad values.
        """
        base = defaults or {}
        raw_windows = config.get("windows", base.get("windows", DEFAULT_WINDOWS))
        raw_days = config.get("days", base.get("days", DEFAULT_DAYS))
        tz = config.get("timezone", base.get("timezone", DEFAULT_TIMEZONE))
        if isinstance(raw_windows, str) or not isinstance(raw_windows, Sequence):
            raise ValueError(f"zone {zone_id}: windows must be a list of 'HH:MM-HH:MM', got {raw_windows!r}")
        if isinstance(raw_days, str) or not isinstance(raw_days, Sequence):
            raise ValueError(f"zone {zone_id}: days must be a list of ISO weekdays, got {raw_days!r}")
        if not isinstance(tz, str):
            raise ValueError(f"zone {zone_id}: timezone must be an IANA name, got {tz!r}")
        windows = tuple(sorted(Window.parse(w, zone_id) for w in raw_windows))
        for d in raw_days:
            if isinstance(d, bool) or not isinstance(d, int):
                raise ValueError(f"zone {zone_id}: day {d!r} is not an ISO weekday 1..7 (Monday=1)")
        return cls(zone_id, windows, tuple(sorted(raw_days)), tz)

    @classmethod
    def from_target(cls, target: Target, defaults: Mapping[str, Any] | None = None) -> ZoneWindows:
        """Build from a loudspeaker zone Target of the registry."""
        if target.channel is not Channel.LOUDSPEAKER:
            raise ValueError(f"target {target.id} is a {target.channel.value} target, not a loudspeaker zone")
        return cls.from_config(target.id, target.config, defaults)

    @property
    def tz(self) -> ZoneInfo:
        return _zone_info(self.zone_id, self.timezone)

    @property
    def longest_s(self) -> float:
        """The longest window in wall-clock seconds: a bulletin longer than this never fits."""
        return max(w.nominal_s for w in self.windows)

    def broadcasts_on(self, day: date) -> bool:
        return day.isoweekday() in self.days

    def windows_on(self, day: date) -> list[tuple[datetime, datetime]]:
        """The day's windows as (start, end) aware datetimes in the zone's time zone, in order.

        Empty on a day without broadcasts. Across a DST change a window is as long as the clocks
        say (aware arithmetic in UTC); a window that would vanish in a gap is left out.
        """
        if not self.broadcasts_on(day):
            return []
        tz = self.tz
        out: list[tuple[datetime, datetime]] = []
        for w in self.windows:
            start = datetime.combine(day, w.start, tzinfo=tz)
            end = datetime.combine(day, w.end, tzinfo=tz)
            if end.astimezone(UTC) > start.astimezone(UTC):
                out.append((start, end))
        return out

    def windows_between(self, first_day: date, last_day: date) -> list[tuple[datetime, datetime]]:
        """All windows of the days ``first_day..last_day`` (inclusive), in order."""
        out: list[tuple[datetime, datetime]] = []
        day = first_day
        while day <= last_day:
            out.extend(self.windows_on(day))
            day += timedelta(days=1)
        return out


def _zone_info(zone_id: str, name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"zone {zone_id}: unknown time zone {name!r}") from exc
