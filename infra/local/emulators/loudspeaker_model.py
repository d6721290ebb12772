"""What the loudspeaker emulator keeps and answers with: the API's error envelope, time parsing,
and the records of zones, clusters, schedules, emergencies, plays and pre-emptions (see
``loudspeaker`` for the API and the playing model)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from aiohttp import web

from infra.local.emulators.common import json_response

__all__ = [
    "API",
    "CLUSTER_STATUSES",
    "DEFAULT_TOKEN",
    "SCHEDULE_PRIORITIES",
    "STATUS_CODES",
    "UTC",
    "Cluster",
    "Emergency",
    "PlatformError",
    "PlayRecord",
    "Preemption",
    "ScheduleDoc",
    "iso",
    "parse_iso",
    "parse_moment",
]

UTC = UTC
API = "/api/v1"
DEFAULT_TOKEN = "loudspeaker-demo-token"
SCHEDULE_PRIORITIES = frozenset({"normal", "priority"})
CLUSTER_STATUSES = frozenset({"online", "offline"})
STATUS_CODES = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    412: "precondition_failed",
    413: "too_many_zones",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "gateway_timeout",
}


class PlatformError(Exception):
    """An API error: HTTP status, a stable ``code`` name, a message and extra envelope fields."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None, **extra: Any
    ) -> None:
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
class Slot:
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
    slots: tuple[Slot, ...]
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        return {
            "zone": self.zone,
            "date": self.date,
            "version": self.version,
            "etag": self.etag,
            "updated_at": iso(self.updated_at),
            "schedule": self.body,
        }


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

    def starts_before(
        self, now: float, first: int = 0, *, inclusive: bool = False
    ) -> list[tuple[int, float]]:
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
            "emergency_id": self.emergency_id,
            "status": self.status(now),
            "priority": "emergency",
            "zone_count": len(self.zones),
            "title": self.title,
            "text": self.text,
            "audio_url": self.audio_url,
            "duration_s": self.duration_s,
            "repeat_interval_s": self.repeat_interval_s,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "replaces": list(self.replaces),
            "replaced_by": self.replaced_by,
            "preempted_clusters": self.preempted,
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
        return {
            "seq": self.seq,
            "bulletin_id": self.bulletin_id,
            "cluster_id": self.cluster_id,
            "zone": self.zone,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "played_s": round(self.played_s, 3),
            "result": self.result,
            "kind": self.kind,
            "emergency_id": self.emergency_id,
        }


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
        return {
            "seq": self.seq,
            "emergency_id": self.emergency_id,
            "zone": self.zone,
            "cluster_id": self.cluster_id,
            "at": iso(self.at),
            "interrupted": self.interrupted,
            "interrupted_kind": self.interrupted_kind,
        }


@dataclass(frozen=True)
class EmergencyPlay:
    emergency: Emergency
    k: int
    start: float
    end: float  # after cuts
    cut: bool

    @property
    def key(self) -> str:
        return f"E|{self.emergency.emergency_id}|{self.k}"


class OnAir(NamedTuple):
    id: str
    kind: str  # scheduled | emergency
    key: str
    start: float


@dataclass
class Zone:
    code: str
    clusters: list[Cluster]
    schedules: dict[str, ScheduleDoc] = field(default_factory=dict)
    emergencies: list[Emergency] = field(default_factory=list)
    done: set[tuple[str, str]] = field(default_factory=set)  # (cluster id, item key) reported
    first_open: dict[str, int] = field(
        default_factory=dict
    )  # emergency id → first play not reported everywhere
    # Nothing can end, start or be cut before ``next_due`` (set by a settle; -inf after a change):
    # until then a settle is a no-op and ``on_air`` (cluster → (id, kind)) says what plays.
    next_due: float = -math.inf
    on_air: dict[str, OnAir | None] = field(default_factory=dict)

    def slots(self) -> list[Slot]:
        return sorted((s for doc in self.schedules.values() for s in doc.slots), key=lambda s: s.start)
