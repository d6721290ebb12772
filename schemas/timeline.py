"""What the status web's timeline page needs from whoever reads a loudspeaker platform: the
zone's day (``ZoneDay``), the two ways that can fail, and the fetcher's signature. The page lives
in streams/status/; the real fetcher, which talks to the platform, with the loudspeaker adapter
(consumers/loudspeaker/timeline.py); the process's bootstrap (``lantoa worker``) hands one to the
other."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any


class UnknownZone(LookupError):
    """No loudspeaker zone by that name: the page answers 404."""


class TimelineUnavailable(Exception):
    """The platform could not be asked (no token, down, refused): the page answers 502 with why."""


@dataclass(frozen=True)
class ZoneDay:
    """What the timeline page shows of one zone and one local day.

    ``schedule`` is the platform's schedule as ``consumers.loudspeaker.outputs.to_json`` shapes
    it (windows, slots, unplaced, totals), None when nothing was pushed for that day; then
    ``windows`` (the configured broadcast windows) still show. ``emergencies`` are the
    platform's emergency records (``GET /api/v1/emergencies/{id}``) that touch the zone that day.
    """

    zone: str
    day: date
    timezone: str
    name: str | None = None
    province: str | None = None
    target_id: str | None = None
    windows: tuple[tuple[datetime, datetime], ...] = ()
    schedule: Mapping[str, Any] | None = None
    platform: Mapping[str, Any] | None = None
    emergencies: tuple[Mapping[str, Any], ...] = ()


# zone as given in the URL (target id, ward code or platform code), day (None: today there).
# Raises UnknownZone or TimelineUnavailable.
TimelineFetcher = Callable[[str, date | None], Awaitable[ZoneDay]]
