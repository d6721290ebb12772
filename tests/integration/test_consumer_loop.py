"""The consumer loop's poison policy on the real broker (infra/kafka/loop.py).

The process under test is tests/integration/loop_probe.py, run as a subprocess: it copies its
input to an output topic, raises on a record ``raise`` and dies (os._exit) on a record ``kill``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from infra.kafka import clients
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from schemas.settings import Settings
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    prefix = f"cl{uuid.uuid4().hex[:6]}."
    s = Settings.from_env({"LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap, "LANTOA_TOPIC_PREFIX": prefix})
    apply_topics(s)
    return s


def produce(settings: Settings, values: list[bytes]) -> None:
    producer = clients.producer(settings.kafka, acks="all")
    for i, value in enumerate(values):
        producer.send(
            settings.topic(Topic.ENGAGEMENT_INBOUND), key=f"k{i}".encode(), value=value, partition=0
        )
    producer.flush()
    producer.close()


def run_probe(settings: Settings, group: str) -> int:
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": settings.kafka.bootstrap,
        "LANTOA_TOPIC_PREFIX": settings.topic_prefix,
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LOOP_INPUT": settings.topic(Topic.ENGAGEMENT_INBOUND),
        "LOOP_OUTPUT": settings.topic(Topic.RECEIPTS),
        "LOOP_GROUP": group,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "integration" / "loop_probe.py")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=150,
    )
    return done.returncode


def read(settings: Settings, topic: Topic) -> list[tuple[bytes, bytes, dict[str, str]]]:
    tail = TopicTail(settings.kafka, settings.topic(topic))
    try:
        return [(r.key, r.value, {k: v.decode() for k, v in r.headers}) for r in tail.settle(1.0)]
    finally:
        tail.close()


def test_a_record_that_raises_is_dead_lettered_and_the_partition_moves_on(settings: Settings) -> None:
    produce(settings, [b"a", b"b", b"raise", b"c", b"d"])
    assert run_probe(settings, f"{settings.topic_prefix}probe") == 0  # 0: the group committed the end
    assert sorted(v for _, v, _ in read(settings, Topic.RECEIPTS)) == [b"a", b"b", b"c", b"d"]
    ((key, value, headers),) = read(settings, Topic.DEADLETTER)
    assert (key, value) == (b"k2", b"raise")
    assert headers["dlq_stage"] == "poison" and headers["dlq_error_class"] == "ValueError"
    assert (headers["dlq_topic"], headers["dlq_partition"], headers["dlq_offset"]) == (
        settings.topic(Topic.ENGAGEMENT_INBOUND),
        "0",
        "2",
    )
    assert "cannot copy record 2" in headers["dlq_reason"] and len(headers["dlq_traceback_sha256"]) == 64
    assert "loop_probe.py" in headers["dlq_traceback_last"]


def test_a_record_that_kills_the_process_is_dead_lettered_after_restarts(settings: Settings) -> None:
    produce(settings, [b"a", b"b", b"kill", b"c", b"d"])
    group = f"{settings.topic_prefix}probe"
    codes = []
    while not codes or codes[-1] != 0:
        codes.append(run_probe(settings, group))
        assert len(codes) <= 8, f"the crash-restart-crash cycle was not recognised: exit codes {codes}"
    # the first run dies in its batch, then three marked attempts at the killer, then it is set aside
    assert codes == [70, 70, 70, 70, 0]
    assert sorted(v for _, v, _ in read(settings, Topic.RECEIPTS)) == [b"a", b"b", b"c", b"d"]
    ((key, value, headers),) = read(settings, Topic.DEADLETTER)
    assert (key, value, headers["dlq_offset"]) == (b"k2", b"kill", "2")
    assert headers["dlq_stage"] == "poison" and headers["dlq_error_class"] == "ProcessKilled"
    assert "stopped 3 times" in headers["dlq_reason"]
