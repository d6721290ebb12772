"""`lantoa deadletters list | show | replay`: inspect dead letters and send them back.

Replay puts the original key, value and headers back on the topic the record first failed on
(``dlq_topic``), with a ``replay`` header, so it goes through the normal, idempotent path: the
stream app dedupes by version, the adapters by their ledger. The dlq_* headers travel along, so
a record that fails again comes back with one more attempt counted.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import TopicPartition

from infra.kafka import clients
from producers.progress import progress as bar
from schemas.codec import headers_to_dict
from schemas.settings import Settings
from schemas.topics import Topic

REPLAY_HEADER = "replay"


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def meta(self) -> dict[str, str]:
        return headers_to_dict(self.headers)

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


def read_all(settings: Settings, timeout_s: float = 10.0) -> list[DeadLetter]:
    """Every dead letter still retained on the topic, oldest first per partition."""
    topic = settings.topic(Topic.DEADLETTER)
    consumer = clients.consumer(settings.kafka, group_id=None, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[DeadLetter] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, recs in consumer.poll(timeout_ms=300, max_records=5000).items():
                for r in recs:
                    out.append(DeadLetter(tp.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers or [])))
        return sorted(out, key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    finally:
        consumer.close()


def select(letters: Iterable[DeadLetter], *, reason: str | None = None, channel: str | None = None,
           stage: str | None = None, refs: Iterable[str] = ()) -> list[DeadLetter]:
    wanted = set(refs)
    out = []
    for d in letters:
        m = d.meta
        if wanted and d.ref not in wanted:
            continue
        if reason and reason.lower() not in m.get("dlq_reason", "").lower():
            continue
        if channel and m.get("dlq_channel", "streams") != channel:
            continue
        if stage and m.get("dlq_stage") != stage:
            continue
        out.append(d)
    return out


def render_list(letters: list[DeadLetter]) -> str:
    lines = [f"{'ref':>8}  {'first seen':20}  {'att':>3}  {'origin':34}  {'stage':9}  reason"]
    for d in letters:
        m = d.meta
        origin = f"{m.get('dlq_topic', '?')}[{m.get('dlq_partition', '?')}]@{m.get('dlq_offset', '?')}"
        lines.append(f"{d.ref:>8}  {m.get('dlq_first_seen', '')[:19]:20}  {m.get('dlq_attempts', '1'):>3}  "
                     f"{origin[:34]:34}  {m.get('dlq_stage', ''):9}  {m.get('dlq_reason', '')[:100]}")
    lines.append(f"{len(letters)} dead letter(s)")
    return "\n".join(lines)


def render_one(d: DeadLetter) -> str:
    out = [f"dead letter {d.ref}", "headers:"]
    out += [f"  {k}: {v}" for k, v in d.meta.items()]
    out.append(f"key: {d.key.decode('utf-8', 'replace') if d.key else None}")
    value: Any
    try:
        value = orjson.dumps(orjson.loads(d.value or b""), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        raw = d.value or b""
        value = f"<{len(raw)} bytes, not JSON> {raw[:200]!r}"
    out.append(f"value:\n{value[:20000]}")
    return "\n".join(out)


def replay(settings: Settings, letters: list[DeadLetter], dry_run: bool = False, progress: bool = True) -> int:
    """Send each dead letter back to its origin topic; returns how many were sent."""
    if dry_run or not letters:
        return len(letters)
    producer = clients.producer(settings.kafka, acks="all", enable_idempotence=True, max_request_size=4 * 1024 * 1024,
                                client_id=f"{settings.client_id}-replay")
    try:
        futures = []
        for i, d in enumerate(letters, start=1):
            origin = d.meta.get("dlq_topic")
            if not origin:
                continue
            headers = [(k, v) for k, v in d.headers if k != REPLAY_HEADER] + [(REPLAY_HEADER, d.ref.encode())]
            futures.append(producer.send(origin, key=d.key, value=d.value, headers=headers))
            if progress:
                bar("replay", i, len(letters))
        producer.flush()
        for f in futures:
            f.get(timeout=30)
        return len(futures)
    finally:
        producer.close()
