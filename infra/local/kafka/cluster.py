"""A real multi-node Apache Kafka (KRaft) cluster on 127.0.0.1, from the same Maven Central jars.

Each member is a combined broker+controller ``KafkaBroker`` with its own data dir and ports; all
are formatted with one cluster id and share one static controller quorum, so any one of three can
be killed and brought back while the other two keep the quorum and, with ``min.insync.replicas``
2, keep accepting ``acks=all`` writes. The fault drill runs against it (``python -m bench.drill
--cluster``); a single broker stays the default everywhere else (it is what CI can afford).

    with KafkaCluster(3) as cluster:
        cluster.bootstrap                 # "127.0.0.1:p1,127.0.0.1:p2,127.0.0.1:p3"
        cluster.kill(1)                   # SIGKILL member 1 (its data stays)
        cluster.start_member(1)           # back on the same ports and data, no reformat
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from pathlib import Path
from types import TracebackType

from infra.local.kafka.broker import HEAP_OPTS, KafkaBroker, PropertyValue, random_cluster_id
from infra.local.processes import free_loopback_ports

log = logging.getLogger(__name__)

# A small heap per member: three JVMs share this machine with the whole pipeline.
MEMBER_HEAP_OPTS: tuple[str, ...] = ("-Xms192m", "-Xmx384m")


def replicated_properties(size: int) -> dict[str, PropertyValue]:
    """What makes the cluster's own topics and Lantoa's defaults survive one member lost."""
    rf = min(3, size)
    isr = max(1, rf - 1)
    return {
        "default.replication.factor": rf,
        "min.insync.replicas": isr,
        "offsets.topic.replication.factor": rf,
        "transaction.state.log.replication.factor": rf,
        "transaction.state.log.min.isr": isr,
        "share.coordinator.state.topic.replication.factor": rf,
        "share.coordinator.state.topic.min.isr": isr,
        "unclean.leader.election.enable": False,
    }


class KafkaCluster:
    """``size`` KRaft members (node ids 1..size) with one quorum; see the module docstring."""

    def __init__(
        self,
        size: int = 3,
        data_dir: Path | str | None = None,
        *,
        heap_opts: tuple[str, ...] = MEMBER_HEAP_OPTS,
        start_timeout: float = 120.0,
    ) -> None:
        if size < 1:
            raise ValueError("a cluster has at least one member")
        self._owns_data_dir = data_dir is None
        self.data_dir = (
            Path(tempfile.mkdtemp(prefix="lantoa-kafka-cluster-")) if data_dir is None else Path(data_dir)
        )
        ports = free_loopback_ports(2 * size)
        client_ports, controller_ports = ports[:size], ports[size:]
        voters = ",".join(f"{i + 1}@127.0.0.1:{controller_ports[i]}" for i in range(size))
        cluster_id = random_cluster_id()
        props = replicated_properties(size)
        self.members: list[KafkaBroker] = [
            KafkaBroker(
                self.data_dir / f"node-{i + 1}",
                port=client_ports[i],
                controller_port=controller_ports[i],
                node_id=i + 1,
                cluster_id=cluster_id,
                quorum_voters=voters,
                extra_properties=props,
                heap_opts=heap_opts if size > 1 else HEAP_OPTS,
                start_timeout=start_timeout,
            )
            for i in range(size)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(m.bootstrap for m in self.members)

    @property
    def replication_factor(self) -> int:
        return min(3, len(self.members))

    def start(self) -> KafkaCluster:
        """Spawn every member, then wait for each (none answers before a quorum runs)."""
        try:
            for member in self.members:
                member.start(wait=False)
            for member in self.members:
                member.wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("Kafka cluster of %d at %s", len(self.members), self.bootstrap)
        return self

    def kill(self, index: int) -> None:
        """SIGKILL one member (no controlled shutdown); its data dir stays for :meth:`start_member`."""
        self.members[index].kill()

    def start_member(self, index: int) -> None:
        """Bring a killed or stopped member back on its ports and data (no reformat)."""
        member = self.members[index]
        member.start(wait=False)
        member.wait_ready()

    def stop(self) -> None:
        """Stop every member at once (one by one, the last ones wait for a lost quorum)."""
        threads = [threading.Thread(target=m.stop, name=f"stop-node-{m.node_id}") for m in self.members]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def close(self) -> None:
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> KafkaCluster:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
