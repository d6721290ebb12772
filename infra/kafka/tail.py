"""Read a topic from the beginning and wait for conditions on what was read (demo, tests, bench)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kafka import TopicPartition

from infra.kafka import clients
from schemas.settings import KafkaConnection


class TopicTail:
    """Reads every partition of a topic from offset 0 (no consumer group) and keeps the records."""

    def __init__(self, conn: KafkaConnection, topic: str, wait_for_topic_s: float = 30.0) -> None:
        self.topic = topic
        self.records: list[Any] = []
        self._consumer = clients.consumer(conn, group_id=None, enable_auto_commit=False)
        parts = None
        deadline = time.monotonic() + wait_for_topic_s
        while not parts:
            parts = self._consumer.partitions_for_topic(topic)
            if not parts:
                if time.monotonic() > deadline:
                    self._consumer.close()
                    raise LookupError(f"topic {topic} not found")
                time.sleep(0.2)
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        self._consumer.assign(tps)
        self._consumer.seek_to_beginning(*tps)

    def poll(self) -> list[Any]:
        """Read what is there now; return the new records."""
        new: list[Any] = []
        while True:
            batch = self._consumer.poll(timeout_ms=200, max_records=50000)
            if not batch:
                break
            for recs in batch.values():
                new.extend(recs)
        self.records.extend(new)
        return new

    def wait_for(
        self, predicate: Callable[[list[Any]], bool], timeout: float = 60.0, what: str = ""
    ) -> list[Any]:
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if predicate(self.records):
                return self.records
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"timed out after {timeout}s waiting for {what or 'a condition'} on {self.topic} "
                    f"({len(self.records)} records read)"
                )
            time.sleep(0.2)

    def settle(self, quiet_s: float = 2.0) -> list[Any]:
        """Read until nothing new arrives for ``quiet_s`` seconds."""
        while True:
            time.sleep(quiet_s)
            if not self.poll():
                return self.records

    def close(self) -> None:
        self._consumer.close()
