"""The idempotency ledger: a compacted topic per channel, held in memory for owned partitions.

Two kinds of entries (schemas/json/ledger.v1.json):
- command entries, key = command id: ``intent`` is written (and acknowledged) before the effect,
  then ``done``, ``unknown`` or ``failed``. The runtime writes the intents of a whole batch in one
  acknowledged send; a command that then produces no effect after all (its target got paused, a
  newer version went live first) has its fresh intent removed again (a tombstone). A replayed command whose entry is ``done`` is
  acknowledged without a second effect; ``intent``/``unknown`` means "reconcile first".
- live entries, key = ``live|<uri>|<target>``: the effect now out at the target for the article
  (its external id and version, or that it was retracted). Updates edit it, retractions remove it,
  and older versions arriving late are recognised as superseded.

Each entry goes to the same partition number as the command it is about, so the worker owning
command partition p owns ledger partition p and rebuilds it on assignment.
"""

from __future__ import annotations

import logging
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from infra.kafka.outbox import OutRecord
from schemas.codec import decode, encode
from schemas.errors import InvalidContent
from schemas.models import Command

log = logging.getLogger(__name__)

LIVE_PREFIX = "live|"


def live_key(uri: str, target: str) -> str:
    return f"{LIVE_PREFIX}{uri}|{target}"


class Ledger:
    """In-memory view of the ledger partitions this worker owns."""

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._entries: dict[int, dict[str, dict[str, Any]]] = {}

    def _apply(self, partition: int, key: str, value: dict[str, Any] | None) -> None:
        part = self._entries.setdefault(partition, {})
        if value is None:
            part.pop(key, None)
        else:
            part[key] = value

    def get(self, partition: int, key: str) -> dict[str, Any] | None:
        return self._entries.get(partition, {}).get(key)

    def command(self, partition: int, command_id: str) -> dict[str, Any] | None:
        return self.get(partition, command_id)

    def live(self, partition: int, uri: str, target: str) -> dict[str, Any] | None:
        return self.get(partition, live_key(uri, target))

    def owned(self) -> set[int]:
        return set(self._entries)

    def drop(self, partitions: set[int]) -> None:
        for p in partitions:
            self._entries.pop(p, None)

    def size(self) -> int:
        return sum(len(v) for v in self._entries.values())

    def record(self, partition: int, key: str, value: dict[str, Any]) -> OutRecord:
        """Apply locally and return the record that makes it durable."""
        self._apply(partition, key, value)
        return OutRecord(self.topic, key.encode(), encode(value), partition=partition)

    def forget(self, partition: int, key: str) -> OutRecord:
        """Remove an entry (a tombstone on the compacted topic): as if it had never been written."""
        self._apply(partition, key, None)
        return OutRecord(self.topic, key.encode(), None, partition=partition)

    def command_entry(self, partition: int, cmd: Command, state: str, at: str, *, attempts: int,
                      outcome: str | None = None, external_id: str | None = None, reason: str | None = None,
                      detail: dict[str, Any] | None = None) -> OutRecord:
        value: dict[str, Any] = {
            "kind": "command", "command_id": cmd.key.command_id(), "uri": cmd.key.uri, "version": cmd.key.version,
            "target": cmd.target, "action": cmd.key.action.value, "state": state, "outcome": outcome,
            "external_id": external_id, "attempts": attempts, "reason": reason, "at": at,
        }
        if detail:
            value["detail"] = detail
        return self.record(partition, cmd.key.command_id(), value)

    def live_entry(self, partition: int, cmd: Command, at: str, *, external_id: str | None, retracted: bool,
                   detail: dict[str, Any] | None = None) -> OutRecord:
        value: dict[str, Any] = {
            "kind": "live", "uri": cmd.key.uri, "version": cmd.key.version, "target": cmd.target,
            "external_id": external_id, "retracted": retracted, "at": at, "detail": detail or {},
        }
        return self.record(partition, live_key(cmd.key.uri, cmd.target), value)

    async def load(self, bootstrap: str, partitions: set[int], client_id: str) -> None:
        """Read the given partitions from the beginning to their end (on assignment)."""
        todo = sorted(p for p in partitions if p not in self._entries)
        if not todo:
            return
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    client_id=f"{client_id}-ledger")
        await consumer.start()
        try:
            tps = [TopicPartition(self.topic, p) for p in todo]
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            for p in todo:
                self._entries.setdefault(p, {})
            remaining = {tp for tp in tps if end[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=20000)
                for tp, recs in batch.items():
                    for rec in recs:
                        if rec.key is None:
                            continue
                        try:
                            value = decode(rec.value) if rec.value is not None else None
                        except InvalidContent:
                            log.error("unreadable ledger entry at %s[%d]@%d", self.topic, tp.partition, rec.offset)
                            continue
                        self._apply(tp.partition, rec.key.decode("utf-8", "replace"), value)
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            log.info("ledger %s: loaded partitions %s (%d entries)", self.topic, todo, self.size())
        finally:
            await consumer.stop()
