"""``lantoa topics grow streams N`` on the real broker: the stream worker's co-partitioned topics
(cms.articles, embargo releases, article state) grow together and every article state moves to
the partition its uri now hashes to, so a revision after the grow is an update of the article the
worker already published, never a second publication.

- before the grow, a worker configured for N refuses to start and ``topics apply`` refuses to
  raise cms.articles, both naming the grow;
- revisions queued in an old partition before the grow are forwarded to their new partition and
  handled there once; revisions published after it land there directly;
- every state entry is in exactly one partition, the right one; a second run moves nothing.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson
import pytest
from helpers import article_doc, encode_doc

from infra.kafka import clients
from infra.kafka.grow import (
    STREAMS_FAMILY,
    GrowRefused,
    PartitionMismatch,
    current_partitions,
    grow,
    read_latest,
)
from infra.kafka.partitioning import partition_for
from infra.kafka.tail import TopicTail
from infra.kafka.topics import GrowRequired, apply_topics
from producers.client import PublishClient
from producers.targets import load_targets
from schemas.settings import Settings
from schemas.topics import Topic
from streams.app import StreamWorker

PLACES = [{"name": "Ba Đình", "uri": "urn:lantoa:place:ward:4"}]


def settings_for(bootstrap: str, prefix: str, data: str, n: int) -> Settings:
    counts = ",".join(f"{t.value}={n}" for t in STREAMS_FAMILY.topics)
    return Settings.from_env(
        {
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_DATA_DIR": data,
            "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
            "LANTOA_PARTITIONS": counts,
        }
    )


async def run_until(worker: StreamWorker, done: Callable[[], object], timeout: float = 90.0) -> None:
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


def fanned_out(tail: TopicTail, version: int, uris: list[str]) -> Callable[[], object]:
    """A wait until the archive command of ``version`` of every uri is on the topic."""
    return lambda: tail.wait_for(
        lambda recs: (
            {orjson.loads(r.value)["uri"] for r in recs if orjson.loads(r.value)["version"] == version}
            >= set(uris)
        ),
        90,
        f"version {version} fanned out",
    )


async def test_grow_streams_moves_article_states_and_a_revision_after_it_is_an_update(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    prefix = f"gs{uuid.uuid4().hex[:6]}."
    data = str(tmp_path_factory.mktemp("gs"))
    s2 = settings_for(kafka_bootstrap, prefix, data, 2)
    apply_topics(s2)
    load_targets(s2)
    uris = [f"urn:lantoa:article:grow-{i}-{uuid.uuid4().hex[:4]}" for i in range(24)]
    moving = [u for u in uris if partition_for(u.encode(), 5) != partition_for(u.encode(), 2)]
    assert len(moving) > 3
    commands = TopicTail(s2.kafka, s2.topic(Topic.ARCHIVE_COMMANDS))
    client = PublishClient(s2)
    try:
        for u in uris:
            client.publish(encode_doc(article_doc(u, 1, places=PLACES)))
        await run_until(StreamWorker(s2), fanned_out(commands, 1, uris))
        # Revisions queued before the grow, in the partitions their uris hash to with 2.
        for u in uris[:12]:
            client.publish(encode_doc(article_doc(u, 2, places=PLACES)))
    finally:
        client.close()

    s5 = settings_for(kafka_bootstrap, prefix, data, 5)
    with pytest.raises(
        PartitionMismatch, match=r"has 2 partitions, configuration says 5.*`lantoa topics grow streams 5`"
    ):
        await StreamWorker(s5).check_partitions()
    with pytest.raises(GrowRequired, match="lantoa topics grow streams 5"):
        apply_topics(s5)
    with pytest.raises(GrowRefused, match="configuration asks for"):
        grow(s2, STREAMS_FAMILY, 5)
    before = read_latest(s2, s2.topic(Topic.ARTICLE_STATE))
    assert {k.decode() for part in before.values() for k in part} >= set(uris)

    report = grow(s5, STREAMS_FAMILY, 5)
    assert report.moved == len(moving) and report.unplaceable == 0
    admin = clients.admin(s5.kafka)
    try:
        assert set(current_partitions(admin, [s5.topic(t) for t in STREAMS_FAMILY.topics]).values()) == {5}
    finally:
        admin.close()
    where: dict[bytes, list[int]] = {}
    for p, part in read_latest(s5, s5.topic(Topic.ARTICLE_STATE)).items():
        for key in part:
            where.setdefault(key, []).append(p)
    for u in uris:
        assert where[u.encode()] == [partition_for(u.encode(), 5)], u
    await StreamWorker(s5).check_partitions()  # agrees now
    assert grow(s5, STREAMS_FAMILY, 5).moved == 0

    client = PublishClient(s5)
    try:
        for u in uris[12:]:
            client.publish(encode_doc(article_doc(u, 2, places=PLACES)))
        await run_until(StreamWorker(s5), fanned_out(commands, 2, uris))
        seen = [orjson.loads(r.value) for r in commands.settle(2.0)]
    finally:
        client.close()
        commands.close()
    mine = [c for c in seen if c["uri"] in uris]
    assert sorted((c["uri"], c["version"]) for c in mine) == sorted((u, v) for u in uris for v in (1, 2)), (
        "a version was fanned out twice, or not at all"
    )
    assert {c["action"] for c in mine if c["version"] == 1} == {"publish"}
    assert {c["action"] for c in mine if c["version"] == 2} == {"update"}, (
        "a revision was taken for a new article"
    )
