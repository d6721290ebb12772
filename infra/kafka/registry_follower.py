"""Reads the compacted targets topic whole at start, then follows it for changes."""

from __future__ import annotations

import asyncio
import logging

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka import clients
from schemas import contracts
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.models import Target
from schemas.registry import Registry
from schemas.settings import KafkaConnection
from schemas.text import identifier

log = logging.getLogger(__name__)


class RegistryFollower:
    """Keeps a Registry in step with the targets topic (no consumer group: every worker reads all)."""

    def __init__(self, conn: KafkaConnection, topic: str, client_id: str) -> None:
        self.registry = Registry()
        self._conn, self._topic, self._client_id = conn, topic, client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.rejected = 0

    async def start(self) -> None:
        consumer = clients.aio_consumer(
            self._conn, client_id=f"{self._client_id}-registry", group_id=None, enable_auto_commit=False
        )
        await consumer.start()
        self._consumer = consumer
        parts = await clients.partitions_of(consumer, self._topic)
        if not parts:
            raise RuntimeError(f"targets topic {self._topic!r} does not exist: run `lantoa topics apply`")
        tps = [TopicPartition(self._topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        while not await self._caught_up(consumer, tps, end):
            batch = await consumer.getmany(timeout_ms=500, max_records=10000)
            for records in batch.values():
                for rec in records:
                    self._apply(rec.key, rec.value)
        log.info("targets registry loaded: %d targets from %s", len(self.registry), self._topic)
        self._task = asyncio.create_task(self._follow())

    @staticmethod
    async def _caught_up(
        consumer: AIOKafkaConsumer, tps: list[TopicPartition], end: dict[TopicPartition, int]
    ) -> bool:
        for tp in tps:
            if await consumer.position(tp) < end[tp]:
                return False
        return True

    def _apply(self, key: bytes | None, value: bytes | None) -> None:
        if key is None:
            self.rejected += 1
            return
        if value is None:
            self.registry.remove(identifier(key.decode("utf-8", "replace")))
            return
        try:
            raw = decode(value)
            contracts.check("target", raw)
        except InvalidContent as exc:
            # `lantoa targets load` validates before producing; a bad entry here was written by
            # hand. Routing without it is safer than stopping every article.
            self.rejected += 1
            log.error("ignoring invalid target %r: %s", key, exc.reason)
            return
        self.registry.upsert(Target.from_dict(raw))

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=1000)
            for records in batch.values():
                for rec in records:
                    self._apply(rec.key, rec.value)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
