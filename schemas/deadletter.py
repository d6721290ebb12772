"""Dead-letter records: the original bytes, untouched, plus dlq_* headers saying where and why.

See schemas/json/deadletter.v1.json. No I/O.
"""

from __future__ import annotations

from collections.abc import Iterable

DLQ_PREFIX = "dlq_"


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
    """Headers of a dead letter: the originals (minus old dlq_*), then the origin and reason.

    A record that was dead-lettered before and replayed keeps its first-seen time and its origin
    and counts one more attempt, so a replay loop is visible. A poison record (stage "poison",
    infra/kafka/loop.py) also carries a digest of its traceback and its last frame, so that the
    dead letters of one bug can be grouped without the full trace in a header.
    """
    originals = list(original_headers)
    previous = {k: v.decode("utf-8", "replace") for k, v in originals if k.startswith(DLQ_PREFIX)}
    kept = [(k, v) for k, v in originals if not k.startswith(DLQ_PREFIX)]
    attempts = int(previous.get("dlq_attempts", "0") or 0) + 1
    # The origin is where the record first failed, not the replay hop.
    origin_topic = previous.get("dlq_topic", topic)
    origin_partition = previous.get("dlq_partition", str(partition))
    origin_offset = previous.get("dlq_offset", str(offset))
    fields = {
        "dlq_topic": origin_topic,
        "dlq_partition": origin_partition,
        "dlq_offset": origin_offset,
        "dlq_reason": reason[:2000] or "unknown",
        "dlq_stage": stage,
        "dlq_first_seen": previous.get("dlq_first_seen", now_iso),
        "dlq_attempts": str(attempts),
        "dlq_error_class": error_class,
        "dlq_last_topic": topic,
        "dlq_last_offset": f"{partition}:{offset}",
    }
    if channel:
        fields["dlq_channel"] = channel
    if traceback_sha256:
        fields["dlq_traceback_sha256"] = traceback_sha256
    if traceback_last:
        fields["dlq_traceback_last"] = traceback_last[:500]
    return kept + [(k, v.encode("utf-8")) for k, v in fields.items()]
