"""Typed models of what travels on the distribution topics, and their dict forms. No I/O."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from schemas.article import parse_time
from schemas.errors import InvalidContent
from schemas.text import bounded, identifier
from schemas.topics import Channel

# The highest article version: what schemas/article.py parse_version reads (18 digits), well within
# the 64-bit integers orjson writes.
MAX_VERSION = 10**18 - 1
# A receipt's reason is a sentence for a person (and the status views show it); it may quote what
# was refused, which may be anything: 2000 characters hold the longest real reason (a schema
# message quoting a value) and an editor's whole retraction reason (retraction.v1.json allows
# 2000), and keep an 800 kB key from making a 1.2 MB receipt.
MAX_RECEIPT_REASON_CHARS = 2000


class Action(StrEnum):
    """What a command asks of a target."""

    PUBLISH = "publish"
    UPDATE = "update"
    RETRACT = "retract"
    # An editor's answer to a citizen's comment or message (engagement.questions): uri is the
    # question's urn:lantoa:question:<id>, version the answer's number (1, then follow-ups).
    REPLY = "reply"


class Priority(StrEnum):
    """Bulletin priority, lowest to highest (thông thường, ưu tiên, khẩn cấp)."""

    NORMAL = "normal"
    PRIORITY = "priority"
    EMERGENCY = "emergency"


class Outcome(StrEnum):
    """What happened at one step: a receipt's outcome (schemas/json/receipt.v1.json lists the same
    values; tests/unit/schemas/test_enums.py keeps the two in step)."""

    ACCEPTED = "accepted"
    DROPPED_STALE = "dropped_stale"
    DROPPED_DUPLICATE = "dropped_duplicate"
    HELD = "held"
    RELEASED = "released"
    EMBARGO_CANCELLED = "embargo_cancelled"
    ROUTED = "routed"
    RETRACTED = "retracted"
    RETRACT_UNKNOWN = "retract_unknown"
    DEAD_LETTERED = "dead_lettered"
    DELIVERED = "delivered"
    UPDATED = "updated"
    DELETED = "deleted"
    RETRYING = "retrying"
    UNKNOWN = "unknown"
    FAILED = "failed"
    SKIPPED = "skipped"
    PLAYED = "played"
    INTERRUPTED = "interrupted"
    OFFLINE = "offline"


class Stage(StrEnum):
    """Which step a receipt reports on (schemas/json/receipt.v1.json lists the same values)."""

    INTAKE = "intake"
    POLICY = "policy"
    FANOUT = "fanout"
    DELIVERY = "delivery"
    BROADCAST = "broadcast"


class LedgerState(StrEnum):
    """Where one command stands in an adapter's ledger (schemas/json/ledger.v1.json)."""

    INTENT = "intent"
    DONE = "done"
    UNKNOWN = "unknown"
    FAILED = "failed"


def utc_now_iso(now: datetime | None = None) -> str:
    """RFC 3339 UTC timestamp with milliseconds."""
    moment = now or datetime.now(UTC)
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """(uri, version, channel, target, action): the identity of one effect at one target."""

    uri: str
    version: int
    channel: Channel
    target: str
    action: Action

    def command_id(self) -> str:
        """SHA-256 over an unambiguous encoding of the key (URIs contain ':')."""
        material = orjson.dumps([self.uri, self.version, self.channel.value, self.target, self.action.value])
        return hashlib.sha256(material).hexdigest()

    def __str__(self) -> str:
        return f"{self.uri}:{self.version}:{self.channel.value}:{self.target}:{self.action.value}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "version": self.version,
            "channel": self.channel.value,
            "target": self.target,
            "action": self.action.value,
        }


@dataclass(frozen=True, slots=True)
class Command:
    """One effect to produce at one target (see schemas/json/command.v1.json)."""

    key: IdempotencyKey
    priority: Priority
    issued_at: str
    payload: dict[str, Any]
    published_at: str | None = None
    event_id: str | None = None
    test: bool = False
    actor: str | None = None  # who caused it (ce_actor of the event, schemas/audit.py)

    @property
    def target(self) -> str:
        return self.key.target

    @property
    def channel(self) -> Channel:
        return self.key.channel

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "command_id": self.key.command_id(),
            "idempotency_key": self.key.to_dict(),
            "action": self.key.action.value,
            "channel": self.key.channel.value,
            "target": self.key.target,
            "uri": self.key.uri,
            "version": self.key.version,
            "priority": self.priority.value,
            "issued_at": self.issued_at,
            "published_at": self.published_at,
            "event_id": self.event_id,
            "test": self.test,
            "payload": self.payload,
            **({"actor": self.actor} if self.actor else {}),
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Command:
        """Inverse of to_dict (the caller validates against the schema first).

        A command whose payload is stored once for many (``payload_ref``) is read after the
        reference is resolved into ``payload``. Raises InvalidContent (→ dead letter) when it has
        both or neither, when its version is past ``MAX_VERSION``, or a time
        it carries (issued_at, published_at, a payload's expires_at) is outside the years
        schemas/times.py accepts: the schema's ``date-time`` allows years 1 to 9999, which the
        adapters' time arithmetic cannot hold.
        """
        ik = raw["idempotency_key"]
        for version in (ik["version"], raw.get("version", 1)):
            # JSON Schema's "integer" takes 1e300; orjson cannot write it back (64 bits), so the
            # receipt of such a command raised after the effect, again on every replay.
            if not (
                isinstance(version, (int, float))
                and not isinstance(version, bool)
                and 1 <= version <= MAX_VERSION
            ):
                raise InvalidContent(f"version {version!r} is not an integer from 1 to {MAX_VERSION}")
        parse_time(raw["issued_at"], "issued_at")
        parse_time(raw.get("published_at"), "published_at")
        if ("payload" in raw) == ("payload_ref" in raw):
            raise InvalidContent(
                "a command carries exactly one of payload and payload_ref"
                if "payload" in raw
                else "a command carries neither payload nor payload_ref"
            )
        if "payload" not in raw:
            # The delivery runtime puts the stored payload in its place first (infra/kafka/payloads.py).
            raise InvalidContent("the command's payload_ref was not resolved")
        payload = raw["payload"]
        if isinstance(payload, dict) and isinstance(payload.get("expires_at"), str):
            parse_time(payload["expires_at"], "payload expires_at")
        return cls(
            key=IdempotencyKey(
                ik["uri"], int(ik["version"]), Channel(ik["channel"]), ik["target"], Action(ik["action"])
            ),
            priority=Priority(raw["priority"]),
            issued_at=raw["issued_at"],
            payload=raw["payload"],
            published_at=raw.get("published_at"),
            event_id=raw.get("event_id"),
            test=bool(raw.get("test", False)),
            actor=raw.get("actor"),
        )


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of one step (see schemas/json/receipt.v1.json)."""

    uri: str
    stage: Stage
    outcome: Outcome
    at: str
    version: int | None = None
    channel: str | None = None
    target: str | None = None
    command_id: str | None = None
    reason: str | None = None
    external_id: str | None = None
    event_id: str | None = None
    counts: dict[str, int] = field(default_factory=dict)
    actor: str | None = None  # who caused the step (not part of receipt_id: the step is the same)

    @property
    def receipt_id(self) -> str:
        # Deterministic so that a replayed step yields the same id and readers can dedupe.
        parts = [
            self.stage,
            self.uri,
            str(self.version or 0),
            self.channel or "",
            self.target or "",
            self.outcome,
        ]
        if self.event_id:
            parts.append(self.event_id)
        return hashlib.sha256(orjson.dumps(parts)).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": 1,
            "receipt_id": self.receipt_id,
            "uri": self.uri,
            "version": self.version,
            "stage": self.stage,
            "outcome": self.outcome,
            "at": self.at,
        }
        for name in ("channel", "target", "command_id", "external_id", "event_id", "actor"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.reason is not None:
            out["reason"] = bounded(self.reason, MAX_RECEIPT_REASON_CHARS)
        if self.counts:
            out["counts"] = dict(self.counts)
        return out


@dataclass(frozen=True, slots=True)
class Target:
    """One entry of the targets registry (see schemas/json/target.v1.json)."""

    id: str
    channel: Channel
    name: str
    province_code: int | None = None
    ward_code: int | None = None
    provinces: tuple[int, ...] = ()
    subjects: tuple[str, ...] = ()
    test: bool = False
    active: bool = True
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "id": self.id,
            "channel": self.channel.value,
            "name": self.name,
            "province_code": self.province_code,
            "ward_code": self.ward_code,
            "provinces": list(self.provinces),
            "subjects": list(self.subjects),
            "test": self.test,
            "active": self.active,
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Target:
        return cls(
            id=identifier(
                raw["id"]
            ),  # NFC, as every door reads an id: a hand-written NFD entry names the same target
            channel=Channel(raw["channel"]),
            name=raw["name"],
            province_code=raw.get("province_code"),
            ward_code=raw.get("ward_code"),
            provinces=tuple(raw.get("provinces") or ()),
            subjects=tuple(raw.get("subjects") or ()),
            test=bool(raw.get("test", False)),
            active=bool(raw.get("active", True)),
            config=dict(raw.get("config") or {}),
        )
