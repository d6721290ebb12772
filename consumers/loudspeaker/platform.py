"""The loudspeaker platform's REST API (schedules, play reports, emergencies) and the zone
codes and times it speaks; its errors become consumers/delivery/errors.py classes."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson

from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.delivery.http import Reply, call
from schemas.errors import InvalidContent
from schemas.models import Target
from schemas.times import checked_instant

UTC = UTC
_WARD_ID = re.compile(r"zone:(\d+)")
_JSON = {"Content-Type": "application/json"}


def platform_zone(target_id: str, target: Target | None = None) -> str:
    """The platform's code for a zone: ``config.platform_zone`` when set, else the ward code on
    five digits as in VN-DVHC ("zone:4" → "00004"), else the id without ``zone:``."""
    if target is not None and target.config.get("platform_zone"):
        return str(target.config["platform_zone"])
    if target is not None and target.ward_code is not None:
        return f"{target.ward_code:05d}"
    m = _WARD_ID.fullmatch(target_id)
    return f"{int(m.group(1)):05d}" if m else target_id.removeprefix("zone:")


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def aware_time(raw: Any) -> datetime | None:
    """An aware ISO 8601 time, or None for anything else: naive, unparseable, or outside the years
    schemas/times.py accepts (the scheduler converts every time to UTC, which overflows there)."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = checked_instant(datetime.fromisoformat(raw))
    except (ValueError, InvalidContent):
        return None
    return moment if moment.tzinfo is not None else None


class ScheduleConflict(Exception):
    """412: the zone's schedule changed since this worker last saw it (another writer)."""

    def __init__(self, current_etag: str | None) -> None:
        super().__init__(f"schedule changed (now {current_etag})")
        self.current_etag = current_etag


@dataclass(frozen=True)
class PlatformSchedule:
    etag: str
    version: int
    updated_at: str
    body: dict[str, Any]


class PlatformClient:
    """The loudspeaker platform's REST API; errors become consumers/delivery/errors.py classes.

    Every call is safe to resend (schedules are idempotent by content, emergencies by id,
    deletes by nature), so a lost answer is a ``TransientDeliveryError``, never an unknown
    outcome. Raises ``TargetPaused`` (401 token, 429 rate limit: platform-wide),
    ``TransientDeliveryError`` (5xx, transport), ``PermanentDeliveryError`` (other 4xx;
    ``alert`` for 403/404 zones), ``ScheduleConflict`` (412, schedules only).
    """

    def __init__(
        self,
        base_url: str,
        token: Callable[[], str | None],
        *,
        timeout_s: float = 10.0,
        pause_on_token_s: float = 300.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.token, self.timeout_s, self.pause_on_token_s = token, timeout_s, pause_on_token_s
        self._session = session
        self._own_session = session is None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Reply:
        """An authenticated GET of the platform API, errors mapped as for the writes (readers: the
        status web's timeline, the play reporter)."""
        return await self._call("GET", path, params=params)

    async def _call(
        self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> Reply:
        assert self._session is not None, "start() first"
        token = self.token()
        if not token:
            raise TargetPaused(
                "no loudspeaker platform token configured", self.pause_on_token_s, code="no-token", alert=True
            )
        hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
        return await call(
            self._session,
            method,
            self.base + path,
            mutating=False,
            timeout_s=self.timeout_s,
            headers=hdrs,
            **kwargs,
        )

    @staticmethod
    def _zone_path(zone: str, day: date) -> str:
        return f"/zones/{quote(zone, safe='')}/schedules/{day.isoformat()}"

    async def get_schedule(self, zone: str, day: date) -> PlatformSchedule | None:
        reply = await self._call("GET", self._zone_path(zone, day))
        if reply.status == 404 and self._code(reply) == "not_found":
            return None
        self.raise_for(reply)
        body = reply.body if isinstance(reply.body, dict) else {}
        return PlatformSchedule(
            str(body.get("etag") or reply.headers.get("ETag", "")),
            int(body.get("version", 0)),
            str(body.get("updated_at", "")),
            dict(body.get("schedule") or {}),
        )

    async def put_schedule(
        self, zone: str, day: date, body: dict[str, Any] | bytes, *, if_match: str | None
    ) -> dict[str, Any]:
        """PUT a day's schedule: ``If-Match`` the etag last seen, or ``If-None-Match: *`` when
        none was seen (a schedule appearing meanwhile is a conflict too). ``body`` may come
        already encoded (orjson bytes): the adapter encodes once, to compare and to send."""
        headers = {"If-Match": if_match} if if_match else {"If-None-Match": "*"}
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        reply = await self._call("PUT", self._zone_path(zone, day), headers={**headers, **_JSON}, data=raw)
        self.raise_for(reply)
        return dict(reply.body) if isinstance(reply.body, dict) else {}

    async def plays(self, zone: str, since: datetime) -> list[dict[str, Any]]:
        reply = await self._call("GET", "/plays", params={"zone": zone, "since": utc_iso(since)})
        self.raise_for(reply)
        plays = reply.body.get("plays") if isinstance(reply.body, dict) else None
        return [p for p in plays or [] if isinstance(p, dict)]

    async def post_emergency(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self._call("POST", "/emergencies", json=body)
        self.raise_for(reply)
        return dict(reply.body) if isinstance(reply.body, dict) else {}

    async def delete_emergency(self, emergency_id: str) -> dict[str, Any] | None:
        """Stop an emergency; None when the platform does not know it."""
        reply = await self._call("DELETE", f"/emergencies/{quote(emergency_id, safe='')}")
        if reply.status == 404:
            return None
        self.raise_for(reply)
        return dict(reply.body) if isinstance(reply.body, dict) else {}

    @staticmethod
    def _code(reply: Reply) -> str:
        err = reply.body.get("error") if isinstance(reply.body, dict) else None
        return str(err.get("code", "")) if isinstance(err, dict) else ""

    def raise_for(self, reply: Reply) -> None:
        if reply.status < 300:
            return
        err = reply.body.get("error") if isinstance(reply.body, dict) else None
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or reply.status)
        what = f"loudspeaker platform {reply.status} {code}: {str(err.get('message') or reply.body)[:200]}"
        if reply.status == 412:
            raise ScheduleConflict(err.get("current_etag"))
        if reply.status == 401:
            raise TargetPaused(f"token refused ({what})", self.pause_on_token_s, code=code, alert=True)
        if reply.status == 429:
            raise TargetPaused(f"rate limited ({what})", _retry_after(reply, err) or 5.0, code=code)
        if reply.status >= 500 or reply.status == 408:
            raise TransientDeliveryError(what, _retry_after(reply, err), code=code)
        raise PermanentDeliveryError(what, code=code, alert=reply.status in (403, 404))


def _retry_after(reply: Reply, err: Mapping[str, Any]) -> float | None:
    for raw in (reply.headers.get("Retry-After"), err.get("retry_after")):
        try:
            return float(raw) if raw is not None else None
        except (TypeError, ValueError):
            continue
    return None
