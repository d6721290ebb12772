"""The stream worker's processes on the consumer loop (infra/kafka/loop.py): a handler per topic.

Per record (one at a time; the loop flushes every ``flush_bytes`` of output):

    1. the records the handler asked for (commands, receipts, dead letters) are acknowledged
    2. the article-state changes it made are acknowledged (streams.article.state, compacted)
    3. the offsets of the records handled are committed

A crash anywhere replays from the last commit against the state written before it; the
commands are keyed by (uri, version, channel, target, action), so the adapters' ledgers make a
replayed command harmless. Big fan-outs are flushed (1-3) every ``flush_bytes`` of output so a
batch of national articles never holds hundreds of megabytes of commands in memory. A record
whose handler raises something unexpected goes through the loop's poison policy.

Why not Faust's agents (the first version of this worker was a Faust app): in the fault drill
(bench/drill.py: kill -9 of the worker plus one broker restart), faust-streaming 0.15.3 committed
offsets past CMS events it never handed to the agent, and left partitions it owned unfetched.
Its consumer treats offsets it did not see as "gaps" to be committed (faust.transport.consumer
``_add_gap``/``_new_offset``; upstream #216 and #221 were fixed in 2021, #606 and its PR #707 are
still open and would not cover the losses seen after a broker restart), which breaks the
first invariant of the architecture: an offset is committed only after its effect is durable.
Here the commit is ours and names exactly the records whose outputs Kafka acknowledged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from aiokafka import TopicPartition

from infra.kafka.compacted import CompactedView
from infra.kafka.loop import Batch, Handled, InRecord, Subscription
from infra.kafka.outbox import OutRecord
from infra.kafka.payloads import PayloadWriter
from schemas import metrics
from schemas.models import Command
from schemas.settings import Settings
from streams.articles.fanout import command_records, payload_ref, shared_payloads
from streams.steps import Step

log = logging.getLogger(__name__)

Handler = Callable[[InRecord], Step]


class CommandWriter:
    """Encodes the commands of a step. A payload several of them carry, whose inline copies would
    cost at least ``LANTOA_SHARED_PAYLOAD_MIN_BYTES`` (streams/articles/fanout.py shared_payloads), is
    stored once on distribution.payloads first and acknowledged there (one round trip for all of
    the step's), and those commands carry its reference: the commands of a national article no
    longer hold its bulletin 3,321 times, in the worker or on the topic. Without a writer (unit
    tests, tools) every payload is inline.

    A crash after the payloads were stored and before the commands were replays the input: the
    payloads are stored again (the first copies are never referenced and expire)."""

    def __init__(self, settings: Settings, payloads: PayloadWriter | None) -> None:
        self.settings, self.payloads = settings, payloads

    async def records(self, commands: list[Command]) -> list[OutRecord]:
        refs: dict[int, dict[str, Any]] = {}
        if self.payloads is not None:
            shared = shared_payloads(commands, self.settings.shared_payload_min_bytes)
            if shared:
                payload_of = {id(c.payload): c.payload for c in commands}
                keys = list(shared)
                stored = await self.payloads.put([shared[k] for k in keys])
                refs = {
                    k: payload_ref(ref.to_dict(), payload_of[k]) for k, ref in zip(keys, stored, strict=True)
                }
                metrics.SHARED_PAYLOADS.inc(len(stored))
        return command_records(commands, self.settings, refs)


class TopicHandlers:
    """A Process over a few topics of one consumer group, a Step function per topic.

    ``state`` (optional) is a CompactedView co-partitioned with ``state_topic_of``: partition p
    of the view is restored when partition p of that input topic is assigned, and dropped when
    it is revoked. ``ticker`` (optional) is called between fetches every ``tick_every_s`` of the
    subscription, its records produced at once (embargo release ticks: idempotent, nothing to
    commit). A handler may raise PartitionNotHeld (its state partition went away meanwhile).
    ``payloads`` (optional): where payloads many commands share are stored once (else inline).
    """

    def __init__(
        self,
        settings: Settings,
        subscription: Subscription,
        handlers: dict[str, Handler],
        *,
        state: CompactedView | None = None,
        state_topic_of: str | None = None,
        ticker: Callable[[], list[OutRecord]] | None = None,
        payloads: PayloadWriter | None = None,
    ) -> None:
        self.settings, self.subscription, self.handlers = settings, subscription, handlers
        self.commands = CommandWriter(settings, payloads)
        self.state, self.state_topic_of, self.ticker = state, state_topic_of, ticker
        self._assigned: set[TopicPartition] = set()

    @property
    def views(self) -> Sequence[CompactedView]:
        return () if self.state is None else (self.state,)

    def _state_partitions(self, tps: set[TopicPartition]) -> set[int]:
        return {tp.partition for tp in tps if tp.topic == self.state_topic_of}

    def revoked(self, revoked: set[TopicPartition]) -> None:
        self._assigned -= set(revoked)
        if self.state is not None:
            self.state.drop(self.state.owned() - self._state_partitions(self._assigned))

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        self._assigned |= set(assigned)
        if self.state is not None:
            await self.state.load(
                self.settings.kafka, self._state_partitions(set(assigned)), self.settings.client_id
            )

    async def handle(self, batch: Batch) -> Handled:
        started = time.perf_counter()
        step = Step()
        for tp, records in batch.items():
            handler = self.handlers[tp.topic]
            for rec in records:
                step.extend(handler(rec))
        if step.commands:
            step.out[:0] = await self.commands.records(step.commands)

        def fanned_out() -> None:
            for _ in range(step.fanned_out):
                metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)

        return Handled(out=step.out, state=step.state, durable=[fanned_out] if step.fanned_out else [])

    async def tick(self) -> list[OutRecord]:
        return self.ticker() if self.ticker is not None else []
