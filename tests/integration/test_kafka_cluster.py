"""A real three-node KRaft cluster (infra/local/kafka/cluster.py): replicated writes survive one member
killed with SIGKILL, and the member comes back on its data and rejoins the in-sync replicas.

Starts its own cluster whatever LANTOA_KAFKA_BOOTSTRAP says (it tests the cluster machinery).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from kafka.errors import KafkaConnectionError, NotEnoughReplicasError

from infra.kafka import clients
from infra.local.kafka.cluster import KafkaCluster
from schemas.settings import KafkaConnection

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster() -> Iterator[KafkaCluster]:
    with KafkaCluster(3) as c:
        yield c


def _isr(conn: KafkaConnection, topic: str) -> list[int]:
    """The in-sync replicas of partition 0; [] while the client still tries a member that is down
    (the admin client learns every member from metadata, dead ones included)."""
    try:
        admin = clients.admin(conn, client_id="it-cluster-admin")
        try:
            described = admin.describe_topics([topic])
        finally:
            admin.close()
    except KafkaConnectionError:
        return []
    part = described[0]["partitions"][0]
    return sorted(part.get("isr_nodes", part.get("isr", [])))


def test_three_members_replicate_and_survive_one_killed(cluster: KafkaCluster) -> None:
    conn = KafkaConnection(cluster.bootstrap)
    topic = f"it-cluster-{uuid.uuid4().hex[:8]}"
    admin = clients.admin(conn, client_id="it-cluster-admin")
    try:
        admin.create_topics({topic: {"num_partitions": 1, "replication_factor": 3}}, wait_for_metadata=True)
    finally:
        admin.close()
    assert _isr(conn, topic) == [1, 2, 3]
    producer = clients.producer(conn, acks="all", retries=10, request_timeout_ms=15000)
    try:
        for i in range(20):
            producer.send(topic, key=b"k", value=f"before-{i}".encode()).get(timeout=30)
        cluster.kill(2)  # node 3, whichever role it had (leader, controller)
        for i in range(20):
            producer.send(topic, key=b"k", value=f"during-{i}".encode()).get(timeout=60)
        cluster.start_member(2)
        deadline = time.monotonic() + 60
        while _isr(conn, topic) != [1, 2, 3]:
            assert time.monotonic() < deadline, f"node 3 never rejoined the ISR: {_isr(conn, topic)}"
            time.sleep(1.0)
        producer.send(topic, key=b"k", value=b"after").get(timeout=30)
    finally:
        producer.close()
    consumer = clients.consumer(
        conn, group_id=None, auto_offset_reset="earliest", enable_auto_commit=False, consumer_timeout_ms=5000
    )
    try:
        consumer.subscribe([topic])
        values = [r.value.decode() for r in consumer]
    finally:
        consumer.close()
    assert values == [f"before-{i}" for i in range(20)] + [f"during-{i}" for i in range(20)] + ["after"]


def test_min_insync_replicas_refuses_an_acks_all_write_kept_on_one_copy(cluster: KafkaCluster) -> None:
    """min.insync.replicas=2: a partition left with one in-sync copy refuses acks=all writes
    (NotEnoughReplicas) instead of acknowledging data one more crash would lose; the controller
    quorum (two of three) stays up meanwhile."""
    conn = KafkaConnection(cluster.bootstrap)
    topic = f"it-cluster-isr-{uuid.uuid4().hex[:8]}"
    admin = clients.admin(conn, client_id="it-cluster-admin")
    try:
        admin.create_topics(
            {topic: {"assignments": {0: [1, 2]}}}, wait_for_metadata=True
        )  # nodes 1 and 2 only
    finally:
        admin.close()
    producer = clients.producer(conn, acks="all", retries=0, request_timeout_ms=5000, max_block_ms=10000)
    try:
        producer.send(topic, value=b"two copies").get(timeout=30)
        cluster.kill(1)  # node 2: the partition keeps one in-sync copy
        alive = KafkaConnection(",".join(m.bootstrap for i, m in enumerate(cluster.members) if i != 1))
        deadline = time.monotonic() + 60
        while _isr(alive, topic) != [1]:
            assert time.monotonic() < deadline, f"node 2 never left the ISR: {_isr(alive, topic)}"
            time.sleep(1.0)
        with pytest.raises(NotEnoughReplicasError):
            producer.send(topic, value=b"one copy").get(timeout=20)
    finally:
        producer.close(timeout=5)
        cluster.start_member(1)
