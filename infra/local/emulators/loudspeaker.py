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

This module is the HTTP API; the records are in ``loudspeaker_model``, the zones and the
simulated playing in ``loudspeaker_platform``, and the control routes in ``loudspeaker_control``.

Run alone: ``python -m infra.local.emulators.loudspeaker [--port N] [--zones-from-registry]
[--manual-clock] [--state-file F] [--token T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import sys
from collections.abc import Callable
from datetime import date
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiohttp import web

from infra.local.emulators.common import ManualClock, json_response, run_until_signalled, set_outcome
from infra.local.emulators.faults import Fault
from infra.local.emulators.loudspeaker_control import LoudspeakerControl
from infra.local.emulators.loudspeaker_model import (
    API,
    DEFAULT_TOKEN,
    SCHEDULE_PRIORITIES,
    STATUS_CODES,
    Emergency,
    OnAir,
    PlatformError,
    Preemption,
    ScheduleDoc,
    Slot,
    Zone,
    iso,
    parse_iso,
    parse_moment,
)

__all__ = ["LoudspeakerEmulator"]

_BAD_JSON = object()


class LoudspeakerEmulator(LoudspeakerControl):
    """The platform's HTTP API over ``LoudspeakerPlatform`` (state, constructor arguments, playing)
    and ``LoudspeakerControl`` (the control routes)."""

    name: ClassVar[str] = "loudspeaker"

    # ----- auth, zones -------------------------------------------------------------------------

    def _authenticate(self, request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise PlatformError(401, "unauthorized", "missing bearer token")
        state = self._tokens.get(token.strip())
        if state is None:
            raise PlatformError(401, "unauthorized", "unknown or revoked token")
        if state == "expired":
            raise PlatformError(401, "token_expired", "the token has expired")
        return token.strip()

    def _zone(self, code: str) -> Zone:
        zone = self._zones.get(code)
        if zone is None:
            if not self.auto_create_zones:
                raise PlatformError(404, "zone_not_found", f"no zone {code}", zones=[code])
            zone = self._add_zone(code, self.clusters_per_zone)
        return zone

    # ----- HTTP plumbing ---------------------------------------------------------------------

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
            self.expire_token(header.partition(" ")[2].strip() or None)
            err = PlatformError(401, "token_expired", fault.message or "the token has expired")
        else:
            status = fault.http_status or (fault.code if fault.code and 400 <= fault.code < 600 else 400)
            err = PlatformError(status, STATUS_CODES.get(status, "error"), fault.message or "injected error")
        set_outcome(request, f"error:{err.code}")
        return err.response()

    # ----- schedules ---------------------------------------------------------------------------

    def _parse_schedule(self, zone: str, day: str, body: Any) -> tuple[Slot, ...]:
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
                raise PlatformError(
                    400, "invalid_request", f"unknown timezone {body['timezone']!r}"
                ) from None
        raw_slots = body.get("slots")
        if not isinstance(raw_slots, list):
            raise PlatformError(400, "invalid_request", "slots must be a list")
        if len(raw_slots) > self.max_slots_per_schedule:
            raise PlatformError(400, "invalid_request", f"at most {self.max_slots_per_schedule} slots a day")
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
                raise PlatformError(
                    400, "invalid_request", f"{where}.audio_url must be an absolute http(s) URL"
                )
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

    @staticmethod
    def _day(raw: str) -> str:
        try:
            return date.fromisoformat(raw).isoformat()
        except ValueError:
            raise PlatformError(400, "invalid_request", f"date {raw!r} is not YYYY-MM-DD") from None

    @staticmethod
    def _preconditions(request: web.Request, current: ScheduleDoc | None) -> None:
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

    def _put_schedule(self, request: web.Request, body: Any) -> web.StreamResponse:
        day = self._day(request.match_info["date"])
        z = self._zone(request.match_info["zone"])
        now = self.clock()
        self._settle_zone(z, now)
        current = z.schedules.get(day)
        self._preconditions(request, current)
        slots = self._parse_schedule(z.code, day, body)
        etag = '"' + hashlib.sha256(orjson.dumps(body, option=orjson.OPT_SORT_KEYS)).hexdigest()[:32] + '"'
        if current is not None and current.etag == etag:
            status, code = "unchanged", 200
        else:
            status, code = ("replaced", 200) if current is not None else ("created", 201)
            old = {s.key: s for s in (current.slots if current else ())}
            new_keys = {s.key for s in slots}
            eplays = self._emergency_plays(z, now)
            for c in z.clusters:
                for s in old.values():  # cut what plays now unless the new schedule keeps it
                    if s.key not in new_keys and s.start < now < s.end and (c.id, s.key) not in z.done:
                        _, result = self._slot_outcome(s, eplays, c)
                        self._record(
                            s.bulletin_id,
                            c,
                            s.start,
                            now,
                            "offline" if result == "offline" else "interrupted",
                            "scheduled",
                        )
                        z.done.add((c.id, s.key))
                for s in slots:  # the past cannot be played
                    if s.start < now and s.key not in old:
                        z.done.add((c.id, s.key))
            z.schedules[day] = ScheduleDoc(
                z.code, day, (current.version if current else 0) + 1, etag, body, slots, now
            )
            self._changed(z)
        doc = z.schedules[day]
        reply = {
            "zone": z.code,
            "date": day,
            "status": status,
            "version": doc.version,
            "etag": doc.etag,
            "slots": len(doc.slots),
            "updated_at": iso(doc.updated_at),
        }
        return json_response(reply, status=code, headers={"ETag": doc.etag})

    def _get_schedule(self, request: web.Request, body: Any) -> web.StreamResponse:
        day = self._day(request.match_info["date"])
        z = self._zones.get(request.match_info["zone"])
        if z is None and not self.auto_create_zones:
            raise PlatformError(404, "zone_not_found", f"no zone {request.match_info['zone']}")
        doc = None if z is None else z.schedules.get(day)
        if doc is None:
            raise PlatformError(404, "not_found", f"no schedule for {request.match_info['zone']} on {day}")
        return json_response(doc.to_json(), headers={"ETag": doc.etag})

    def _get_clusters(self, request: web.Request, body: Any) -> dict[str, Any]:
        z = self._zone(request.match_info["zone"])
        return {"zone": z.code, "clusters": [c.to_json() for c in z.clusters]}

    # ----- emergencies -------------------------------------------------------------------------

    def _parse_emergency(self, body: Any, now: float) -> Emergency:
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
        if len(zones) > self.max_zones_per_call:
            raise PlatformError(
                413,
                "too_many_zones",
                f"at most {self.max_zones_per_call} zones per call",
                max_zones=self.max_zones_per_call,
            )
        text, audio = body.get("text"), body.get("audio_url")
        if audio is not None and (
            not isinstance(audio, str) or urlsplit(audio).scheme not in ("http", "https")
        ):
            raise PlatformError(400, "invalid_request", "audio_url must be an absolute http(s) URL")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise PlatformError(400, "invalid_request", "text must be a non-empty string")
        if audio is None and text is None:
            raise PlatformError(400, "invalid_request", "audio_url or text is required")
        duration = body.get("duration_s", self.default_duration_s)
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
        if interval < max(self.min_repeat_interval_s, duration):
            raise PlatformError(
                400,
                "invalid_request",
                f"repeat_interval_s must be at least {max(self.min_repeat_interval_s, duration):g} s "
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

    def _post_emergency(self, request: web.Request, body: Any) -> web.StreamResponse:
        now = self.clock()
        eid = body.get("emergency_id") if isinstance(body, dict) else None
        existing = self._emergencies.get(eid) if isinstance(eid, str) else None
        if existing is not None:  # idempotent by id: never a second pre-emption
            return json_response({**existing.to_json(now, with_zones=False), "duplicate": True})
        emergency = self._parse_emergency(body, now)
        unknown = [code for code in emergency.zones if code not in self._zones]
        if unknown and not self.auto_create_zones:
            raise PlatformError(404, "zone_not_found", f"{len(unknown)} unknown zone(s)", zones=unknown[:100])
        emergency.seq = self.next_seq()
        preempted = 0
        zones = [self._zone(code) for code in emergency.zones]
        for z in zones:  # what each cluster was playing, the alert it replaces included
            for c in z.clusters:
                on = self._playing(z, c, now)
                self._preemptions.append(
                    Preemption(
                        self.next_seq(),
                        emergency.emergency_id,
                        z.code,
                        c.id,
                        now,
                        on.id if on else None,
                        on.kind if on else None,
                    )
                )
                preempted += on is not None
        for old_id in emergency.replaces:
            old = self._emergencies.get(old_id)
            if old is not None and old.stopped_at is None:
                for code in old.zones:
                    self._settle_zone(self._zones[code], now)
                old.stopped_at, old.stop_reason, old.replaced_by = now, "replaced", emergency.emergency_id
                for code in set(old.zones) - set(emergency.zones):
                    self._changed(self._zones[code])
        for z in zones:
            # What was on air is cut now: report it at once (as a settle would), so that a zone
            # needs no settling until the new play ends or something else falls due.
            for c in z.clusters:
                on = z.on_air.get(c.id)
                if on is not None and (c.id, on.key) not in z.done:
                    self._record(
                        on.id,
                        c,
                        on.start,
                        now,
                        "interrupted",
                        on.kind,
                        on.id if on.kind == "emergency" else None,
                    )
                    z.done.add((c.id, on.key))
            z.emergencies.append(emergency)
            ends = now + emergency.duration_s
            z.next_due = min(z.next_due, ends) if z.code in self._busy else ends  # idle: nothing else is due
            self._busy.add(z.code)
            z.on_air = {
                c.id: OnAir(emergency.emergency_id, "emergency", f"E|{emergency.emergency_id}|0", now)
                if c.status_at(now) == "online"
                else None
                for c in z.clusters
            }
        emergency.preempted = preempted
        self._emergencies[emergency.emergency_id] = emergency
        return json_response({**emergency.to_json(now, with_zones=False), "duplicate": False}, status=201)

    def _get_emergency(self, request: web.Request, body: Any) -> dict[str, Any]:
        emergency = self._emergencies.get(request.match_info["emergency_id"])
        if emergency is None:
            raise PlatformError(404, "not_found", "no such emergency")
        return emergency.to_json(self.clock())

    def _list_emergencies(self, request: web.Request, body: Any) -> dict[str, Any]:
        now = self.clock()
        wanted = request.query.get("status")
        return {
            "emergencies": [
                e.to_json(now, with_zones=False)
                for e in self.emergencies()
                if wanted is None or e.status(now) == wanted
            ]
        }

    def _delete_emergency(self, request: web.Request, body: Any) -> dict[str, Any]:
        try:
            emergency = self.cancel(request.match_info["emergency_id"])
        except KeyError:
            raise PlatformError(404, "not_found", "no such emergency") from None
        return emergency.to_json(self.clock(), with_zones=False)

    def _get_plays(self, request: web.Request, body: Any) -> dict[str, Any]:
        try:
            return self._plays_json(request.query)
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
