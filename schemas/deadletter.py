"""Dead-letter records: the original bytes, untouched, plus dlq_* headers saying where and why.

See schemas/json/deadletter.v1.json; the header names live in schemas/headers.py. No I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from schemas.headers import (
    DLQ_ATTEMPTS,
    DLQ_CHANNEL,
    DLQ_ERROR_CLASS,
    DLQ_FIRST_SEEN,
    DLQ_LAST_OFFSET,
    DLQ_LAST_TOPIC,
    DLQ_OFFSET,
    DLQ_PARTITION,
    DLQ_PREFIX,
    DLQ_REASON,
    DLQ_STAGE,
    DLQ_TOPIC,
    DLQ_TRACEBACK_LAST,
    DLQ_TRACEBACK_SHA256,
    MAX_ATTEMPTS,
    MAX_HEADER_VALUE_CHARS,
    MAX_OFFSET,
    MAX_PARTITION,
    MAX_REASON_HEADER_CHARS,
    MAX_TRACEBACK_HEADER_CHARS,
    header_int,
)
from schemas.text import bounded

# What Kafka accepts as a topic name: a previous origin that is not one is not kept.
_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}", re.ASCII)
# The shape utc_now_iso writes: a previous first-seen time that is not one is replaced by now.
_ISO_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:[0-9]{2})",
    re.ASCII,
)


def dead_letter_headers(
    original_headers: Iterable[tuple[str, bytes]],
    *,
    topic: str,
    partition: int,
    offset: int,
    reason: str,
    stage: str,
    now_iso: str,
    error_class: str = "InvalidContent",
    channel: str | None = None,
    traceback_sha256: str | None = None,
    traceback_last: str | None = None,
) -> list[tuple[str, bytes]]:
    """Headers of a dead letter: the originals (minus old dlq_*), then the origin and reason. Never raises.

    A command that was dead-lettered before and replayed keeps its first-seen time and its origin
    and counts one more attempt, so a replay loop is visible. The previous dlq_* values are read
    defensively: a count that is not a number counts as 0 (a huge one is clamped to MAX_ATTEMPTS),
    and a previous origin is kept only when its topic, partition and offset are all well formed,
    else this record's own place is the origin (and its first-seen time only when it is a time). Records from outside never get here with dlq_*
    headers: the intake strips them (schemas/headers.py strip_internal), so an input that is
    replayed and fails again starts a new count.
    A poison record (stage "poison", infra/kafka/loop.py) also carries a digest of its traceback
    and its last frame, so that the dead letters of one bug can be grouped without the full trace.
    """
    originals = list(original_headers)
    previous = {k: v.decode("utf-8", "replace") for k, v in originals if k.startswith(DLQ_PREFIX)}
    kept = [(k, v) for k, v in originals if not k.startswith(DLQ_PREFIX)]
    attempts = header_int(previous, DLQ_ATTEMPTS, 0, 0, MAX_ATTEMPTS - 1) + 1
    # The origin is where the record first failed, not the replay hop.
    prev_partition = header_int(previous, DLQ_PARTITION, -1, 0, MAX_PARTITION)
    prev_offset = header_int(previous, DLQ_OFFSET, -1, 0, MAX_OFFSET)
    prev_topic = previous.get(DLQ_TOPIC, "")
    first_seen = previous.get(DLQ_FIRST_SEEN, "")
    keep_origin = bool(_TOPIC_NAME.fullmatch(prev_topic)) and prev_partition >= 0 and prev_offset >= 0
    fields = {
        DLQ_TOPIC: prev_topic if keep_origin else topic,
        DLQ_PARTITION: str(prev_partition if keep_origin else partition),
        DLQ_OFFSET: str(prev_offset if keep_origin else offset),
        DLQ_REASON: bounded(reason, MAX_REASON_HEADER_CHARS) or "unknown",
        DLQ_STAGE: bounded(stage, MAX_HEADER_VALUE_CHARS),
        DLQ_FIRST_SEEN: first_seen if keep_origin and _ISO_TIME.fullmatch(first_seen) else now_iso,
        DLQ_ATTEMPTS: str(attempts),
        DLQ_ERROR_CLASS: bounded(error_class, MAX_HEADER_VALUE_CHARS),
        DLQ_LAST_TOPIC: topic,
        DLQ_LAST_OFFSET: f"{partition}:{offset}",
    }
    if channel:
        fields[DLQ_CHANNEL] = bounded(channel, MAX_HEADER_VALUE_CHARS)
    if traceback_sha256:
        fields[DLQ_TRACEBACK_SHA256] = traceback_sha256
    if traceback_last:
        fields[DLQ_TRACEBACK_LAST] = bounded(traceback_last, MAX_TRACEBACK_HEADER_CHARS)
    return kept + [(k, v.encode("utf-8")) for k, v in fields.items()]
