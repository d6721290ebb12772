"""Shared payloads: a payload many commands carry is stored once and the commands reference it.

A national article reaches 3,321 zones with one loudspeaker payload of up to 12 KiB; inline, the
fan-out wrote (and the stream worker held) that payload 3,321 times. The stream worker now writes
each payload used by several commands once, to ``distribution.payloads`` (time retention, key: its
SHA-256), waits for Kafka's acknowledgement, and gives every command a ``payload_ref``:

    {"partition": 2, "offset": 40512, "sha256": "<64 hex>", "bytes": 11873}

The adapters resolve a reference by reading that one record (assign, seek; no consumer group),
check its length and hash, and keep what they read in a cache bounded by bytes, so the 3,321
commands of one national article cost one fetch. Partition and offset make the lookup direct
(no index to build), and the hash makes a forged or stale reference harmless: a record that is
gone (retention), past the end of its partition, or does not hash to the reference is refused
with the reason (the runtime dead-letters the command; nothing is delivered from a payload that
was not proven to be the one the worker wrote).

Commands with an inline ``payload`` are read as before (what a rolling upgrade still has in
flight, small payloads, and single-target ones such as the archive's).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka import clients
from infra.kafka.outbox import MAX_REQUEST_BYTES, Outbox, OutRecord
from schemas.errors import InvalidContent
from schemas.settings import KafkaConnection

log = logging.getLogger(__name__)

# How long a reference past the end of its partition is waited for before it is refused: the
# worker sends a command only after its payload is acknowledged (acks=all), so such a reference
# is forged or points at another cluster; a short wait covers a leader change meanwhile.
MISSING_WAIT_S = 2.0
# How often the topic's partitions may be asked for when a reference names an unknown one.
METADATA_REFRESH_S = 10.0
# How long one fetch may take before the read is abandoned (a broker away: the caller's error).
FETCH_TIMEOUT_S = 30.0


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """Where one shared payload lives, and what it must hash to."""

    partition: int
    offset: int
    sha256: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"partition": self.partition, "offset": self.offset, "sha256": self.sha256, "bytes": self.size}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> PayloadRef:
        """Raises InvalidContent unless ``raw`` is a reference (schemas/json/command.v1.json has the
        same rules; this is the guard for readers that did not validate)."""
        try:
            partition, offset, sha, size = raw["partition"], raw["offset"], raw["sha256"], raw["bytes"]
        except (KeyError, TypeError) as exc:
            raise InvalidContent(f"payload_ref is not a reference: {exc!r}") from exc
        ints = (partition, offset, size)
        if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 2**63 for v in ints):
            raise InvalidContent("payload_ref partition, offset and bytes must be integers from 0")
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            raise InvalidContent("payload_ref sha256 must be 64 lowercase hex digits")
        return cls(partition, offset, sha, size)


class ByteLRU:
    """Decoded payloads by SHA-256, least recently used first out once their encoded bytes pass
    ``limit`` (the newest entry always stays, however big)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._items: OrderedDict[str, tuple[int, Any]] = OrderedDict()
        self.bytes = 0

    def __contains__(self, sha: object) -> bool:
        return sha in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, sha: str) -> tuple[bool, Any]:
        hit = self._items.get(sha)
        if hit is None:
            return False, None
        self._items.move_to_end(sha)
        return True, hit[1]

    def put(self, sha: str, size: int, obj: Any) -> None:
        if sha in self._items:
            self._items.move_to_end(sha)
            return
        self._items[sha] = (size, obj)
        self.bytes += size
        while self.bytes > self.limit and len(self._items) > 1:
            _, (old, _) = self._items.popitem(last=False)
            self.bytes -= old


class PayloadWriter:
    """Writes shared payloads through the worker's outbox and returns their references."""

    def __init__(self, outbox: Outbox, topic: str) -> None:
        self.outbox, self.topic = outbox, topic

    async def put(self, blobs: Sequence[bytes]) -> list[PayloadRef]:
        """Store every blob (one acknowledged send for all of them); references in the same order."""
        shas = [digest(b) for b in blobs]
        records = [OutRecord(self.topic, sha.encode(), blob) for sha, blob in zip(shas, blobs, strict=True)]
        metas = await self.outbox.send_all(records)
        return [
            PayloadRef(m.partition, m.offset, sha, len(blob))
            for m, sha, blob in zip(metas, shas, blobs, strict=True)
        ]


class PayloadReader:
    """Resolves references for one process: a group-less consumer that seeks to each record it
    needs, and a cache of decoded payloads bounded by their encoded bytes (LRU).

    The decoded objects are shared by every command that references the same payload: readers
    treat a command's payload as read-only (no adapter writes into it)."""

    def __init__(
        self,
        conn: KafkaConnection,
        topic: str,
        client_id: str,
        *,
        cache_bytes: int = 64 * 1024 * 1024,
        missing_wait_s: float = MISSING_WAIT_S,
        loads: Callable[[bytes], Any] = orjson.loads,
    ) -> None:
        self.conn, self.topic, self.client_id = conn, topic, client_id
        self.cache_bytes, self.missing_wait_s, self.loads = cache_bytes, missing_wait_s, loads
        self.cache = ByteLRU(cache_bytes)
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._known: set[int] = set()
        self._known_until = 0.0
        self.fetched = 0  # records read from Kafka (tests, bench)

    def has(self, sha256: str) -> bool:
        return sha256 in self.cache

    async def stop(self) -> None:
        if self._consumer is not None:
            consumer, self._consumer = self._consumer, None
            await consumer.stop()

    async def _started(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = clients.aio_consumer(
                self.conn,
                client_id=f"{self.client_id}-payloads",
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_partition_fetch_bytes=MAX_REQUEST_BYTES + 64 * 1024,
                fetch_max_bytes=2 * MAX_REQUEST_BYTES,
            )
            await consumer.start()
            self._consumer = consumer
        return self._consumer

    async def _partitions(self, consumer: AIOKafkaConsumer, refs: list[PayloadRef]) -> set[int]:
        """The topic's partitions, asked again (through the reader's own connections) when a
        reference names one not known (the topic may have grown), at most every
        METADATA_REFRESH_S (forged references cannot make this a metadata request per command)."""
        if any(r.partition not in self._known for r in refs) and time.monotonic() >= self._known_until:
            cluster = await clients.cluster_of(consumer)
            self._known = set(cluster.partitions_for_topic(self.topic) or ())
            self._known_until = time.monotonic() + METADATA_REFRESH_S
        return self._known

    async def resolve(self, refs: Iterable[PayloadRef]) -> tuple[dict[str, Any], dict[PayloadRef, str]]:
        """The payloads of ``refs`` by SHA-256, and a reason for each reference that cannot be
        resolved (gone, past the end, not matching its hash, not JSON). Kafka errors propagate."""
        found: dict[str, Any] = {}
        need: dict[PayloadRef, None] = {}
        for ref in refs:
            cached, obj = self.cache.get(ref.sha256)
            if cached:
                found[ref.sha256] = obj
            elif ref.sha256 not in found:
                need.setdefault(ref, None)
        if not need:
            return found, {}
        async with self._lock:
            failed = await self._fetch(list(need), found)
        return found, failed

    async def _fetch(self, refs: list[PayloadRef], found: dict[str, Any]) -> dict[PayloadRef, str]:
        consumer = await self._started()
        failed: dict[PayloadRef, str] = {}
        known = await self._partitions(consumer, refs)
        for ref in refs:
            if ref.partition not in known:
                failed[ref] = (
                    f"payload_ref names partition {ref.partition} of {self.topic}, which has {len(known)}"
                )
        refs = [r for r in refs if r not in failed]
        if not refs:
            return failed
        tps = {TopicPartition(self.topic, r.partition) for r in refs}
        consumer.assign(sorted(tps))
        first = await consumer.beginning_offsets(list(tps))
        deadline = time.monotonic() + self.missing_wait_s
        while True:
            last = await consumer.end_offsets(list(tps))
            ahead = [r for r in refs if r.offset >= last[TopicPartition(self.topic, r.partition)]]
            if not ahead or time.monotonic() >= deadline:
                break
            await asyncio.sleep(0.2)
        for ref in ahead:
            tp = TopicPartition(self.topic, ref.partition)
            failed[ref] = (
                f"shared payload {self.topic}[{ref.partition}]@{ref.offset} not found "
                f"(the partition ends at offset {last[tp]})"
            )
        for ref in refs:
            tp = TopicPartition(self.topic, ref.partition)
            if ref not in failed and ref.offset < first[tp]:
                failed[ref] = (
                    f"shared payload {self.topic}[{ref.partition}]@{ref.offset} is gone: the partition now "
                    f"starts at offset {first[tp]} (older than the topic's retention)"
                )
        wanted: dict[TopicPartition, dict[int, list[PayloadRef]]] = {}
        for ref in refs:
            if ref not in failed:
                at = wanted.setdefault(TopicPartition(self.topic, ref.partition), {})
                at.setdefault(ref.offset, []).append(ref)
        for tp, by_offset in wanted.items():
            for offset in sorted(by_offset):
                if offset not in by_offset:
                    continue  # read on the way to an earlier one
                consumer.seek(tp, offset)
                deadline = time.monotonic() + FETCH_TIMEOUT_S
                while offset in by_offset:
                    if time.monotonic() > deadline:
                        raise TimeoutError(
                            f"no record from {tp.topic}[{tp.partition}]@{offset} within {FETCH_TIMEOUT_S:.0f} s"
                        )
                    span = max(by_offset) - offset + 1  # no further than the last one wanted here
                    batch = await consumer.getmany(tp, timeout_ms=1000, max_records=min(16, span))
                    records = batch.get(tp, [])
                    for rec in records:
                        for hit in by_offset.pop(rec.offset, []):
                            self._take(hit, rec.value or b"", found, failed)
                        self.fetched += 1
                    if records and records[-1].offset >= offset and offset in by_offset:
                        # Moved past it without seeing it (removed by retention meanwhile).
                        for hit in by_offset.pop(offset):
                            failed[hit] = (
                                f"shared payload {tp.topic}[{tp.partition}]@{offset} is gone (retention)"
                            )
        return failed

    def _take(
        self, ref: PayloadRef, value: bytes, found: dict[str, Any], failed: dict[PayloadRef, str]
    ) -> None:
        where = f"{self.topic}[{ref.partition}]@{ref.offset}"
        if len(value) != ref.size or digest(value) != ref.sha256:
            failed[ref] = f"shared payload {where} does not match its reference (bytes or sha256 differ)"
            return
        try:
            obj = self.loads(value)
        except (ValueError, TypeError) as exc:
            failed[ref] = f"shared payload {where} is not JSON: {exc}"
            return
        self.cache.put(ref.sha256, ref.size, obj)
        found[ref.sha256] = obj
