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

Run alone: ``python -m infra.emulators.loudspeaker [--port N] [--zones-from-registry]
[--manual-clock] [--state-file F] [--token T]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from aiohttp import web

from infra.emulators.common import (
    ControlError,
    EmulatorBase,
    Fault,
    ManualClock,
    json_response,
    read_json,
    run_until_signalled,
    set_outcome,
)

__all__ = ["Cluster", "Emergency", "LoudspeakerEmulator", "PlatformError", "PlayRecord", "Preemption"]

UTC = timezone.utc
API = "/api/v1"
DEFAULT_TOKEN = "loudspeaker-demo-token"
SCHEDULE_PRIORITIES = frozenset({"normal", "priority"})
CLUSTER_STATUSES = frozenset({"online", "offline"})
_BAD_JSON = object()
STATUS_CODES = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                409: "conflict", 412: "precondition_failed", 413: "too_many_zones",
                429: "rate_limited", 500: "internal_error", 502: "bad_gateway",
                503: "unavailable", 504: "gateway_timeout"}


class PlatformError(Exception):
    """An API error: HTTP status, a stable ``code`` name, a message and extra envelope fields."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.retry_after = retry_after
        self.extra = extra

    def response(self) -> web.Response:
        body: dict[str, Any] = {"code": self.code, "message": self.message, **self.extra}
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            body["retry_after"] = self.retry_after
            headers["Retry-After"] = str(int(math.ceil(self.retry_after)))
        if self.status == 401:
            headers["WWW-Authenticate"] = f'Bearer error="invalid_token", error_description="{self.code}"'
        return json_response({"error": body}, status=self.status, headers=headers)


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(raw: Any, what: str) -> datetime:
    """An aware ISO 8601 time; PlatformError 400 otherwise."""
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            pass
        else:
            if moment.tzinfo is not None and moment.utcoffset() is not None:
                return moment
    raise PlatformError(400, "invalid_request", f"{what} must be an ISO 8601 time with an offset")


def parse_moment(raw: Any, what: str) -> float:
    """An aware ISO 8601 time (or epoch seconds) → epoch seconds; PlatformError 400 otherwise."""
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            try:
                return float(raw)
            except ValueError:
                pass
        else:
            if moment.tzinfo is not None and moment.utcoffset() is not None:
                return moment.timestamp()
    raise PlatformError(400, "invalid_request", f"{what} must be an ISO 8601 time with an offset")


@dataclass
class Cluster:
    """One loudspeaker cluster (cụm loa) of a zone; ``history`` = status changes (time, status)."""

    id: str
    zone: str
    status: str = "online"
    history: list[tuple[float, str]] = field(default_factory=list)

    def status_at(self, moment: float) -> str:
        current = "online"
        for at, status in self.history:
            if at > moment:
                break
            current = status
        return current

    def went_offline(self, start: float, end: float) -> float | None:
        """The first moment in (start, end) the cluster went offline, if it did."""
        for at, status in self.history:
            if start < at < end and status == "offline":
                return at
        return None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "zone_code": self.zone, "status": self.status}


@dataclass(frozen=True)
class _Slot:
    bulletin_id: str
    start: float
    end: float
    title: str
    priority: str
    audio_url: str

    @property
    def key(self) -> str:
        return f"S|{self.bulletin_id}|{self.start:.3f}|{self.end:.3f}"


@dataclass
class ScheduleDoc:
    zone: str
    date: str
    version: int
    etag: str
    body: dict[str, Any]
    slots: tuple[_Slot, ...]
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {"zone": self.zone, "date": self.date, "version": self.version, "etag": self.etag,
                "updated_at": iso(self.updated_at), "schedule": self.body}


@dataclass
class Emergency:
    """One emergency broadcast: pre-empts its zones at ``created_at``, repeats until stopped."""

    emergency_id: str
    zones: tuple[str, ...]
    text: str | None
    audio_url: str | None
    title: str
    duration_s: float
    repeat_interval_s: float
    created_at: float
    expires_at: float
    replaces: tuple[str, ...]
    stopped_at: float | None = None
    stop_reason: str | None = None  # cancelled | replaced
    replaced_by: str | None = None
    preempted: int = 0
    seq: int = 0

    def status(self, now: float) -> str:
        if self.stopped_at is not None:
            return self.stop_reason or "cancelled"
        return "expired" if now >= self.expires_at else "active"

    def end_of_repeats(self) -> float:
        return min(self.expires_at, self.stopped_at if self.stopped_at is not None else math.inf)

    def starts_before(self, now: float, first: int = 0, *, inclusive: bool = False) -> list[tuple[int, float]]:
        """(index, start) of the plays that began before ``now`` (or at it: ``inclusive``), from
        play ``first`` on."""
        out: list[tuple[int, float]] = []
        stop = self.end_of_repeats()
        k = first
        while True:
            t = self.created_at + k * self.repeat_interval_s
            if t > now or (t == now and not inclusive) or t >= stop:
                return out
            out.append((k, t))
            k += 1

    def to_json(self, now: float, *, with_zones: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "emergency_id": self.emergency_id, "status": self.status(now), "priority": "emergency",
            "zone_count": len(self.zones), "title": self.title, "text": self.text,
            "audio_url": self.audio_url, "duration_s": self.duration_s,
            "repeat_interval_s": self.repeat_interval_s, "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at), "replaces": list(self.replaces),
            "replaced_by": self.replaced_by, "preempted_clusters": self.preempted,
            "stopped_at": None if self.stopped_at is None else iso(self.stopped_at),
            "plays_started": len(self.starts_before(now)),
        }
        if with_zones:
            out["zones"] = list(self.zones)
        return out


@dataclass(frozen=True)
class PlayRecord:
    """What one cluster played (or could not): the report that becomes a receipt upstream."""

    seq: int
    bulletin_id: str
    cluster_id: str
    zone: str
    started_at: float
    ended_at: float
    played_s: float
    result: str  # ok | interrupted | offline
    kind: str  # scheduled | emergency
    emergency_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "bulletin_id": self.bulletin_id, "cluster_id": self.cluster_id,
                "zone": self.zone, "started_at": iso(self.started_at), "ended_at": iso(self.ended_at),
                "played_s": round(self.played_s, 3), "result": self.result, "kind": self.kind,
                "emergency_id": self.emergency_id}


@dataclass(frozen=True)
class Preemption:
    """An emergency taking a cluster over; ``interrupted`` = what it was playing (None: idle)."""

    seq: int
    emergency_id: str
    zone: str
    cluster_id: str
    at: float
    interrupted: str | None
    interrupted_kind: str | None

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "emergency_id": self.emergency_id, "zone": self.zone,
                "cluster_id": self.cluster_id, "at": iso(self.at), "interrupted": self.interrupted,
                "interrupted_kind": self.interrupted_kind}


@dataclass(frozen=True)
class _EPlay:
    emergency: Emergency
    k: int
    start: float
    end: float  # after cuts
    cut: bool

    @property
    def key(self) -> str:
        return f"E|{self.emergency.emergency_id}|{self.k}"


class _OnAir(NamedTuple):
    id: str
    kind: str  # scheduled | emergency
    key: str
    start: float


@dataclass
class _Zone:
    code: str
    clusters: list[Cluster]
    schedules: dict[str, ScheduleDoc] = field(default_factory=dict)
    emergencies: list[Emergency] = field(default_factory=list)
    done: set[tuple[str, str]] = field(default_factory=set)  # (cluster id, item key) reported
    first_open: dict[str, int] = field(default_factory=dict)  # emergency id → first play not reported everywhere
    # Nothing can end, start or be cut before ``next_due`` (set by a settle; -inf after a change):
    # until then a settle is a no-op and ``on_air`` (cluster → (id, kind)) says what plays.
    next_due: float = -math.inf
    on_air: dict[str, _OnAir | None] = field(default_factory=dict)

    def slots(self) -> list[_Slot]:
        return sorted((s for doc in self.schedules.values() for s in doc.slots), key=lambda s: s.start)


class LoudspeakerEmulator(EmulatorBase):
    """The platform: zones of clusters, schedules, emergencies, simulated playing, reports."""

    name: ClassVar[str] = "loudspeaker"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "max_zones_per_call": int, "clusters_per_zone": int, "auto_create_zones": bool,
        "max_slots_per_schedule": int, "min_repeat_interval_s": float, "default_duration_s": float,
    }

    def __init__(self, *, zones: Mapping[str, int] | Iterable[str] = (),
                 tokens: Iterable[str] = (DEFAULT_TOKEN,), clusters_per_zone: int = 1,
                 auto_create_zones: bool = True, max_zones_per_call: int = 5000,
                 max_slots_per_schedule: int = 500, min_repeat_interval_s: float = 30.0,
                 default_duration_s: float = 60.0, clock: Callable[[], float] | None = None,
                 seed: int | None = None) -> None:
        self.clusters_per_zone = clusters_per_zone
        self.auto_create_zones = auto_create_zones
        self.max_zones_per_call = max_zones_per_call
        self.max_slots_per_schedule = max_slots_per_schedule
        self.min_repeat_interval_s = min_repeat_interval_s
        self.default_duration_s = default_duration_s
        self._initial_zones = (dict(zones) if isinstance(zones, Mapping)
                               else {str(z): clusters_per_zone for z in zones})
        self._initial_tokens = tuple(tokens)
        super().__init__(clock=clock, seed=seed)
        self._init_state()
        self._snapshot_config()

    def _init_state(self) -> None:
        self._zones: dict[str, _Zone] = {}
        for code, count in self._initial_zones.items():
            self._add_zone(code, count)
        self._tokens: dict[str, str] = {t: "valid" for t in self._initial_tokens}
        self._emergencies: dict[str, Emergency] = {}
        self._plays: list[PlayRecord] = []
        self._preemptions: list[Preemption] = []
        self._busy: set[str] = set()  # zones with something left to report

    def reset(self) -> None:
        super().reset()
        self._init_state()

    # ----- in-process API --------------------------------------------------------------------

    def _add_zone(self, code: str, count: int) -> _Zone:
        if count < 1:
            raise ValueError(f"zone {code}: at least one cluster")
        zone = self._zones.get(code)
        if zone is None:
            zone = self._zones[code] = _Zone(code, [])
        for n in range(len(zone.clusters) + 1, count + 1):
            zone.clusters.append(Cluster(f"{code}-c{n}", code))
            zone.next_due = -math.inf
        return zone

    def add_zone(self, code: str, clusters: int | None = None) -> list[Cluster]:
        """Create a zone (or grow it) with ``clusters`` clusters (default ``clusters_per_zone``)."""
        return list(self._add_zone(code, clusters or self.clusters_per_zone).clusters)

    def clusters(self, zone: str | None = None) -> list[Cluster]:
        return [c for z in self._zones.values() if zone is None or z.code == zone for c in z.clusters]

    def set_cluster_status(self, status: str, *, cluster_id: str | None = None,
                           zone: str | None = None) -> list[Cluster]:
        """Set one cluster (or every cluster of a zone) online or offline, from now on."""
        if status not in CLUSTER_STATUSES:
            raise ValueError(f"status {status!r} not in {sorted(CLUSTER_STATUSES)}")
        now = self.clock()
        chosen = [c for c in self.clusters(zone) if cluster_id is None or c.id == cluster_id]
        if not chosen or (cluster_id is None and zone is None):
            raise ValueError("name an existing cluster_id or zone")
        for c in chosen:
            self._settle_zone(self._zones[c.zone], now)
            if c.status != status:
                c.status = status
                c.history.append((now, status))
                self._changed(self._zones[c.zone])
        return chosen

    def add_token(self, token: str) -> None:
        self._tokens[token] = "valid"

    def expire_token(self, token: str | None = None) -> None:
        for t in [token] if token else list(self._tokens):
            if t in self._tokens:
                self._tokens[t] = "expired"

    def revoke_token(self, token: str) -> None:
        self._tokens.pop(token, None)

    def schedule(self, zone: str, day: str) -> ScheduleDoc | None:
        z = self._zones.get(zone)
        return None if z is None else z.schedules.get(day)

    def schedules(self, zone: str | None = None) -> list[ScheduleDoc]:
        return [d for z in self._zones.values() if zone is None or z.code == zone
                for _, d in sorted(z.schedules.items())]

    def emergency(self, emergency_id: str) -> Emergency | None:
        return self._emergencies.get(emergency_id)

    def emergencies(self) -> list[Emergency]:
        return sorted(self._emergencies.values(), key=lambda e: e.seq)

    def preemptions(self, emergency_id: str | None = None, zone: str | None = None) -> list[Preemption]:
        return [p for p in self._preemptions if (emergency_id is None or p.emergency_id == emergency_id)
                and (zone is None or p.zone == zone)]

    def plays(self, *, zone: str | None = None, bulletin_id: str | None = None, since: float | None = None,
              after: int = 0, kind: str | None = None) -> list[PlayRecord]:
        """Play reports up to now (settles first: the zone asked for, or all), oldest first."""
        if zone is not None and zone in self._zones:
            self._settle_zone(self._zones[zone], self.clock())
        else:
            self.settle()
        return [p for p in self._plays if p.seq > after and (zone is None or p.zone == zone)
                and (bulletin_id is None or p.bulletin_id == bulletin_id)
                and (since is None or p.ended_at >= since) and (kind is None or p.kind == kind)]

    def now_playing(self, zone: str) -> dict[str, str | None]:
        """What each cluster of the zone is playing right now (bulletin or emergency id)."""
        now = self.clock()
        z = self._zones[zone]
        self._settle_zone(z, now)
        return {c.id: (on.id if (on := self._playing(z, c, now)) else None) for c in z.clusters}

    def settle(self) -> None:
        """Turn every zone's timeline up to now into play reports."""
        now = self.clock()
        for code in list(self._busy):
            self._settle_zone(self._zones[code], now)

    # ----- simulated playing -----------------------------------------------------------------

    def _emergency_plays(self, z: _Zone, now: float, *, inclusive: bool = False) -> list[_EPlay]:
        """The zone's emergency plays that began before ``now`` (but those already reported
        everywhere, bar one kept as a cutter), cut by stops and by later emergencies' plays."""
        raw = sorted(((t, k, e) for e in z.emergencies
                      for k, t in e.starts_before(now, max(0, z.first_open.get(e.emergency_id, 0) - 1),
                                                  inclusive=inclusive)),
                     key=lambda p: (p[0], p[2].seq))
        out: list[_EPlay] = []
        for i, (t, k, e) in enumerate(raw):
            end, cut = t + e.duration_s, False
            if e.stopped_at is not None and e.stopped_at < end:
                end, cut = max(t, e.stopped_at), True
            for t2, _, e2 in raw[i + 1:]:
                if t2 >= end:
                    break
                if e2 is not e:
                    end, cut = t2, True
                    break
            out.append(_EPlay(e, k, t, end, cut))
        return out

    def _record(self, bulletin_id: str, cluster: Cluster, start: float, end: float, result: str,
                kind: str, emergency_id: str | None = None) -> None:
        # An offline cluster plays nothing; one that went offline mid-play aired until then.
        played = 0.0 if result == "offline" and cluster.status_at(start) == "offline" else max(0.0, end - start)
        self._plays.append(PlayRecord(self.next_seq(), bulletin_id, cluster.id, cluster.zone, start, end,
                                      played, result, kind, emergency_id))

    def _settle_zone(self, z: _Zone, now: float) -> None:
        """Report what ended by ``now`` in one zone; remember when something next falls due and
        what is on air, so that settling again before then costs nothing."""
        if z.code not in self._busy or now < z.next_due:
            return
        eplays = self._emergency_plays(z, now, inclusive=True)  # a play starting now cuts now
        slots = z.slots()
        pending, due = False, math.inf
        for c in z.clusters:
            for s in slots:
                if (c.id, s.key) in z.done:
                    continue
                if s.start > now:
                    pending, due = True, min(due, s.start)
                    continue
                end, result = self._slot_outcome(s, eplays, c)
                if end > now:
                    pending, due = True, min(due, end)
                    continue
                self._record(s.bulletin_id, c, s.start, end, result, "scheduled")
                z.done.add((c.id, s.key))
            for p in eplays:
                if (c.id, p.key) in z.done:
                    continue
                end, result = p.end, ("interrupted" if p.cut else "ok")
                if c.status_at(p.start) == "offline":
                    end, result = p.start + p.emergency.duration_s, "offline"
                else:
                    gone = c.went_offline(p.start, end)
                    if gone is not None:
                        end, result = gone, "offline"
                if end > now:
                    pending, due = True, min(due, end)
                    continue
                self._record(p.emergency.emergency_id, c, p.start, end, result, "emergency",
                             p.emergency.emergency_id)
                z.done.add((c.id, p.key))
        by_emergency: dict[str, list[_EPlay]] = {}
        for p in eplays:
            by_emergency.setdefault(p.emergency.emergency_id, []).append(p)
        for e in list(z.emergencies):
            mine = by_emergency.get(e.emergency_id, [])
            open_k = [p.k for p in mine if any((c.id, p.key) not in z.done for c in z.clusters)]
            if open_k:
                z.first_open[e.emergency_id] = min(open_k)
            elif mine:
                z.first_open[e.emergency_id] = mine[-1].k + 1
            stop = e.end_of_repeats()
            if stop > now:
                pending = True
                following = e.created_at + (math.floor((now - e.created_at) / e.repeat_interval_s) + 1) * e.repeat_interval_s
                due = min(due, following if following < stop else stop)
            elif not open_k:  # over and reported everywhere: it can no longer cut anything
                z.emergencies.remove(e)
                z.first_open.pop(e.emergency_id, None)
        z.next_due = due
        z.on_air = {c.id: self._on_air(z, c, now, eplays, slots) for c in z.clusters} if pending else {}
        if not pending:
            self._busy.discard(z.code)

    def _changed(self, z: _Zone) -> None:
        """The zone's timeline changed: the next settle recomputes it."""
        z.next_due = -math.inf
        self._busy.add(z.code)

    @staticmethod
    def _slot_outcome(s: _Slot, eplays: list[_EPlay], c: Cluster) -> tuple[float, str]:
        if c.status_at(s.start) == "offline":
            return s.end, "offline"
        end, result = s.end, "ok"
        for p in eplays:
            if p.start <= s.start < p.end:
                return s.start, "interrupted"  # pre-empted before it began
            if s.start < p.start < end:
                end, result = p.start, "interrupted"
                break
        gone = c.went_offline(s.start, end)
        if gone is not None:
            return gone, "offline"
        return end, result

    def _playing(self, z: _Zone, c: Cluster, now: float) -> _OnAir | None:
        """What cluster ``c`` plays at ``now``."""
        self._settle_zone(z, now)
        return z.on_air.get(c.id)

    @staticmethod
    def _on_air(z: _Zone, c: Cluster, now: float, eplays: list[_EPlay], slots: list[_Slot]) -> _OnAir | None:
        if c.status_at(now) == "offline":
            return None
        for p in reversed(eplays):
            if p.start <= now < p.end:
                return _OnAir(p.emergency.emergency_id, "emergency", p.key, p.start)
        for s in slots:
            if (c.id, s.key) not in z.done and s.start <= now < s.end:
                return _OnAir(s.bulletin_id, "scheduled", s.key, s.start)
        return None

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

    def _zone(self, code: str) -> _Zone:
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
            err = PlatformError(fault.http_status or 429, "rate_limited", fault.message or "too many requests",
                                retry_after=wait)
        elif fault.kind == "server_error":
            status = fault.http_status or 503
            err = PlatformError(status, STATUS_CODES.get(status, "server_error"),
                                fault.message or "service temporarily unavailable")
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

    def _parse_schedule(self, zone: str, day: str, body: Any) -> tuple[_Slot, ...]:
        if not isinstance(body, dict):
            raise PlatformError(400, "invalid_request", "the schedule must be a JSON object")
        for name, expected in (("zone", zone), ("date", day)):
            if name in body and body[name] != expected:
                raise PlatformError(400, "invalid_request", f"{name} {body[name]!r} does not match the path ({expected})")
        tz: ZoneInfo | None = None
        if body.get("timezone") is not None:
            try:
                tz = ZoneInfo(str(body["timezone"]))
            except (ZoneInfoNotFoundError, ValueError):
                raise PlatformError(400, "invalid_request", f"unknown timezone {body['timezone']!r}") from None
        raw_slots = body.get("slots")
        if not isinstance(raw_slots, list):
            raise PlatformError(400, "invalid_request", "slots must be a list")
        if len(raw_slots) > self.max_slots_per_schedule:
            raise PlatformError(400, "invalid_request", f"at most {self.max_slots_per_schedule} slots a day")
        slots: list[_Slot] = []
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
                raise PlatformError(400, "invalid_request",
                                    f"{where}: emergencies are not scheduled; POST {API}/emergencies")
            if priority not in SCHEDULE_PRIORITIES:
                raise PlatformError(400, "invalid_request", f"{where}.priority must be normal or priority")
            audio = raw.get("audio_url")
            if not isinstance(audio, str) or urlsplit(audio).scheme not in ("http", "https"):
                raise PlatformError(400, "invalid_request", f"{where}.audio_url must be an absolute http(s) URL")
            title = raw.get("title", "")
            if not isinstance(title, str):
                raise PlatformError(400, "invalid_request", f"{where}.title must be a string")
            if tz is not None:
                local = local.astimezone(tz)
            if local.date().isoformat() != day:
                raise PlatformError(400, "invalid_request", f"{where} starts on {local.date()}, not {day}")
            slots.append(_Slot(bid, start, end, title, str(priority), audio))
        slots.sort(key=lambda s: s.start)
        for a, b in zip(slots, slots[1:]):
            if b.start < a.end:
                raise PlatformError(400, "invalid_request", f"slots of {a.bulletin_id} and {b.bulletin_id} overlap")
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
                raise PlatformError(412, "precondition_failed", "the schedule changed (If-Match)",
                                    current_etag=None if current is None else current.etag)
        if request.headers.get("If-None-Match", "").strip() == "*" and current is not None:
            raise PlatformError(412, "precondition_failed", "a schedule exists (If-None-Match: *)",
                                current_etag=current.etag)

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
                        self._record(s.bulletin_id, c, s.start, now, "offline" if result == "offline" else "interrupted",
                                     "scheduled")
                        z.done.add((c.id, s.key))
                for s in slots:  # the past cannot be played
                    if s.start < now and s.key not in old:
                        z.done.add((c.id, s.key))
            z.schedules[day] = ScheduleDoc(z.code, day, (current.version if current else 0) + 1, etag, body,
                                           slots, now)
            self._changed(z)
        doc = z.schedules[day]
        reply = {"zone": z.code, "date": day, "status": status, "version": doc.version, "etag": doc.etag,
                 "slots": len(doc.slots), "updated_at": iso(doc.updated_at)}
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
            raise PlatformError(413, "too_many_zones", f"at most {self.max_zones_per_call} zones per call",
                                max_zones=self.max_zones_per_call)
        text, audio = body.get("text"), body.get("audio_url")
        if audio is not None and (not isinstance(audio, str) or urlsplit(audio).scheme not in ("http", "https")):
            raise PlatformError(400, "invalid_request", "audio_url must be an absolute http(s) URL")
        if text is not None and (not isinstance(text, str) or not text.strip()):
            raise PlatformError(400, "invalid_request", "text must be a non-empty string")
        if audio is None and text is None:
            raise PlatformError(400, "invalid_request", "audio_url or text is required")
        duration = body.get("duration_s", self.default_duration_s)
        interval = body.get("repeat_interval_s")
        for name, value in (("duration_s", duration), ("repeat_interval_s", interval)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise PlatformError(400, "invalid_request", f"{name} must be a positive number of seconds")
        assert isinstance(duration, (int, float)) and isinstance(interval, (int, float))
        if interval < max(self.min_repeat_interval_s, duration):
            raise PlatformError(400, "invalid_request",
                                f"repeat_interval_s must be at least {max(self.min_repeat_interval_s, duration):g} s "
                                "(the minimum and the bulletin's length)")
        expires = parse_moment(body.get("expires_at"), "expires_at")
        if expires <= now:
            raise PlatformError(400, "invalid_request", "expires_at is in the past")
        replaces = body.get("replaces") or []
        replaces = [replaces] if isinstance(replaces, str) else replaces
        if not isinstance(replaces, list) or not all(isinstance(r, str) for r in replaces):
            raise PlatformError(400, "invalid_request", "replaces must be an emergency id or a list of them")
        title = body.get("title") or ""
        return Emergency(eid, tuple(dict.fromkeys(zones)), text, audio, str(title), float(duration), float(interval),
                         now, expires, tuple(replaces))

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
                self._preemptions.append(Preemption(self.next_seq(), emergency.emergency_id, z.code, c.id, now,
                                                    on.id if on else None, on.kind if on else None))
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
                    self._record(on.id, c, on.start, now, "interrupted", on.kind,
                                 on.id if on.kind == "emergency" else None)
                    z.done.add((c.id, on.key))
            z.emergencies.append(emergency)
            ends = now + emergency.duration_s
            z.next_due = min(z.next_due, ends) if z.code in self._busy else ends  # idle: nothing else is due
            self._busy.add(z.code)
            z.on_air = {c.id: _OnAir(emergency.emergency_id, "emergency", f"E|{emergency.emergency_id}|0", now)
                        if c.status_at(now) == "online" else None for c in z.clusters}
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
        return {"emergencies": [e.to_json(now, with_zones=False) for e in self.emergencies()
                                if wanted is None or e.status(now) == wanted]}

    def cancel(self, emergency_id: str) -> Emergency:
        """Stop an emergency's repeats now (the play under way is cut). KeyError if unknown."""
        emergency = self._emergencies[emergency_id]
        now = self.clock()
        if emergency.stopped_at is None:
            for code in emergency.zones:
                self._settle_zone(self._zones[code], now)
            emergency.stopped_at, emergency.stop_reason = now, "cancelled"
            for code in emergency.zones:
                self._changed(self._zones[code])
        return emergency

    def _delete_emergency(self, request: web.Request, body: Any) -> dict[str, Any]:
        try:
            emergency = self.cancel(request.match_info["emergency_id"])
        except KeyError:
            raise PlatformError(404, "not_found", "no such emergency") from None
        return emergency.to_json(self.clock(), with_zones=False)

    # ----- plays -----------------------------------------------------------------------------------

    @staticmethod
    def _play_filters(query: Mapping[str, str]) -> dict[str, Any]:
        out: dict[str, Any] = {"zone": query.get("zone"), "bulletin_id": query.get("bulletin_id"),
                               "kind": query.get("kind")}
        if query.get("since"):
            out["since"] = parse_moment(query["since"], "since")
        try:
            out["after"] = int(query.get("after", "0") or 0)
        except ValueError:
            raise PlatformError(400, "invalid_request", "after must be an integer") from None
        return out

    def _plays_json(self, query: Mapping[str, str]) -> dict[str, Any]:
        found = self.plays(**self._play_filters(query))
        limit = int(query.get("limit", "10000") or 10000)
        page = found[:limit]
        return {"plays": [p.to_json() for p in page], "now": iso(self.clock()),
                "next_after": page[-1].seq if page else int(query.get("after", "0") or 0)}

    def _get_plays(self, request: web.Request, body: Any) -> dict[str, Any]:
        try:
            return self._plays_json(request.query)
        except ValueError:
            raise PlatformError(400, "invalid_request", "limit must be an integer") from None

    # ----- control API -------------------------------------------------------------------------

    def _add_control_routes(self) -> None:
        r = self.app.router
        r.add_get("/_control/clusters", self._ctl_clusters)
        r.add_post("/_control/clusters", self._ctl_set_clusters)
        r.add_get("/_control/schedules", self._ctl_schedules)
        r.add_get("/_control/emergencies", self._ctl_emergencies)
        r.add_get("/_control/preemptions", self._ctl_preemptions)
        r.add_get("/_control/plays", self._ctl_plays)
        r.add_post("/_control/tokens", self._ctl_tokens)
        r.add_post("/_control/settle", self._ctl_settle)

    def stats_json(self) -> dict[str, Any]:
        data = super().stats_json()
        data.update(zones=len(self._zones), clusters=sum(len(z.clusters) for z in self._zones.values()),
                    schedules=sum(len(z.schedules) for z in self._zones.values()),
                    emergencies=len(self._emergencies), preemptions=len(self._preemptions), plays=len(self._plays))
        return data

    async def _ctl_clusters(self, request: web.Request) -> web.StreamResponse:
        return json_response({"clusters": [c.to_json() for c in self.clusters(request.query.get("zone"))]})

    async def _ctl_set_clusters(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict):
            raise ControlError('expected {"cluster_id"|"zone", "status"} or {"zone", "count"}')
        if "count" in body:
            if not isinstance(body.get("zone"), str) or not isinstance(body["count"], int):
                raise ControlError('expected {"zone": code, "count": n}')
            try:
                return json_response({"clusters": [c.to_json() for c in self.add_zone(body["zone"], body["count"])]})
            except ValueError as exc:
                raise ControlError(str(exc)) from exc
        try:
            changed = self.set_cluster_status(str(body.get("status", "")), cluster_id=body.get("cluster_id"),
                                              zone=body.get("zone"))
        except ValueError as exc:
            raise ControlError(str(exc), status=404 if "existing" in str(exc) else 400) from exc
        return json_response({"clusters": [c.to_json() for c in changed]})

    async def _ctl_schedules(self, request: web.Request) -> web.StreamResponse:
        day = request.query.get("date")
        docs = [d.to_json() for d in self.schedules(request.query.get("zone")) if day is None or d.date == day]
        return json_response({"schedules": docs})

    async def _ctl_emergencies(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        return json_response({"emergencies": [e.to_json(now) for e in self.emergencies()]})

    async def _ctl_preemptions(self, request: web.Request) -> web.StreamResponse:
        found = self.preemptions(request.query.get("emergency_id"), request.query.get("zone"))
        return json_response({"preemptions": [p.to_json() for p in found],
                              "zones": len({p.zone for p in found})})

    async def _ctl_plays(self, request: web.Request) -> web.StreamResponse:
        try:
            return json_response(self._plays_json(request.query))
        except (PlatformError, ValueError) as exc:
            raise ControlError(str(exc)) from exc

    async def _ctl_tokens(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        action = body.get("action", "add") if isinstance(body, dict) else None
        if action == "expire" and token is None:
            self.expire_token()
        elif not isinstance(token, str) or not token:
            raise ControlError('expected {"token": ..., "action": "add"|"expire"|"revoke"}')
        elif action == "add":
            self.add_token(token)
        elif action == "expire":
            self.expire_token(token)
        elif action == "revoke":
            self.revoke_token(token)
        else:
            raise ControlError("action is add, expire or revoke")
        return json_response({"tokens": len(self._tokens)})

    async def _ctl_settle(self, request: web.Request) -> web.StreamResponse:
        self.settle()
        return json_response({"plays": len(self._plays), "now": iso(self.clock())})


def main(argv: list[str] | None = None) -> int:
    """``python -m infra.emulators.loudspeaker``: serve until SIGTERM/SIGINT."""
    parser = argparse.ArgumentParser(prog="python -m infra.emulators.loudspeaker")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", action="append", default=None, help=f"accepted bearer token (default {DEFAULT_TOKEN})")
    parser.add_argument("--zones-from-registry", action="store_true",
                        help="create the 3,321 official zones up front (else zones appear on first use)")
    parser.add_argument("--clusters-per-zone", type=int, default=1)
    parser.add_argument("--manual-clock", action="store_true")
    parser.add_argument("--state-file", type=Path, default=None)
    parser.add_argument("--no-access-log", action="store_true")
    ns = parser.parse_args(argv)
    zones: list[str] = []
    if ns.zones_from_registry:
        from vietnam_provinces import Ward

        zones = [f"{int(w.code):05d}" for w in Ward.iter_all()]
    emulator = LoudspeakerEmulator(zones=zones, tokens=ns.token or [DEFAULT_TOKEN],
                                   clusters_per_zone=ns.clusters_per_zone,
                                   clock=ManualClock() if ns.manual_clock else None)
    asyncio.run(run_until_signalled(
        [(emulator, ns.port)], ns.host, ns.state_file,
        lambda: {"loudspeaker": {"base_url": emulator.base_url, "tokens": ns.token or [DEFAULT_TOKEN]}},
        access_log=not ns.no_access_log))
    return 0


if __name__ == "__main__":
    sys.exit(main())
