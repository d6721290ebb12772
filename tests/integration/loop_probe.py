"""A process on the consumer loop for tests/integration/test_consumer_loop.py, run as a subprocess:
it copies each record of LOOP_INPUT (partition 0) to LOOP_OUTPUT, dies with os._exit(70) on a
record whose value is ``kill`` and raises ValueError on one whose value is ``raise``, and exits 0
once its group committed the end of the input (settings from LANTOA_*)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Sequence

from aiokafka import TopicPartition

from infra.kafka import clients
from infra.kafka.compacted import CompactedView
from infra.kafka.loop import Batch, ConsumerLoop, Handled, Subscription
from infra.kafka.outbox import Outbox, OutRecord
from schemas.settings import Settings


class Copier:
    def __init__(self, topic: str, group: str, output: str) -> None:
        self.subscription = Subscription("probe", (topic,), group, max_records=50)
        self.output = output

    @property
    def views(self) -> Sequence[CompactedView]:
        return ()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        pass

    def revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def tick(self) -> list[OutRecord]:
        return []

    async def handle(self, batch: Batch) -> Handled:
        out = []
        for recs in batch.values():
            for rec in recs:
                if rec.value == b"kill":
                    os._exit(70)  # no finally, no flush: like kill -9 or the OOM killer
                if rec.value == b"raise":
                    raise ValueError(f"cannot copy record {rec.offset}")
                out.append(OutRecord(self.output, rec.key or b"", rec.value))
        return Handled(out=out)


async def committed_end(settings: Settings, group: str, tp: TopicPartition) -> bool:
    consumer = clients.aio_consumer(
        settings.kafka,
        group_id=group,
        enable_auto_commit=False,
        client_id=f"{settings.client_id}-probe-check",
    )
    await consumer.start()
    try:
        end = (await consumer.end_offsets([tp]))[tp]
        return (await consumer.committed(tp) or 0) >= end
    finally:
        await consumer.stop()


async def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    settings = Settings.from_env(os.environ)
    topic, group, output = os.environ["LOOP_INPUT"], os.environ["LOOP_GROUP"], os.environ["LOOP_OUTPUT"]
    outbox = Outbox(settings.kafka, "probe")
    await outbox.start()
    stop = asyncio.Event()
    loop = ConsumerLoop(settings, Copier(topic, group, output), outbox)
    task = asyncio.create_task(loop.run(stop))
    try:
        for _ in range(240):
            await asyncio.sleep(0.5)
            if task.done():
                task.result()
            if await committed_end(settings, group, TopicPartition(topic, 0)):
                return 0
        return 1
    finally:
        stop.set()
        await task
        await outbox.stop()


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
