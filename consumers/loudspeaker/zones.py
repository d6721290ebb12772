"""Loudspeaker zone state: the bulletin set of a zone as ledger ``live`` entries (``ZoneEntry``),
and where a zone is rebuilt from after a start or a rebalance (``ZoneSource``,
``LedgerZoneSource``). See consumers/loudspeaker/adapter.py for how it survives restarts."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import TopicPartition

from consumers.delivery.ledger import LIVE_PREFIX
from consumers.loudspeaker.platform import aware_time, utc_iso
from consumers.loudspeaker.scheduler import Bulletin
from infra.kafka import clients
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.models import Priority
from schemas.settings import KafkaConnection

# Records keep the logger name they had before this module was split out of the adapter.
log = logging.getLogger("consumers.loudspeaker.adapter")

UTC = UTC


def bulletin_json(b: Bulletin) -> dict[str, Any]:
    return {
        "bulletin_id": b.bulletin_id,
        "uri": b.uri,
        "version": b.version,
        "priority": b.priority.value,
        "title": b.title,
        "duration_s": b.duration_s,
        "published_at": utc_iso(b.published_at),
        "expires_at": utc_iso(b.expires_at),
        "audio_url": b.audio_url,
        "audio_path": b.audio_path,
        "correction": b.correction,
        "corrects": b.corrects,
        "reason": b.reason,
    }


def bulletin_from_json(raw: Mapping[str, Any]) -> Bulletin:
    """Inverse of ``bulletin_json``; raises KeyError/ValueError on a malformed entry."""
    published, expires = aware_time(raw["published_at"]), aware_time(raw["expires_at"])
    if published is None or expires is None:
        raise ValueError("bulletin times must be aware ISO 8601")
    return Bulletin(
        str(raw["bulletin_id"]),
        str(raw["uri"]),
        int(raw["version"]),
        Priority(raw["priority"]),
        str(raw.get("title") or ""),
        float(raw["duration_s"]),
        published,
        expires,
        raw.get("audio_url"),
        raw.get("audio_path"),
        bool(raw.get("correction")),
        raw.get("corrects"),
        raw.get("reason"),
    )


@dataclass(frozen=True, slots=True)
class ZoneEntry:
    """One article in one zone: what the scheduler needs of it, kept in the ledger's live detail."""

    bulletin: Bulletin
    earlier: tuple[str, ...] = ()  # bulletin ids of its earlier versions (they may have played)
    retracted_version: int | None = None
    retracted_at: datetime | None = None
    correction: Bulletin | None = None

    @property
    def uri(self) -> str:
        return self.bulletin.uri

    def rank(self) -> tuple[int, int]:
        version = max(self.bulletin.version, self.retracted_version or 0)
        return version, 1 if self.retracted_at is not None else 0

    def expired(self, now: datetime) -> bool:
        ends = [self.bulletin.expires_at] + ([self.correction.expires_at] if self.correction else [])
        return max(e.astimezone(UTC) for e in ends) <= now.astimezone(UTC)

    def to_detail(self) -> dict[str, Any]:
        return {
            "bulletin": bulletin_json(self.bulletin),
            "earlier": list(self.earlier),
            "retracted": None
            if self.retracted_at is None
            else {"version": self.retracted_version, "at": utc_iso(self.retracted_at)},
            "correction": None if self.correction is None else bulletin_json(self.correction),
        }

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any] | None) -> ZoneEntry | None:
        """None for a detail that is not a zone entry (a skipped effect) or is unreadable."""
        if not isinstance(detail, Mapping) or not isinstance(detail.get("bulletin"), Mapping):
            return None
        try:
            retracted = detail.get("retracted") or None
            correction = detail.get("correction")
            return cls(
                bulletin_from_json(detail["bulletin"]),
                tuple(str(e) for e in detail.get("earlier") or ()),
                int(retracted["version"]) if retracted else None,
                aware_time(retracted["at"]) if retracted else None,
                bulletin_from_json(correction) if isinstance(correction, Mapping) else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            log.error("unreadable loudspeaker zone entry (%s): %s", type(exc).__name__, exc)
            return None


def merge(entries: dict[str, ZoneEntry], entry: ZoneEntry) -> None:
    """Keep the newer of two entries for one uri: higher version, then the retraction."""
    known = entries.get(entry.uri)
    if known is None or entry.rank() > known.rank():
        entries[entry.uri] = entry


def state_digest(entries: Mapping[str, ZoneEntry]) -> str:
    """A short digest of a zone's bulletin set, carried in every schedule body so that any change
    to the set (by any worker) changes the platform's etag."""
    parts = sorted(
        (
            e.uri,
            e.bulletin.version,
            e.bulletin.bulletin_id,
            e.retracted_version or 0,
            e.correction.bulletin_id if e.correction else "",
        )
        for e in entries.values()
    )
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class ZoneSource(Protocol):
    """Where a zone's bulletin set is rebuilt from: the ``live`` ledger values of the zone."""

    async def entries(self, zone_id: str, *, fresh: bool = False) -> list[dict[str, Any]]: ...


# How long a zone keeps an expired bulletin's entry (the zone source, and the ledger's live entry).
KEEP_EXPIRED_S = 86400.0


class LedgerZoneSource:
    """Reads the loudspeaker ledger topic (compacted) for zone entries.

    The first call reads every partition once and indexes live entries by zone, dropping those
    expired more than ``keep_expired_s`` ago; ``fresh=True`` re-reads the partition the zone's
    entries live in (all partitions when unknown). ``partitions`` is the ledger's partition count
    from configuration (the count the topic was created with, as for the runtime).
    """

    def __init__(
        self,
        conn: KafkaConnection,
        topic: str,
        partitions: int,
        client_id: str,
        *,
        keep_expired_s: float = KEEP_EXPIRED_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.conn, self.topic, self.partitions, self.client_id = conn, topic, partitions, client_id
        self.keep_expired_s, self.clock = keep_expired_s, clock
        self._by_zone: dict[str, dict[str, dict[str, Any]]] = {}
        self._partition_of: dict[str, int] = {}
        self._loaded = False
        self._lock = asyncio.Lock()

    async def entries(self, zone_id: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        async with self._lock:
            if not self._loaded:
                await self._read(None)
                self._loaded = True
            elif fresh:
                p = self._partition_of.get(zone_id)
                await self._read(None if p is None else {p})
        return list(self._by_zone.get(zone_id, {}).values())

    async def _read(self, partitions: set[int] | None) -> None:
        consumer = clients.aio_consumer(
            self.conn,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"{self.client_id}-loudspeaker-zones",
        )
        await consumer.start()
        try:
            known = set(range(self.partitions))
            chosen = sorted(known if partitions is None else known & partitions)
            tps = [TopicPartition(self.topic, p) for p in chosen]
            if not tps:
                return
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            # Each partition is resolved on its own, then merged: after ``lantoa topics grow`` an entry
            # was copied to its new partition and then tombstoned in its old one, and the two
            # partitions' records arrive interleaved, so the old tombstone must not erase the copy.
            per_partition: dict[int, dict[str, dict[str, dict[str, Any]]]] = {p: {} for p in chosen}
            remaining = {tp for tp in tps if end[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=20000)
                for tp, recs in batch.items():
                    for rec in recs:
                        key = rec.key.decode("utf-8", "replace") if rec.key else ""
                        if key.startswith(LIVE_PREFIX):
                            self._apply(per_partition[tp.partition], tp.partition, key, rec.value)
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            found, where = self._merge(per_partition)
            stale = [z for z, p in self._partition_of.items() if p in set(chosen)]
            for zone in stale:
                self._by_zone.pop(zone, None)
                self._partition_of.pop(zone, None)
            horizon = datetime.fromtimestamp(self.clock() - self.keep_expired_s, UTC)
            for zone, by_uri in found.items():
                kept = {
                    u: v
                    for u, v in by_uri.items()
                    if (e := ZoneEntry.from_detail(v.get("detail"))) is not None and not e.expired(horizon)
                }
                if kept:
                    self._by_zone[zone] = kept
                    self._partition_of[zone] = where[zone]
            log.info(
                "loudspeaker zones: %d zones rebuilt from %s partitions %s", len(found), self.topic, chosen
            )
        finally:
            await consumer.stop()

    @staticmethod
    def _merge(
        per_partition: Mapping[int, Mapping[str, Mapping[str, dict[str, Any]]]],
    ) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, int]]:
        """Zone → uri → entry over partitions each resolved on its own, and where each zone lives."""
        found: dict[str, dict[str, dict[str, Any]]] = {}
        where: dict[str, int] = {}
        for p in sorted(per_partition):
            for zone, by_uri in per_partition[p].items():
                if by_uri:
                    found.setdefault(zone, {}).update(by_uri)
                    where[zone] = p
        return found, where

    @staticmethod
    def _apply(
        found: dict[str, dict[str, dict[str, Any]]], partition: int, key: str, raw: bytes | None
    ) -> None:
        """One live record of one partition into that partition's zone → uri → value map."""
        _, _, rest = key.partition(LIVE_PREFIX)
        uri, _, zone = rest.rpartition("|")
        if raw is None:  # tombstone
            found.get(zone, {}).pop(uri, None)
            return
        try:
            value = decode(raw)
        except InvalidContent:
            log.error("unreadable loudspeaker ledger entry %s (partition %d)", key, partition)
            return
        if isinstance(value, dict):
            found.setdefault(zone, {})[uri] = value
