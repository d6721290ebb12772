"""raw_passthrough_msgs_s: a bare aiokafka consume → decode/encode → produce loop, batched.

What the Python Kafka clients can do on this machine with no Lantoa code in between: the same
~1 KB JSON commands ProducerPerformance wrote (bench/raw_kafka.py; this bench fills its own topic
the same way when run alone), read in batches of up to ``BATCH`` records, each decoded and
re-encoded with orjson, produced to a second topic with the settings of Lantoa's Outbox
(``acks=all``, idempotence, linger 5 ms, 1 MB batches; every send awaited per batch), and the
offsets committed once a batch is acknowledged: the at-least-once shape of every Lantoa worker.
Timed from the first record fetched to the last commit.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import orjson

from bench.common import Result
from bench.raw_kafka import PARTITIONS, RECORDS, RawTopic, create_topic, fill, filled_topic
from infra.kafka import clients
from schemas.settings import KafkaConnection

BATCH = 2000


async def passthrough(bootstrap: str, source: str, records: int) -> tuple[float, int]:
    """Copy ``records`` records from ``source`` to a new topic; (seconds, records copied)."""
    sink = f"bench.passthrough.{uuid.uuid4().hex[:8]}"
    await asyncio.to_thread(create_topic, bootstrap, sink, PARTITIONS)
    consumer = clients.aio_consumer(
        KafkaConnection(bootstrap),
        source,
        group_id=f"bench-pt-{uuid.uuid4().hex[:6]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=BATCH,
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    producer = clients.aio_producer(
        KafkaConnection(bootstrap),
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=1024 * 1024,
        max_request_size=4 * 1024 * 1024,
    )
    await consumer.start()
    await producer.start()
    copied, started = 0, 0.0
    try:
        while copied < records:
            batch = await consumer.getmany(timeout_ms=1000, max_records=BATCH)
            if not batch:
                continue
            if not started:
                started = time.perf_counter()
            futures = []
            for recs in batch.values():
                for rec in recs:
                    value = orjson.dumps(orjson.loads(rec.value))
                    futures.append(await producer.send(sink, value, key=rec.key, partition=rec.partition))
            await asyncio.gather(*futures)
            await consumer.commit()
            copied += len(futures)
        return time.perf_counter() - started, copied
    finally:
        await consumer.stop()
        await producer.stop()


def run(bootstrap: str) -> list[Result]:
    raw: RawTopic | None = filled_topic()
    if raw is None:  # run alone (python -m bench passthrough): fill a topic the same way first
        raw, _ = fill(bootstrap, RECORDS)
    seconds, copied = asyncio.run(passthrough(bootstrap, raw.name, raw.records))
    note = (
        f"{copied:,} records of {raw.record_bytes} B read from the ProducerPerformance topic, orjson "
        f"decode+encode, produced acks=all, committed per batch of <= {BATCH}; {seconds:.1f}s"
    )
    return [Result("raw_passthrough_msgs_s", copied / seconds, "msg/s", "baseline", note)]
