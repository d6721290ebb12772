"""The real single-node Kafka broker of infra/kafka: start, produce/consume, restart, kill.

This module starts its own broker (it tests the broker machinery itself), whatever
LANTOA_KAFKA_BOOTSTRAP says. The first run downloads the jars (~45 MB) from Maven Central.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError

from infra.kafka import clients
from infra.local.kafka.broker import KafkaBroker, log_has_slf4j_problem
from schemas.settings import KafkaConnection

pytestmark = pytest.mark.integration

N_MESSAGES = 100


@pytest.fixture(scope="module")
def broker() -> Iterator[KafkaBroker]:
    b = KafkaBroker()
    b.start()
    try:
        yield b
    finally:
        b.close()
        assert not b.is_running()


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    admin = clients.admin(KafkaConnection(bootstrap), client_id="it-admin")
    try:
        admin.create_topics(
            {topic: {"num_partitions": partitions, "replication_factor": 1}},
            wait_for_metadata=True,
        )
        assert topic in admin.list_topics()
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = clients.producer(KafkaConnection(bootstrap), acks="all", linger_ms=5)
    try:
        futures = [producer.send(topic, key=b"k", value=v) for v in values]
        producer.flush(timeout=30)
        for f in futures:
            f.get(timeout=30)
    finally:
        producer.close(timeout=10)


def _drain(consumer: KafkaConsumer, expected: int, timeout: float = 30.0) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + timeout
    while len(got) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(r.value for r in records)
    return got


def _read_all(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    """Read partition 0 from the beginning without a consumer group."""
    consumer = clients.consumer(KafkaConnection(bootstrap), enable_auto_commit=False, group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        return _drain(consumer, expected)
    finally:
        consumer.close()


def test_produce_consume_survives_restart(broker: KafkaBroker) -> None:
    topic, group = _unique("it-broker"), _unique("it-group")
    bootstrap = broker.bootstrap
    _create_topic(bootstrap, topic)
    values = [f"message-{i:03d}".encode() for i in range(N_MESSAGES)]
    _produce(bootstrap, topic, values)

    # Consume through a consumer group (exercises the group coordinator and
    # __consumer_offsets) and commit.
    consumer = clients.consumer(
        KafkaConnection(bootstrap),
        topic,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        assert _drain(consumer, N_MESSAGES) == values
        consumer.commit()
    finally:
        consumer.close()

    pid_before = broker.pid
    broker.restart()
    assert broker.is_running()
    assert broker.pid != pid_before
    assert broker.bootstrap == bootstrap, "restart must keep the ports"

    # Data and committed group offsets survived the restart.
    assert _read_all(bootstrap, topic, N_MESSAGES) == values
    consumer = clients.consumer(KafkaConnection(bootstrap), group_id=group, enable_auto_commit=False)
    try:
        assert consumer.committed(TopicPartition(topic, 0)) == N_MESSAGES
    finally:
        consumer.close()


def test_kill_then_start_keeps_acked_messages(broker: KafkaBroker) -> None:
    topic = _unique("it-kill")
    _create_topic(broker.bootstrap, topic)
    values = [f"drill-{i}".encode() for i in range(10)]
    _produce(broker.bootstrap, topic, values)

    broker.kill()
    assert not broker.is_running()
    broker.kill()  # idempotent
    broker.stop()  # idempotent on a dead broker
    broker.start()
    assert _read_all(broker.bootstrap, topic, len(values)) == values


def test_auto_create_topics_is_disabled(broker: KafkaBroker) -> None:
    assert broker.properties()["auto.create.topics.enable"] == "false"
    topic = _unique("it-absent")
    # kafka-python producers ask for auto-creation in their metadata requests.
    producer = clients.producer(KafkaConnection(broker.bootstrap), max_block_ms=2000)
    try:
        with pytest.raises(KafkaTimeoutError):
            producer.send(topic, b"x").get(timeout=10)
    finally:
        producer.close(timeout=5)
    admin = clients.admin(KafkaConnection(broker.bootstrap))
    try:
        assert topic not in admin.list_topics()
    finally:
        admin.close()


def test_broker_log_has_no_slf4j_warning(broker: KafkaBroker) -> None:
    head = broker.log_head(80)
    text = broker.log_file.read_text(encoding="utf-8", errors="replace")
    assert "No SLF4J providers" not in text
    assert log_has_slf4j_problem(head) is None
    assert log_has_slf4j_problem(text) is None
    # The log4j2 backend really writes the broker's INFO lines (not a no-op logger).
    assert "Kafka Server started" in text
    assert (broker.data_dir / "logs" / "server.log").is_file()
