"""The audit trail's writer for the doors that run on kafka-python (the CLI, the CAP endpoint, the
publish client): one AuditRecord per action to ``audit.actions`` (key = subject), acknowledged
before the door reports success, so an action without its audit record is reported as failed."""

from __future__ import annotations

from typing import Any

from kafka import KafkaProducer

from infra.kafka import clients
from schemas.audit import AuditRecord
from schemas.settings import Settings
from schemas.topics import Topic


class AuditLog:
    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self.topic = settings.topic(Topic.AUDIT)
        self._own = producer is None
        self._producer = producer or clients.producer(
            settings.kafka, client_id=f"{settings.client_id}-audit", acks="all", enable_idempotence=True
        )

    def send(self, record: AuditRecord) -> Any:
        """Send without waiting: the future to ``get`` (a door sending its action beside it)."""
        return self._producer.send(self.topic, key=record.subject.encode(), value=record.encode())

    def write(self, record: AuditRecord, timeout_s: float = 30.0) -> None:
        self.send(record).get(timeout=timeout_s)

    def write_all(self, records: list[AuditRecord], timeout_s: float = 30.0) -> None:
        """Several records, sent together and each acknowledged (KafkaError on the first refused)."""
        futures = [self._producer.send(self.topic, key=r.subject.encode(), value=r.encode()) for r in records]
        self._producer.flush(timeout=timeout_s)
        for f in futures:
            f.get(timeout=timeout_s)

    def close(self) -> None:
        if self._own:
            self._producer.flush()
            self._producer.close()
