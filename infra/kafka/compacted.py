"""A partitioned in-memory view of a compacted topic, for the partitions a worker owns.

The stream worker keeps its article state this way (and the adapters their ledgers): the worker
that owns input partition p owns partition p of the compacted topic, reads it from the beginning
to its end when p is assigned, forgets it when p is revoked, and writes every change as a record
to partition p (``record``) that the caller produces before committing the input offsets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Hashable, Iterator
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition

from infra.kafka import clients
from infra.kafka.outbox import OutRecord
from schemas.codec import decode, encode
from schemas.errors import InvalidContent
from schemas.settings import KafkaConnection

log = logging.getLogger(__name__)


class PartitionNotHeld(LookupError):
    """The partition is not restored here (not assigned, revoked, or still loading)."""


class PartitionOwner(Protocol):
    def revoked(self, revoked: set[TopicPartition]) -> None: ...

    async def assigned(self, assigned: set[TopicPartition]) -> None: ...


class Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands a consumer's rebalance callbacks to the loop that owns the partitions."""

    def __init__(self, owner: PartitionOwner) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.owner.revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.owner.assigned(assigned)


class CompactedView:
    """key → latest JSON value, per owned partition; ``None`` values (tombstones) delete.

    ``held`` decides what is kept in memory of a value (all of it here; a subclass may keep less
    of values it knows, e.g. the ledger of finished commands): used on restore and on record.
    ``memory_key``/``topic_key`` may hold a key in a smaller form (the ledger holds 64-hex command
    ids as their 32 bytes); ``topic_key(memory_key(k)) == k`` for every key.
    """

    def held(self, value: Any) -> Any:
        return value

    def memory_key(self, key: str) -> Hashable:
        return key

    def topic_key(self, held_key: Hashable) -> str:
        return str(held_key)

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._parts: dict[int, dict[Hashable, Any]] = {}
        # Cleared while ``load`` runs: aiokafka fetches newly assigned partitions before the
        # rebalance listener that loads them returns, so consumers wait on this before deciding.
        self.restored = asyncio.Event()
        self.restored.set()

    def _part(self, partition: int) -> dict[Hashable, Any]:
        part = self._parts.get(partition)
        if part is None:
            raise PartitionNotHeld(f"{self.topic}[{partition}] is not held by this worker")
        return part

    def holds(self, partition: int) -> bool:
        return partition in self._parts

    def get(self, partition: int, key: str) -> Any | None:
        """The value of ``key``; PartitionNotHeld if the partition is not restored here (never
        guess "absent" for a partition another worker may own)."""
        return self._part(partition).get(self.memory_key(key))

    def owned(self) -> set[int]:
        return set(self._parts)

    def items(self, partition: int) -> Iterator[tuple[str, Any]]:
        yield from [(self.topic_key(k), v) for k, v in self._parts.get(partition, {}).items()]

    def held_keys(self, partition: int) -> list[Hashable]:
        """The keys of a partition as memory holds them (no copies: a walk over a large partition
        costs one reference per key); ``topic_key`` turns one back into its topic form."""
        return list(self._parts.get(partition, {}))

    def get_held(self, partition: int, held_key: Hashable) -> Any | None:
        """``get`` by a key from ``held_keys``."""
        return self._part(partition).get(held_key)

    def size(self) -> int:
        return sum(len(v) for v in self._parts.values())

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self._parts.pop(p, None)

    def apply(self, partition: int, key: str, value: Any | None) -> None:
        part = self._part(partition)
        if value is None:
            part.pop(self.memory_key(key), None)
        else:
            part[self.memory_key(key)] = self.held(value)

    def record(self, partition: int, key: str, value: Any | None) -> OutRecord:
        """Apply the change here and return the record that makes it durable."""
        self.apply(partition, key, value)
        return OutRecord(
            self.topic, key.encode(), None if value is None else encode(value), partition=partition
        )

    async def load(self, conn: KafkaConnection, partitions: set[int], client_id: str) -> None:
        """Read the given partitions (those not held yet) from the beginning to their end.

        Callers must not read or write a partition until its load returned (``get`` raises
        PartitionNotHeld meanwhile): aiokafka starts fetching a newly assigned partition before
        the rebalance listener that calls this has finished.
        """
        todo = sorted(p for p in partitions if p not in self._parts)
        if not todo:
            return
        self.restored.clear()
        try:
            await self._load(conn, todo, client_id)
        finally:
            self.restored.set()

    async def _load(self, conn: KafkaConnection, todo: list[int], client_id: str) -> None:
        consumer = clients.aio_consumer(
            conn, group_id=None, enable_auto_commit=False, client_id=f"{client_id}-restore"
        )
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in todo]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            loaded: dict[int, dict[Hashable, Any]] = {p: {} for p in todo}
            remaining = {tp for tp in tps if end[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=20000)
                for tp, recs in batch.items():
                    part = loaded[tp.partition]
                    for rec in recs:
                        if rec.key is None:
                            continue
                        key = self.memory_key(rec.key.decode("utf-8", "replace"))
                        if rec.value is None:
                            part.pop(key, None)
                            continue
                        try:
                            part[key] = self.held(decode(rec.value))
                        except InvalidContent:
                            log.error("unreadable entry at %s[%d]@%d", self.topic, tp.partition, rec.offset)
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            self._parts.update(loaded)
            log.info("%s: restored partitions %s (%d keys held)", self.topic, todo, self.size())
        finally:
            await consumer.stop()
