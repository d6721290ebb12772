"""The real ``TimelineFetcher``: the zone's day as the loudspeaker platform holds it.

The stream app never talks to a channel; only the timeline page, on request, reads the platform,
with the loudspeaker adapter's client (imported here, at module level: no cycle needs hiding).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from consumers.delivery.errors import (
    OutcomeUnknown,
    PermanentDeliveryError,
    TargetPaused,
    TransientDeliveryError,
)
from consumers.loudspeaker.bodies import day_from_json
from consumers.loudspeaker.outputs import to_json
from consumers.loudspeaker.platform import PlatformClient, platform_zone
from schemas.registry import Registry, build_targets, load_config, province_names, targets_file
from schemas.secrets import SecretFile, SecretFileError
from schemas.settings import Settings
from schemas.timeline import TimelineUnavailable, UnknownZone, ZoneDay
from schemas.times import moment
from schemas.topics import Channel
from schemas.windows import ZoneWindows

__all__ = ["PlatformTimeline"]

log = logging.getLogger(__name__)


class PlatformTimeline:
    """A ``TimelineFetcher`` reading the loudspeaker platform (``settings.loudspeaker_api_url``,
    token from ``settings.loudspeaker_token_file``), like ``lantoa schedule`` does.

    The zone (a target id, a ward code or a test zone's id) is resolved against the targets
    registry as configured (``LANTOA_TARGETS_FILE``; re-read when the file changes), which also
    gives its windows and time zone. The platform's emergency list carries no zones, so each
    emergency that overlaps the day is read on its own (at most ``max_emergencies``, the most
    recent first). Raises ``UnknownZone`` or ``TimelineUnavailable``.
    """

    def __init__(
        self, settings: Settings, *, max_emergencies: int = 50, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings, self.max_emergencies, self.clock = settings, max_emergencies, clock
        self._registry: tuple[float, Registry] | None = None

    def _load_registry(self) -> Registry:
        path = targets_file(self.settings)
        mtime = path.stat().st_mtime
        if self._registry is None or self._registry[0] != mtime:
            self._registry = (mtime, Registry.of(build_targets(load_config(path))))
        return self._registry[1]

    async def __call__(self, zone: str, day: date | None) -> ZoneDay:
        try:
            registry = await asyncio.to_thread(self._load_registry)
        except (OSError, ValueError) as exc:
            raise TimelineUnavailable(f"targets registry: {exc}") from exc
        target = None
        for candidate in (zone, f"zone:{zone}"):
            found = registry.targets.get(candidate)
            if found is not None and found.channel is Channel.LOUDSPEAKER:
                target = found
                break
        if target is None and zone.isascii() and zone.isdigit():
            target = registry.zone_of_ward(int(zone))
        if target is None:
            raise UnknownZone(f"không có vùng loa {zone!r} trong danh sách đích (thử zone:<mã xã/phường>)")
        code = platform_zone(target.id, target)
        windows = ZoneWindows.from_config(code, target.config)
        tz = windows.tz
        wanted = day or datetime.fromtimestamp(self.clock(), tz).date()
        if self.settings.loudspeaker_token_file is None:
            raise TimelineUnavailable(
                "LANTOA_LOUDSPEAKER_TOKEN_FILE chưa được đặt: không có token của nền tảng loa"
            )
        try:
            token = SecretFile(self.settings.loudspeaker_token_file)
        except SecretFileError as exc:
            raise TimelineUnavailable(str(exc)) from None
        client = PlatformClient(
            self.settings.loudspeaker_api_url,
            lambda: token.get("token"),
            timeout_s=self.settings.http_timeout_s,
        )
        await client.start()
        try:
            found_schedule = await client.get_schedule(code, wanted)
            emergencies = await self._emergencies(client, code, wanted, tz)
        except (PermanentDeliveryError, TransientDeliveryError, TargetPaused, OutcomeUnknown) as exc:
            raise TimelineUnavailable(str(exc)) from exc
        finally:
            await client.close()
        schedule: dict[str, Any] | None = None
        platform: dict[str, Any] | None = None
        if found_schedule is not None:
            try:
                schedule = to_json(day_from_json(found_schedule.body))
            except (KeyError, ValueError, TypeError) as exc:
                raise TimelineUnavailable(f"lịch trên nền tảng không đọc được: {exc!r}") from exc
            platform = {
                "version": found_schedule.version,
                "etag": found_schedule.etag,
                "updated_at": found_schedule.updated_at,
            }
        province = province_names().get(target.province_code) if target.province_code is not None else None
        return ZoneDay(
            code,
            wanted,
            windows.timezone,
            target.name,
            province,
            target.id,
            tuple(windows.windows_on(wanted)),
            schedule,
            platform,
            tuple(emergencies),
        )

    async def _emergencies(
        self, client: PlatformClient, code: str, day: date, tz: ZoneInfo
    ) -> list[dict[str, Any]]:
        start = datetime.combine(day, datetime.min.time(), tzinfo=tz)
        end = start + timedelta(days=1)
        # The platform's emergency list carries no zones, hence one GET each.
        listed = await client.get("/emergencies")
        client.raise_for(listed)
        records = listed.body.get("emergencies") if isinstance(listed.body, dict) else None
        candidates = []
        for e in records or []:
            if not isinstance(e, dict):
                continue
            created = moment(e.get("created_at"))
            until = moment(e.get("stopped_at")) or moment(e.get("expires_at"))
            if created is not None and created < end and (until is None or until > start):
                candidates.append(e)
        candidates.sort(key=lambda e: str(e.get("created_at")), reverse=True)
        if len(candidates) > self.max_emergencies:
            log.warning(
                "timeline of %s on %s: %d emergencies overlap the day, reading the %d most recent",
                code,
                day,
                len(candidates),
                self.max_emergencies,
            )
        gate = asyncio.Semaphore(8)

        async def one(eid: str) -> dict[str, Any] | None:
            async with gate:
                reply = await client.get(f"/emergencies/{quote(eid, safe='')}")
            if reply.status == 404:
                return None
            client.raise_for(reply)
            return dict(reply.body) if isinstance(reply.body, dict) else None

        full = await asyncio.gather(
            *(one(str(e.get("emergency_id"))) for e in candidates[: self.max_emergencies])
        )
        return [e for e in full if e is not None and code in (e.get("zones") or ())]
