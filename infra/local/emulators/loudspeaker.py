"""Commune loudspeaker platform emulator (truyền thanh cơ sở), on the contract's model [guess].

The real platforms (TT 39/2020: a provincial "source information system" pushing to commune
stations that play through loudspeaker clusters) publish no common API, so this one follows the
emulator model of ``shared/design/channel-contracts.md``: ``Cluster{id, zone_code, status}``,
day schedules of slots per zone, emergencies that pre-empt at once, play reports upward.

API (JSON; ``Authorization: Bearer <token>``, else 401; errors are
``{"error": {"code": "<name>", "message": "...", ...}}`` with the HTTP status saying the class):

- ``PUT /api/v1/zones/{zone}/schedules/{date}``: the day's schedule, ``{"zone", "date",
  "timezone", "slots": [{"bulletin_id", "start", "end", "priority": normal|priority,
  "audio_url", "title", ...}], ...}`` (extra keys are kept). Idempotent by content: the same
  body → 200 ``unchanged``; another → ``replaced`` (200) or ``created`` (201); the reply and the
  ``ETag`` header carry the version's etag. ``If-Match`` (an etag or ``*``) and
  ``If-None-Match: *`` are honoured (412 ``precondition_failed`` with ``current_etag``).
- ``GET`` of the same → ``{"zone", "date", "version", "etag", "updated_at", "schedule"}``.
- ``POST /api/v1/emergencies`` ``{"emergency_id", "zones": [...], "audio_url" | "text",
  "priority": "emergency", "repeat_interval_s", "expires_at", "duration_s"?, "title"?,
  "replaces"?: id | [ids]}``: up to ``max_zones_per_call`` (5,000) zones in one call. Every
  cluster of those zones is pre-empted at once (what it was playing is recorded), plays, and
  plays again every ``repeat_interval_s`` while a play can start before ``expires_at``. 201
  with the record; a repost of the same id → 200 with the existing record and nothing else.
  ``replaces`` stops the named emergencies (a CAP Update).
- ``GET /api/v1/emergencies/{id}``; ``DELETE /api/v1/emergencies/{id}`` stops the repeats (a
  CAP Cancel; a play under way is cut); idempotent, 404 for an unknown id.
- ``GET /api/v1/plays?since=<ISO or epoch>&after=<seq>&zone=&bulletin_id=``: what played,
  ``{bulletin_id, cluster_id, zone, started_at, ended_at, played_s, result: ok|interrupted|
  offline, kind: scheduled|emergency, seq}``, in report order; ``next_after`` for paging.
- ``GET /api/v1/zones/{zone}/clusters``: device status.

Playing is simulated on the emulator's clock, lazily: before every request (and on
``settle()``) each zone's timeline up to *now* is turned into play reports, so a test with a
``ManualClock`` advances time and reads what played. Per cluster: a slot plays from start to
end (``ok``); an emergency play starting inside it cuts it (``interrupted``, ``played_s`` what
aired); a slot whose start falls inside an emergency play is pre-empted (``interrupted``, 0 s)
and the schedule goes on after; a cluster offline at a slot's start reports ``offline``, one
going offline mid-play reports ``offline`` with what aired. A schedule replaced while a slot
plays cuts it unless the new schedule keeps that slot; slots put in the past never play. A
later emergency cuts an earlier one's play; a cancel cuts the play under way.

Zones and clusters: ``zones`` gives clusters per zone code (one each by default); with
``auto_create_zones`` an unknown zone gets ``clusters_per_zone`` clusters on first use, else it
is a 404 ``zone_not_found``. Cluster ids are ``<zone>-c<n>``.

Control API (``/_control/...``, no auth): ``clusters`` (GET; POST ``{"cluster_id"|"zone",
"status": online|offline}`` or ``{"zone", "count"}``), ``schedules``, ``emergencies``,
``preemptions``, ``plays`` (GET, filters as the API), ``tokens`` (POST ``{"token",
"action": add|expire|revoke}``), ``settle`` (POST), plus the common faults, reset, stats,
clock and config. Fault kinds map to 429 ``rate_limited`` (``Retry-After``: ``regain_minutes``
× 60, else 5 s), 503 ``unavailable`` (or ``http_status``), ``error`` (``http_status`` or
``code`` as the status, default 400) and 401 ``token_expired``; the fault target is the zone
code (schedules) or the emergency id.

This module is the emulator: it routes the API and the control API and holds the parts. The
records are in ``loudspeaker_model``; the platform's state and rules (tokens, zones, schedules,
emergencies, the simulated playing) in ``loudspeaker_platform``; what requests carry, read and
checked, in ``loudspeaker_requests``; the control handlers in ``loudspeaker_control``.

Run alone: ``python -m infra.local.emulators.loudspeaker [--port N] [--zones-from-registry]
[--manual-clock] [--state-file F] [--token T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar, Generic, Self, TypeVar, cast, overload

import orjson
from aiohttp import web

from infra.local.emulators.common import (
    EmulatorBase,
    ManualClock,
    json_response,
    run_until_signalled,
    set_outcome,
)
from infra.local.emulators.faults import Fault
from infra.local.emulators.loudspeaker_control import LoudspeakerControl
from infra.local.emulators.loudspeaker_model import (
    API,
    DEFAULT_TOKEN,
    STATUS_CODES,
    Cluster,
    Emergency,
    PlatformError,
    PlayRecord,
    Preemption,
    ScheduleDoc,
    iso,
)
from infra.local.emulators.loudspeaker_platform import LoudspeakerPlatform
from infra.local.emulators.loudspeaker_requests import (
    check_preconditions,
    parse_day,
    parse_emergency,
    parse_schedule,
    plays_reply,
)

__all__ = ["LoudspeakerEmulator"]

_BAD_JSON = object()
_T = TypeVar("_T")


class _PlatformSetting(Generic[_T]):
    """An emulator attribute that is the platform's setting of the same name, so that
    ``EmulatorBase``'s config (``/_control/config``, ``reset()``) reads and writes the platform."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, emulator: None, owner: type) -> Self: ...

    @overload
    def __get__(self, emulator: LoudspeakerEmulator, owner: type | None = None) -> _T: ...

    def __get__(self, emulator: LoudspeakerEmulator | None, owner: type | None = None) -> Self | _T:
        if emulator is None:
            return self
        return cast(_T, getattr(emulator.platform, self.name))

    def __set__(self, emulator: LoudspeakerEmulator, value: _T) -> None:
        setattr(emulator.platform, self.name, value)


class LoudspeakerEmulator(EmulatorBase):
    """The platform's HTTP API and control API over a ``LoudspeakerPlatform`` (``platform``: the
    state and rules) and its ``LoudspeakerControl`` (``control``: the control handlers). The
    platform's in-process API is offered here too, for tests."""

    name: ClassVar[str] = "loudspeaker"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "max_zones_per_call": int,
        "clusters_per_zone": int,
        "auto_create_zones": bool,
        "max_slots_per_schedule": int,
        "min_repeat_interval_s": float,
        "default_duration_s": float,
    }
    max_zones_per_call = _PlatformSetting[int]()
    clusters_per_zone = _PlatformSetting[int]()
    auto_create_zones = _PlatformSetting[bool]()
    max_slots_per_schedule = _PlatformSetting[int]()
    min_repeat_interval_s = _PlatformSetting[float]()
    default_duration_s = _PlatformSetting[float]()

    def __init__(
        self,
        *,
        zones: Mapping[str, int] | Iterable[str] = (),
        tokens: Iterable[str] = (DEFAULT_TOKEN,),
        clusters_per_zone: int = 1,
        auto_create_zones: bool = True,
        max_zones_per_call: int = 5000,
        max_slots_per_schedule: int = 500,
        min_repeat_interval_s: float = 30.0,
        default_duration_s: float = 60.0,
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
    ) -> None:
        clock = clock if clock is not None else time.time
        # The parts exist before EmulatorBase.__init__ adds the routes that lead to them.
        self.platform = LoudspeakerPlatform(
            clock=clock,
            next_seq=self.next_seq,
            zones=zones,
            tokens=tokens,
            clusters_per_zone=clusters_per_zone,
            auto_create_zones=auto_create_zones,
            max_zones_per_call=max_zones_per_call,
            max_slots_per_schedule=max_slots_per_schedule,
            min_repeat_interval_s=min_repeat_interval_s,
            default_duration_s=default_duration_s,
        )
        self.control = LoudspeakerControl(self.platform)
        super().__init__(clock=clock, seed=seed)
        self._snapshot_config()

    def reset(self) -> None:
        super().reset()
        self.platform.reset()

    def stats_json(self) -> dict[str, Any]:
        data = super().stats_json()
        data.update(self.platform.counts())
        return data

    # ----- the platform's in-process API -------------------------------------------------------

    def add_zone(self, code: str, clusters: int | None = None) -> list[Cluster]:
        """Create a zone (or grow it) with ``clusters`` clusters (default ``clusters_per_zone``)."""
        return self.platform.add_zone(code, clusters)

    def clusters(self, zone: str | None = None) -> list[Cluster]:
        return self.platform.clusters(zone)

    def set_cluster_status(
        self, status: str, *, cluster_id: str | None = None, zone: str | None = None
    ) -> list[Cluster]:
        """Set one cluster (or every cluster of a zone) online or offline, from now on."""
        return self.platform.set_cluster_status(status, cluster_id=cluster_id, zone=zone)

    def add_token(self, token: str) -> None:
        self.platform.add_token(token)

    def expire_token(self, token: str | None = None) -> None:
        self.platform.expire_token(token)

    def revoke_token(self, token: str) -> None:
        self.platform.revoke_token(token)

    def schedule(self, zone: str, day: str) -> ScheduleDoc | None:
        return self.platform.schedule(zone, day)

    def schedules(self, zone: str | None = None) -> list[ScheduleDoc]:
        return self.platform.schedules(zone)

    def emergency(self, emergency_id: str) -> Emergency | None:
        return self.platform.emergency(emergency_id)

    def emergencies(self) -> list[Emergency]:
        return self.platform.emergencies()

    def preemptions(self, emergency_id: str | None = None, zone: str | None = None) -> list[Preemption]:
        return self.platform.preemptions(emergency_id, zone)

    def plays(
        self,
        *,
        zone: str | None = None,
        bulletin_id: str | None = None,
        since: float | None = None,
        after: int = 0,
        kind: str | None = None,
    ) -> list[PlayRecord]:
        """Play reports up to now (settles first: the zone asked for, or all), oldest first."""
        return self.platform.plays(zone=zone, bulletin_id=bulletin_id, since=since, after=after, kind=kind)

    def now_playing(self, zone: str) -> dict[str, str | None]:
        """What each cluster of the zone is playing right now (bulletin or emergency id)."""
        return self.platform.now_playing(zone)

    def cancel(self, emergency_id: str) -> Emergency:
        """Stop an emergency's repeats now (the play under way is cut). KeyError if unknown."""
        return self.platform.cancel(emergency_id)

    def settle(self) -> None:
        """Turn every zone's timeline up to now into play reports."""
        self.platform.settle()

    # ----- routes ------------------------------------------------------------------------------

    def _add_control_routes(self) -> None:
        r, control = self.app.router, self.control
        r.add_get("/_control/clusters", control.clusters)
        r.add_post("/_control/clusters", control.set_clusters)
        r.add_get("/_control/schedules", control.schedules)
        r.add_get("/_control/emergencies", control.emergencies)
        r.add_get("/_control/preemptions", control.preemptions)
        r.add_get("/_control/plays", control.plays)
        r.add_post("/_control/tokens", control.tokens)
        r.add_post("/_control/settle", control.settle)

    def _add_api_routes(self) -> None:
        r = self.app.router
        r.add_put(API + "/zones/{zone}/schedules/{date}", self._api(self._put_schedule))
        r.add_get(API + "/zones/{zone}/schedules/{date}", self._api(self._get_schedule))
        r.add_get(API + "/zones/{zone}/clusters", self._api(self._get_clusters))
        r.add_post(API + "/emergencies", self._api(self._post_emergency))
        r.add_get(API + "/emergencies", self._api(self._list_emergencies))
        r.add_get(API + "/emergencies/{emergency_id}", self._api(self._get_emergency))
        r.add_delete(API + "/emergencies/{emergency_id}", self._api(self._delete_emergency))
        r.add_get(API + "/plays", self._api(self._get_plays))

    # ----- HTTP plumbing -----------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PlatformError(401, "unauthorized", "missing bearer token")
        self.platform.authenticate(token.strip())

    def _api(self, fn: Callable[[web.Request, Any], Any]) -> Callable[[web.Request], Any]:
        async def handler(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            body: Any
            try:
                body = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = _BAD_JSON  # refused after authentication, like any bad request
            target = request.match_info.get("zone") or request.match_info.get("emergency_id")
            if target is None and isinstance(body, dict) and isinstance(body.get("emergency_id"), str):
                target = body["emergency_id"]

            async def action() -> web.StreamResponse:
                try:
                    self._authenticate(request)
                    if body is _BAD_JSON:
                        raise PlatformError(400, "invalid_request", "the body is not JSON")
                    result = fn(request, body)
                except PlatformError as err:
                    set_outcome(request, f"error:{err.code}")
                    return err.response()
                set_outcome(request, "ok")
                if isinstance(result, web.StreamResponse):
                    return result
                return json_response(result)

            return await self.guarded(request, target, action)

        return handler

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "rate_limit":
            wait = float(fault.regain_minutes) * 60 if fault.regain_minutes else 5.0
            err = PlatformError(
                fault.http_status or 429,
                "rate_limited",
                fault.message or "too many requests",
                retry_after=wait,
            )
        elif fault.kind == "server_error":
            status = fault.http_status or 503
            err = PlatformError(
                status,
                STATUS_CODES.get(status, "server_error"),
                fault.message or "service temporarily unavailable",
            )
        elif fault.kind == "expire_token":
            header = request.headers.get("Authorization", "")
            self.platform.expire_token(header.partition(" ")[2].strip() or None)
            err = PlatformError(401, "token_expired", fault.message or "the token has expired")
        else:
            status = fault.http_status or (fault.code if fault.code and 400 <= fault.code < 600 else 400)
            err = PlatformError(status, STATUS_CODES.get(status, "error"), fault.message or "injected error")
        set_outcome(request, f"error:{err.code}")
        return err.response()

    # ----- schedules ---------------------------------------------------------------------------

    def _put_schedule(self, request: web.Request, body: Any) -> web.StreamResponse:
        day = parse_day(request.match_info["date"])
        z = self.platform.zone(request.match_info["zone"])
        now = self.clock()
        check_preconditions(request, self.platform.current_schedule(z, day, now))
        slots = parse_schedule(z.code, day, body, max_slots=self.platform.max_slots_per_schedule)
        status, doc = self.platform.put_schedule(z, day, body, slots, now)
        reply = {
            "zone": z.code,
            "date": day,
            "status": status,
            "version": doc.version,
            "etag": doc.etag,
            "slots": len(doc.slots),
            "updated_at": iso(doc.updated_at),
        }
        return json_response(reply, status=201 if status == "created" else 200, headers={"ETag": doc.etag})

    def _get_schedule(self, request: web.Request, body: Any) -> web.StreamResponse:
        day = parse_day(request.match_info["date"])
        code = request.match_info["zone"]
        if not self.platform.has_zone(code) and not self.platform.auto_create_zones:
            raise PlatformError(404, "zone_not_found", f"no zone {code}")
        doc = self.platform.schedule(code, day)
        if doc is None:
            raise PlatformError(404, "not_found", f"no schedule for {code} on {day}")
        return json_response(doc.to_json(), headers={"ETag": doc.etag})

    def _get_clusters(self, request: web.Request, body: Any) -> dict[str, Any]:
        z = self.platform.zone(request.match_info["zone"])
        return {"zone": z.code, "clusters": [c.to_json() for c in z.clusters]}

    # ----- emergencies -------------------------------------------------------------------------

    def _post_emergency(self, request: web.Request, body: Any) -> web.StreamResponse:
        now = self.clock()
        eid = body.get("emergency_id") if isinstance(body, dict) else None
        existing = self.platform.emergency(eid) if isinstance(eid, str) else None
        if existing is not None:  # idempotent by id: never a second pre-emption
            return json_response({**existing.to_json(now, with_zones=False), "duplicate": True})
        emergency = parse_emergency(
            body,
            now,
            max_zones=self.platform.max_zones_per_call,
            default_duration_s=self.platform.default_duration_s,
            min_repeat_interval_s=self.platform.min_repeat_interval_s,
        )
        self.platform.start_emergency(emergency, now)
        return json_response({**emergency.to_json(now, with_zones=False), "duplicate": False}, status=201)

    def _get_emergency(self, request: web.Request, body: Any) -> dict[str, Any]:
        emergency = self.platform.emergency(request.match_info["emergency_id"])
        if emergency is None:
            raise PlatformError(404, "not_found", "no such emergency")
        return emergency.to_json(self.clock())

    def _list_emergencies(self, request: web.Request, body: Any) -> dict[str, Any]:
        now = self.clock()
        wanted = request.query.get("status")
        return {
            "emergencies": [
                e.to_json(now, with_zones=False)
                for e in self.platform.emergencies()
                if wanted is None or e.status(now) == wanted
            ]
        }

    def _delete_emergency(self, request: web.Request, body: Any) -> dict[str, Any]:
        try:
            emergency = self.platform.cancel(request.match_info["emergency_id"])
        except KeyError:
            raise PlatformError(404, "not_found", "no such emergency") from None
        return emergency.to_json(self.clock(), with_zones=False)

    def _get_plays(self, request: web.Request, body: Any) -> dict[str, Any]:
        try:
            return plays_reply(self.platform, request.query)
        except ValueError:
            raise PlatformError(400, "invalid_request", "limit must be an integer") from None


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.local.emulators.loudspeaker``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m infra.local.emulators.loudspeaker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--token", action="append", default=None, help=f"accepted bearer token (default {DEFAULT_TOKEN})"
    )
    parser.add_argument(
        "--zones-from-registry",
        action="store_true",
        help="create the 3,321 official zones up front (else zones appear on first use)",
    )
    parser.add_argument("--clusters-per-zone", type=int, default=1)
    parser.add_argument("--manual-clock", action="store_true")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--no-access-log", action="store_true")
    ns = parser.parse_args(argv)
    zones: list[str] = []
    if ns.zones_from_registry:
        from vietnam_provinces import Ward

        zones = [f"{int(w.code):05d}" for w in Ward.iter_all()]
    emulator = LoudspeakerEmulator(
        zones=zones,
        tokens=ns.token or [DEFAULT_TOKEN],
        clusters_per_zone=ns.clusters_per_zone,
        clock=ManualClock() if ns.manual_clock else None,
    )
    asyncio.run(
        run_until_signalled(
            [(emulator, ns.port)],
            ns.host,
            ns.state_file,
            lambda: {"loudspeaker": {"base_url": emulator.base_url, "tokens": ns.token or [DEFAULT_TOKEN]}},
            access_log=not ns.no_access_log,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
