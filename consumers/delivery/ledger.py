"""The idempotency ledger: a compacted topic per channel, held in memory for owned partitions.

Two kinds of entries (schemas/json/ledger.v1.json):
- command entries, key = command id: ``intent`` is written (and acknowledged) before the effect,
  then ``done``, ``unknown`` or ``failed``. The runtime writes the intents of a whole batch in one
  acknowledged send; a command that then produces no effect after all (its target got paused, a
  newer version went live first) has its fresh intent removed again (a tombstone). A replayed command whose entry is ``done`` is
  acknowledged without a second effect; ``intent``/``unknown`` means "reconcile first".
- live entries, key = ``live|<uri>|<target>``: the effect now out at the target for the article
  (its external id and version, or that it was retracted). Updates edit it, retractions remove it,
  and older versions arriving late are recognised as superseded.

Each entry goes to the same partition number as the command it is about, so the worker owning
command partition p owns ledger partition p and rebuilds it on assignment (infra/kafka/compacted.py;
a national day is ~150,000 entries in the loudspeaker's, so finished commands are held slim).
A partition not restored here raises PartitionNotHeld: never "no entry", which would send again.

Bounded: a finished entry (a command ``done`` or ``failed``, a live entry that is ``retracted``) is
removed (a tombstone, and dropped from memory) once older than the channel's horizon
(``horizon_s``): the longest time any command or retry record of the channel stays readable,
``retention.ms + segment.ms`` of its command and retry topics (7 days + 1 hour). A command can only
be delivered again while its record is readable, and its entry is at least as young as the record,
so no replay can need a removed entry. Live entries still out at a target (what an update edits, a
retraction removes) are never removed; an adapter may say when one stops being out there
(``live_until``: a loudspeaker bulletin past its expiry plays nowhere and a late older version of it
would be expired too), and the entry is removed then. ``expired`` finds them a bounded slice at a
time (ages held rounded up to the minute: never early); the runtime's ``sweep`` tombstones them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Any, NamedTuple

from infra.kafka.compacted import CompactedView
from infra.kafka.outbox import OutRecord
from schemas.codec import encode
from schemas.models import Command
from schemas.topics import RETRY_TIERS, Channel, Topic, descriptors

LIVE_PREFIX = "live|"
# What a topic without segment.ms keeps past retention.ms at most (Kafka's default log.roll.ms).
DEFAULT_SEGMENT_MS = 7 * 24 * 3600 * 1000
FINISHED_STATES = ("done", "failed")


def horizon_s(channel: Channel) -> float:
    """How long a finished ledger entry is kept: the longest a command or retry record of the
    channel stays readable (its topic's retention.ms plus one segment, which Kafka deletes only
    once its newest record is past retention)."""
    longest = 0
    for topic in (Topic.commands(channel), *(Topic.retry(channel, tier) for tier in RETRY_TIERS)):
        desc = descriptors()[topic]
        if desc.retention_ms is None:
            raise ValueError(f"{topic.value} keeps records forever: no horizon can bound the ledger")
        longest = max(
            longest, desc.retention_ms + int(desc.extra_config.get("segment.ms", DEFAULT_SEGMENT_MS))
        )
    return longest / 1000.0


def epoch_s(at: Any) -> int:
    """An entry's ``at`` (ISO 8601) as whole seconds; 0 (oldest: expires first) when unreadable."""
    if not isinstance(at, str):
        return 0
    try:
        return int(datetime.fromisoformat(at).timestamp())
    except ValueError:
        return 0


def _minute_up(seconds: int) -> int:
    """Rounded up to the minute: an entry is never removed before its horizon, and the entries of
    one minute (hundreds in a national day) share one int object."""
    return -(-seconds // 60) * 60


def _digest(value: Any) -> bytes:
    """What equal values share (16 bytes of BLAKE2b over the canonical encoding)."""
    return hashlib.blake2b(encode(value), digest_size=16).digest()


class Shape(NamedTuple):
    """What finished command entries mostly have in common (held once for all that share it)."""

    state: str
    outcome: str | None
    attempts: int
    reason: str | None


class Finished(NamedTuple):
    """What memory keeps of a finished command entry: what a replay's receipt says, and its age."""

    shape: Shape
    external_id: str | None
    at_s: int

    @property
    def state(self) -> str:
        return self.shape.state


class Live(NamedTuple):
    """What memory keeps of a live entry (the topic keeps the whole entry)."""

    version: int
    external_id: str | None
    retracted: bool
    detail: dict[str, Any]
    at_s: int
    until_s: float | None  # when it stops being out at the target (the adapter's live_until), if ever


def live_key(uri: str, target: str) -> str:
    return f"{LIVE_PREFIX}{uri}|{target}"


class Ledger(CompactedView):
    """In-memory view of the ledger partitions this worker owns.

    Finished command entries and live entries are held as small tuples (``Finished``, ``Live``):
    a national day is ~150,000 of them. Nested objects of a live detail that are equal across
    targets (a national bulletin in 3,321 zones) are held once; the runtime and the adapters only
    read them.
    """

    # A sweep looks at no more than this many entries (and removes no more than that).
    SWEEP_SCAN = 20000

    def __init__(
        self,
        topic: str,
        horizon: float = float("inf"),
        live_until: Callable[[dict[str, Any]], float | None] | None = None,
    ) -> None:
        super().__init__(topic)
        self.horizon = horizon
        self.live_until = live_until
        self._shared: dict[bytes, Any] = {}
        self._until: dict[bytes, float | None] = {}  # live_until of each shared detail
        self._minutes: dict[int, int] = {}  # one int object per minute of ``at``
        self._shapes: dict[Shape, Shape] = {}
        self._finished: dict[Finished, Finished] = {}
        self._lives: dict[tuple[Any, ...], Live] = {}
        # External ids seen lately: a command's done entry and its live entry, written (and
        # restored) one after the other, name the same id and hold one string.
        self._ids: dict[str, str] = {}
        self._names: dict[str, str] = {}  # uris and targets of live keys, each held once
        # Where the sweep is: the partition it walks and the keys still to look at there.
        self._sweep_order: list[int] = []
        self._sweep_keys: list[Hashable] = []  # memory keys (held_keys): no string made per entry
        self._sweep_partition: int | None = None

    def held(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("kind")
        if kind == "command" and value.get("state") in FINISHED_STATES:
            shape = Shape(
                str(value["state"]),
                value.get("outcome"),
                int(value.get("attempts") or 0),
                value.get("reason"),
            )
            finished = Finished(
                self._bounded(self._shapes, shape),
                self._id(value.get("external_id")),
                self._at(value.get("at")),
            )
            # Equal entries are one tuple: a national bulletin finishes alike in the zones of a minute.
            held: Finished = self._bounded(self._finished, finished)
            return held
        if kind == "live":
            detail = value.get("detail")
            until: float | None = None
            digest = b""
            if isinstance(detail, dict):
                # Whole details equal across targets are held once too (a bulletin placed alike).
                slim = {k: self._one(v) if isinstance(v, dict) else v for k, v in detail.items()}
                digest = _digest(slim)
                detail = self._one(slim, digest)
                if self.live_until is not None:
                    if digest not in self._until:
                        self._until[digest] = self.live_until(detail)
                    until = self._until[digest]
            else:
                detail = {}
            live = Live(
                int(value.get("version") or 0),
                self._id(value.get("external_id")),
                bool(value.get("retracted")),
                detail,
                self._at(value.get("at")),
                until,
            )
            # Held once per equal entry too; the detail (a dict) is named by its digest.
            same = (live.version, live.external_id, live.retracted, digest, live.at_s, live.until_s)
            shared: Live = self._bounded(self._lives, same, value=live)
            return shared
        return value

    def memory_key(self, key: str) -> Hashable:
        """A command id (64 hex digits) is held as its 32 bytes: half the memory of the string, and
        a week of a national loudspeaker is ~500,000 of them. A live key is held as the pair
        (uri, target), each string shared with every other key naming it: a national bulletin is
        live in 3,321 zones, and a zone carries every bulletin of the week."""
        if len(key) == 64:
            try:
                raw = bytes.fromhex(key)
            except ValueError:
                return key
            if raw.hex() == key:
                return raw
        elif key.startswith(LIVE_PREFIX):
            uri, sep, target = key[len(LIVE_PREFIX) :].rpartition("|")
            if sep and live_key(uri, target) == key:
                return (self._bounded(self._names, uri), self._bounded(self._names, target))
        return key

    def topic_key(self, held_key: Hashable) -> str:
        if isinstance(held_key, bytes):
            return held_key.hex()
        if isinstance(held_key, tuple):
            return live_key(*held_key)
        return str(held_key)

    @staticmethod
    def _bounded(table: dict[Any, Any], key: Any, limit: int = 20000, *, value: Any = None) -> Any:
        """What ``table`` holds for ``key`` (``value``, or ``key`` itself, when it holds nothing
        yet): equal values held once. Cleared when it grows past ``limit``."""
        if len(table) > limit:
            table.clear()
        return table.setdefault(key, key if value is None else value)

    def _id(self, value: Any) -> Any:
        return self._bounded(self._ids, value) if isinstance(value, str) else value

    def _at(self, at: Any) -> int:
        minute = _minute_up(epoch_s(at))
        at_s: int = self._bounded(self._minutes, minute, 100000)
        return at_s

    def _one(self, value: dict[str, Any], digest: bytes | None = None) -> dict[str, Any]:
        if len(self._shared) > 50000:
            self._shared.clear()
            self._until.clear()
        shared: dict[str, Any] = self._shared.setdefault(_digest(value) if digest is None else digest, value)
        return shared

    def command(self, partition: int, command_id: str) -> dict[str, Any] | None:
        value = self.get(partition, command_id)
        if isinstance(value, Finished):
            shape = value.shape
            return {
                "kind": "command",
                "state": shape.state,
                "outcome": shape.outcome,
                "external_id": value.external_id,
                "attempts": shape.attempts,
                "reason": shape.reason,
            }
        return value if isinstance(value, dict) else None

    def live(self, partition: int, uri: str, target: str) -> dict[str, Any] | None:
        value = self.get(partition, live_key(uri, target))
        if isinstance(value, Live):
            return {
                "kind": "live",
                "version": value.version,
                "external_id": value.external_id,
                "retracted": value.retracted,
                "detail": value.detail,
            }
        return value if isinstance(value, dict) else None

    def expired(self, now: float, budget: int | None = None) -> list[tuple[int, str]]:
        """Up to ``budget`` (SWEEP_SCAN) finished entries older than the horizon, as (partition, key).

        Bounded work: it looks at no more than ``budget`` entries per call, walking one owned
        partition after another from where the previous call stopped (a partition it has not
        reached is looked at in a later call; a revoked one is skipped). Pure: the caller removes
        what it returns (``forget``) and makes the tombstones durable.
        """
        budget = self.SWEEP_SCAN if budget is None else budget
        cutoff = now - self.horizon
        found: list[tuple[int, str]] = []
        looked = 0
        refilled = False
        while looked < budget:
            if not self._sweep_keys:
                if not self._sweep_order:
                    if refilled or looked:
                        break  # at most one pass per call: the next call starts the next pass
                    refilled = True
                    self._sweep_order = sorted(self.owned(), reverse=True)
                    if not self._sweep_order:
                        break
                nxt = self._sweep_order.pop()
                if not self.holds(nxt):
                    continue
                self._sweep_partition = nxt
                self._sweep_keys = self.held_keys(nxt)
                self._sweep_keys.reverse()
                continue
            part = self._sweep_partition
            key = self._sweep_keys.pop()
            looked += 1
            if part is None or not self.holds(part):
                self._sweep_keys = []
                continue
            value = self.get_held(part, key)
            if isinstance(value, Finished) and value.at_s <= cutoff:
                found.append((part, self.topic_key(key)))
            elif isinstance(value, Live) and value.retracted and value.at_s <= cutoff:
                found.append((part, self.topic_key(key)))
            elif isinstance(value, Live) and value.until_s is not None and value.until_s <= now:
                found.append((part, self.topic_key(key)))  # no longer out at the target (the adapter says so)
        return found

    def forget(self, partition: int, key: str) -> OutRecord:
        """Remove an entry (a tombstone on the compacted topic): as if it had never been written."""
        return self.record(partition, key, None)

    def command_entry(
        self,
        partition: int,
        cmd: Command,
        state: str,
        at: str,
        *,
        attempts: int,
        outcome: str | None = None,
        external_id: str | None = None,
        reason: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> OutRecord:
        value: dict[str, Any] = {
            "kind": "command",
            "command_id": cmd.key.command_id(),
            "uri": cmd.key.uri,
            "version": cmd.key.version,
            "target": cmd.target,
            "action": cmd.key.action.value,
            "state": state,
            "outcome": outcome,
            "external_id": external_id,
            "attempts": attempts,
            "reason": reason,
            "at": at,
        }
        if detail:
            value["detail"] = detail
        return self.record(partition, cmd.key.command_id(), value)

    def live_entry(
        self,
        partition: int,
        cmd: Command,
        at: str,
        *,
        external_id: str | None,
        retracted: bool,
        detail: dict[str, Any] | None = None,
    ) -> OutRecord:
        value: dict[str, Any] = {
            "kind": "live",
            "uri": cmd.key.uri,
            "version": cmd.key.version,
            "target": cmd.target,
            "external_id": external_id,
            "retracted": retracted,
            "at": at,
            "detail": detail or {},
        }
        return self.record(partition, live_key(cmd.key.uri, cmd.target), value)
