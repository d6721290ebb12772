"""The consumer loop's poison policy, in its parts: the durable attempt counts, the dead-letter
limit, and the digest of a failure (infra/kafka/loop.py applies them; no loop logic here).

PoisonLog holds ``distribution.poison`` (compacted, one small topic for every group): per consumer
group and input offset, how many times the record was tried without getting past it, and the last
unexpected error. Every loop reads it whole on each assignment (``reload``), so a process that takes
a partition over sees what its dead predecessors wrote. Entries are written acked by the loop
before the attempt they count, and removed once a commit moved past them.

DeadLetterLimit counts, per window of ``window_s``, the records handled and those dead-lettered by
the loop's poison policy or refused for good by a platform (stage ``deliver``); contract refusals
of hostile input (stage ``decode``) are not counted, so a hostile producer cannot stop a process.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from infra.kafka.compacted import CompactedView
from infra.kafka.outbox import OutRecord
from schemas.codec import encode
from schemas.settings import KafkaConnection

Reader = Callable[[], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Failure:
    """What an unexpected exception leaves in a dead letter: its type, message and a digest of its
    traceback (file, function and line of every frame: stable across processes of one build)."""

    error_class: str
    reason: str
    traceback_sha256: str
    last_frame: str

    @staticmethod
    def of(exc: BaseException) -> Failure:
        frames = traceback.extract_tb(exc.__traceback__)
        shape = "\n".join(f"{f.filename}:{f.name}:{f.lineno}" for f in frames) + f"\n{type(exc).__qualname__}"
        last = (
            f"{frames[-1].filename}:{frames[-1].lineno} in {frames[-1].name}: {frames[-1].line}"
            if frames
            else ""
        )
        return Failure(
            type(exc).__qualname__,
            str(exc)[:1000] or type(exc).__qualname__,
            hashlib.sha256(shape.encode()).hexdigest(),
            last[:500],
        )


def topic_reader(conn: KafkaConnection, topic: str, partitions: int, client_id: str) -> Reader:
    """Reads the poison topic whole (every partition, from the beginning to its end)."""

    async def read() -> dict[str, Any]:
        view = CompactedView(topic)
        await view.load(conn, set(range(partitions)), client_id)
        return {key: value for p in view.owned() for key, value in view.items(p)}

    return read


class PoisonLog:
    """The poison counts of one consumer group, in memory, as of the last ``reload`` plus what this
    process wrote since. ``reader`` returns the topic's content (key → value); tests hand a fake."""

    def __init__(self, topic: str, group: str, reader: Reader) -> None:
        self.topic, self.group, self._reader = topic, group, reader
        self._entries: dict[str, dict[str, Any]] = {}

    def key(self, tp: TopicPartition, offset: int) -> str:
        return f"{self.group}|{tp.topic}|{tp.partition}|{offset}"

    async def reload(self) -> None:
        """Read the topic again (on every assignment: a dead owner may have written since)."""
        prefix = f"{self.group}|"
        self._entries = {k: v for k, v in (await self._reader()).items() if k.startswith(prefix)}

    def entry(self, tp: TopicPartition, offset: int) -> dict[str, Any] | None:
        return self._entries.get(self.key(tp, offset))

    def attempts(self, tp: TopicPartition, offset: int) -> int:
        return int((self.entry(tp, offset) or {}).get("attempts", 0))

    def entries(self, tp: TopicPartition) -> list[dict[str, Any]]:
        return [
            v for v in self._entries.values() if v["topic"] == tp.topic and v["partition"] == tp.partition
        ]

    def suspect_until(self, tp: TopicPartition, start: int) -> int | None:
        """The last offset to handle carefully (one record at a time, a marker before each) when
        the partition is handled from ``start`` on: the end of every recorded span at or past it."""
        ends = [
            max(int(v["offset"]), int(v["span_end"])) for v in self.entries(tp) if int(v["offset"]) >= start
        ]
        return max(ends) if ends else None

    def note(
        self,
        tp: TopicPartition,
        offset: int,
        attempts: int,
        at: str,
        *,
        span_end: int | None = None,
        failure: Failure | None = None,
    ) -> OutRecord:
        """Record (here and as the record to send, acked, before the attempt it counts)."""
        previous = self.entry(tp, offset) or {}
        value = {
            "group": self.group,
            "topic": tp.topic,
            "partition": tp.partition,
            "offset": offset,
            "span_end": offset if span_end is None else span_end,
            "attempts": attempts,
            "error_class": failure.error_class if failure else previous.get("error_class"),
            "reason": failure.reason if failure else previous.get("reason"),
            "traceback_sha256": failure.traceback_sha256 if failure else previous.get("traceback_sha256"),
            "at": at,
        }
        key = self.key(tp, offset)
        self._entries[key] = value
        return OutRecord(self.topic, key.encode(), encode(value))

    def clear_below(self, tp: TopicPartition, committed: int) -> list[OutRecord]:
        """Tombstones of the entries a commit moved past (the partition got past them)."""
        gone = [v for v in self.entries(tp) if int(v["offset"]) < committed]
        out = []
        for v in gone:
            key = self.key(tp, int(v["offset"]))
            del self._entries[key]
            out.append(OutRecord(self.topic, key.encode(), None))
        return out


class DeadLetterLimitExceeded(RuntimeError):
    """Too large a share of a window's records was dead-lettered: the process stops, the batch
    that crossed the limit is not committed (a restart replays it)."""


class DeadLetterLimit:
    """More than ``share`` of the records of a ``window_s`` window dead-lettered, once at least
    ``min_records`` were seen in it, is a bad deploy or a revoked permission, not bad records."""

    def __init__(self, share: float, min_records: int, window_s: float, clock: Callable[[], float]) -> None:
        self.share, self.min_records, self.window_s, self.clock = share, min_records, window_s, clock
        self.started = clock()
        self.seen = 0
        self.dead = 0

    def count(self, seen: int, dead: int) -> bool:
        """Count a batch of ``seen`` records, ``dead`` of them dead-lettered; True when the window
        is over the limit with it (the caller stops without committing that batch)."""
        now = self.clock()
        if now - self.started >= self.window_s:
            self.started, self.seen, self.dead = now, 0, 0
        self.seen += seen
        self.dead += dead
        return self.seen >= self.min_records and self.dead > self.share * self.seen
