"""The stream worker's consumer loops: input records in batches, offsets committed by us.

Per batch (records in offset order per partition; each record through its topic's handler):

    1. the records the handlers asked for (commands, receipts, dead letters) are acknowledged
    2. the article-state changes they made are acknowledged (streams.article.state, compacted)
    3. the offsets of the records handled are committed

A crash anywhere replays from the last commit against the state written before it; the
commands are keyed by (uri, version, channel, target, action), so the adapters' ledgers make a
replayed command harmless. Big fan-outs are flushed (1-3) every ``flush_bytes`` of output so a
batch of national articles never holds hundreds of megabytes of commands in memory.

Why not Faust's agents (the first version of this worker was a Faust app): in the fault drill
(bench/drill.py: kill -9 of the worker plus one broker restart), faust-streaming 0.15.3 committed
offsets past CMS events it never handed to the agent, and left partitions it owned unfetched.
Its consumer treats offsets it did not see as "gaps" to be committed (faust.transport.consumer
``_add_gap``/``_new_offset``; upstream issues faust-streaming#606, #221, #216), which breaks the
first invariant of the architecture: an offset is committed only after its effect is durable.
Here the commit is ours and names exactly the records whose outputs Kafka acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, RebalanceInProgressError

from infra.kafka import clients
from infra.kafka.compacted import CompactedView, PartitionNotHeld, Rebalance
from infra.kafka.outbox import Outbox, OutRecord
from schemas import metrics
from schemas.settings import Settings
from streams.steps import Step

log = logging.getLogger(__name__)

Handler = Callable[[Any], Step]


class BatchLoop:
    """One consumer group over a few topics, a handler per topic.

    ``state`` (optional) is a CompactedView co-partitioned with ``state_topic_of``: partition p
    of the view is restored when partition p of that input topic is assigned, and dropped when
    it is revoked. ``ticker`` (optional) is called between batches every ``tick_every_s`` and
    its records produced at once (embargo release ticks: idempotent, nothing to commit).
    """

    def __init__(self, settings: Settings, name: str, group_id: str, handlers: dict[str, Handler], outbox: Outbox,
                 *, state: CompactedView | None = None, state_topic_of: str | None = None,
                 ticker: Callable[[], list[OutRecord]] | None = None, tick_every_s: float = 1.0,
                 max_records: int = 200, flush_bytes: int = 8 * 1024 * 1024) -> None:
        self.settings, self.name, self.group_id, self.handlers, self.outbox = settings, name, group_id, handlers, outbox
        self.state, self.state_topic_of = state, state_topic_of
        self.ticker, self.tick_every_s = ticker, tick_every_s
        self.max_records, self.flush_bytes = max_records, flush_bytes
        self._consumer: AIOKafkaConsumer | None = None

    # -- partitions ---------------------------------------------------------------------------

    def _state_partitions(self, tps: set[TopicPartition]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.state_topic_of}

    def revoked(self, revoked: set[TopicPartition]) -> None:
        if self.state is None or self._consumer is None:
            return
        still = self._state_partitions(set(self._consumer.assignment()) - set(revoked))
        self.state.drop(self.state.owned() - still)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s: assigned %s", self.name, sorted((tp.topic, tp.partition) for tp in assigned))
        if self.state is not None:
            await self.state.load(self.settings.kafka, self._state_partitions(assigned),
                                  self.settings.client_id)

    # -- the loop -------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        timeout_ms = self.settings.consumer_session_timeout_ms
        consumer = clients.aio_consumer(
            self.settings.kafka, group_id=self.group_id,
            client_id=f"{self.settings.client_id}-{self.name}", enable_auto_commit=False,
            auto_offset_reset="earliest", partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=self.max_records, session_timeout_ms=timeout_ms,
            heartbeat_interval_ms=max(1000, timeout_ms // 4), max_poll_interval_ms=600000,
        )
        self._consumer = consumer
        await consumer.start()
        consumer.subscribe(list(self.handlers), listener=Rebalance(self))
        log.info("%s: consuming %s (group %s)", self.name, ", ".join(self.handlers), self.group_id)
        next_tick = time.monotonic()
        try:
            while not stop.is_set():
                wait_ms = 200 if self.ticker is None else int(min(200.0, self.tick_every_s * 1000))
                batch = await consumer.getmany(timeout_ms=wait_ms, max_records=self.max_records)
                if batch:
                    await self._handle(batch)
                if self.ticker is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + self.tick_every_s
                    await self.outbox.send_all(self.ticker())
        finally:
            self._consumer = None
            await consumer.stop()

    async def _handle(self, batch: dict[TopicPartition, list[Any]]) -> None:
        if self.state is not None:
            await self.state.restored.wait()  # an update decided on a missing state would be a publish
        assert self._consumer is not None
        started = time.perf_counter()
        step, positions, pending = Step(), {}, 0
        owned = set(self._consumer.assignment())
        for tp, records in batch.items():
            if tp not in owned:
                continue  # revoked since the fetch: its next owner starts from the last commit
            handler = self.handlers[tp.topic]
            for rec in records:
                try:
                    done = handler(rec)
                    step.extend(done)
                except PartitionNotHeld as exc:
                    # Revoked while this batch was in hand: leave the rest to its owner, and if
                    # that is us again, fetch it again from here.
                    log.info("%s: %s; %s[%d] from offset %d left for its owner", self.name, exc, tp.topic,
                             tp.partition, rec.offset)
                    if tp in self._consumer.assignment():
                        self._consumer.seek(tp, rec.offset)
                    break
                positions[tp] = rec.offset + 1
                pending += sum(len(r.value or b"") for r in done.out)
                if pending >= self.flush_bytes:
                    await self._flush(step, positions, started)
                    step, positions, pending = Step(), {}, 0
        await self._flush(step, positions, started)

    async def _flush(self, step: Step, positions: dict[TopicPartition, int], started: float) -> None:
        await self.outbox.send_all(step.out)
        await self.outbox.send_all(step.state)
        for _ in range(step.fanned_out):
            metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)
        if positions:
            await self._commit(positions)

    async def _commit(self, positions: dict[TopicPartition, int]) -> None:
        assert self._consumer is not None
        owned = set(self._consumer.assignment())
        offsets = {tp: off for tp, off in positions.items() if tp in owned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # A rebalance took the partitions while we worked: their new owner replays from the
            # last commit (duplicates the ledgers absorb), and our outputs are already durable.
            log.warning("%s: commit of %s not taken (%s); the new owner replays them", self.name,
                        sorted((tp.topic, tp.partition, off) for tp, off in offsets.items()), exc)
