"""The stream worker's own guarantees, in process against the real broker.

- an input offset is committed only after the commands and receipt it produced are acknowledged
  (a failure before that leaves the offset where it was, and the next worker replays the event);
- the article state is restored from streams.article.state by the next worker (ordering by
  version holds across restarts) and a replay after a restart sends no second fan-out.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import article_doc, encode_doc
from kafka import TopicPartition

from infra.kafka import clients
from infra.kafka.outbox import OutRecord
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from producers.client import PublishClient
from producers.targets import load_targets
from schemas.settings import Settings
from schemas.topics import Topic
from streams.app import StreamWorker

PLACES = [{"name": "Ba Đình", "uri": "urn:lantoa:place:ward:4"}]


@pytest.fixture(scope="module")
def settings(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    prefix = f"w{uuid.uuid4().hex[:8]}."
    s = Settings.from_env(
        {
            "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_DATA_DIR": str(tmp_path_factory.mktemp("w")),
            "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        }
    )
    apply_topics(s)
    load_targets(s)
    return s


async def run_until(worker: StreamWorker, done: Callable[[], object], timeout: float = 60.0) -> None:
    """Run the worker until ``done()`` (a blocking wait, run in a thread) returns; then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    waiter = asyncio.create_task(asyncio.to_thread(done))
    try:
        finished, _ = await asyncio.wait({task, waiter}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        assert waiter in finished, "the worker stopped (or the wait timed out) before the condition held"
        waiter.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def committed(settings: Settings) -> dict[int, int | None]:
    topic = settings.topic(Topic.CMS_ARTICLES)
    consumer = clients.consumer(settings.kafka, group_id=settings.app_id, enable_auto_commit=False)
    try:
        return {
            p: consumer.committed(TopicPartition(topic, p))
            for p in range(settings.partitions(Topic.CMS_ARTICLES))
        }
    finally:
        consumer.close()


def receipts(tail: TopicTail, uri: str) -> list[dict[str, Any]]:
    tail.poll()
    return [orjson.loads(r.value) for r in tail.records if r.key == uri.encode()]


def wait_outcome(tail: TopicTail, uri: str, outcome: str) -> Callable[[], object]:
    return lambda: tail.wait_for(
        lambda recs: any(r.key == uri.encode() and orjson.loads(r.value)["outcome"] == outcome for r in recs),
        60,
        f"{outcome} for {uri}",
    )


async def test_no_commit_before_the_outputs_are_acknowledged_and_the_next_worker_replays(
    settings: Settings,
) -> None:
    uri = f"urn:lantoa:article:commit-{uuid.uuid4().hex[:6]}"
    client = PublishClient(settings)
    client.publish(encode_doc(article_doc(uri, 1, places=PLACES)))
    client.close()
    before = committed(settings)

    failing = StreamWorker(settings)
    real_send = failing.outbox.send_all

    async def refuse_commands(records: Sequence[OutRecord]) -> None:
        if any(r.topic.endswith(".commands") for r in records):
            raise RuntimeError("broker refused the fan-out (test)")
        await real_send(records)

    failing.outbox.send_all = refuse_commands  # type: ignore[method-assign]
    stop = asyncio.Event()
    with pytest.raises(RuntimeError, match="refused the fan-out"):
        await asyncio.wait_for(failing.run(stop), 60)
    assert committed(settings) == before, "an offset was committed although the fan-out failed"

    receipts_tail = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    commands_tail = TopicTail(settings.kafka, settings.topic(Topic.ARCHIVE_COMMANDS))
    try:
        await run_until(StreamWorker(settings), wait_outcome(receipts_tail, uri, "routed"))
        after = committed(settings)
        assert sum(v or 0 for v in after.values()) == sum(v or 0 for v in before.values()) + 1
        archive = [
            orjson.loads(r.value) for r in commands_tail.settle(1.0) if orjson.loads(r.value)["uri"] == uri
        ]
        assert len(archive) == 1 and archive[0]["version"] == 1
    finally:
        receipts_tail.close()
        commands_tail.close()


async def test_state_is_restored_by_the_next_worker(settings: Settings, tmp_path: Path) -> None:
    uri = f"urn:lantoa:article:restore-{uuid.uuid4().hex[:6]}"
    client = PublishClient(settings)
    tail = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    try:
        client.publish(encode_doc(article_doc(uri, 2, places=PLACES)))
        await run_until(StreamWorker(settings), wait_outcome(tail, uri, "routed"))
        # A new worker knows version 2 only from streams.article.state: version 1 is stale.
        client.publish(encode_doc(article_doc(uri, 1, places=PLACES)))
        client.publish(encode_doc(article_doc(uri, 2, places=PLACES)))
        # A slow restore: aiokafka fetches the new partitions meanwhile, and nothing may be
        # decided before the state is back.
        worker = StreamWorker(settings)
        real_load = worker.state._load

        async def slow_load(*args: Any) -> None:
            await asyncio.sleep(3.0)
            await real_load(*args)

        worker.state._load = slow_load  # type: ignore[method-assign, assignment]
        await run_until(worker, wait_outcome(tail, uri, "dropped_duplicate"))
        outcomes = [r["outcome"] for r in receipts(tail, uri) if r.get("stage") in ("fanout", "policy")]
        assert outcomes == ["routed", "dropped_stale", "dropped_duplicate"], outcomes
    finally:
        client.close()
        tail.close()
