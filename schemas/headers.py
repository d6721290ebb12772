"""Lantoa's internal record headers: their names, who may set them, and how their values are read.

Two kinds of headers travel on our topics:

- **outside headers**, set by whoever wrote the record (the CloudEvents ``ce_*`` attributes of an
  article, ``content-type``): read, validated, never trusted beyond their contract;
- **internal headers**, that only Lantoa sets: the dead-letter origin and reason (``dlq_*``,
  schemas/deadletter.py), the delayed-retry bookkeeping of the delivery runtime (``retry_*``,
  consumers/delivery/runtime.py) and the ``replay`` marker of ``lantoa deadletters replay``.

A record arriving on an input topic (cms.articles, alerts.cap, engagement.inbound: the topics
outsiders write) has its internal headers removed by ``strip_internal`` at the first place it is
read, so a forged ``dlq_topic`` never reaches a dead letter as if Lantoa had set it and a forged
``replay`` marker is never trusted. Even Lantoa's own values are read with ``header_int`` and
``header_float``, which never raise: a bad header must not crash-loop a consumer.

Pure functions, no I/O.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping

DLQ_PREFIX = "dlq_"
RETRY_PREFIX = "retry_"

DLQ_TOPIC = "dlq_topic"
DLQ_PARTITION = "dlq_partition"
DLQ_OFFSET = "dlq_offset"
DLQ_REASON = "dlq_reason"
DLQ_STAGE = "dlq_stage"
DLQ_FIRST_SEEN = "dlq_first_seen"
DLQ_ATTEMPTS = "dlq_attempts"
DLQ_ERROR_CLASS = "dlq_error_class"
DLQ_LAST_TOPIC = "dlq_last_topic"
DLQ_LAST_OFFSET = "dlq_last_offset"
DLQ_CHANNEL = "dlq_channel"
DLQ_TRACEBACK_SHA256 = "dlq_traceback_sha256"  # poison records (infra/kafka/loop.py)
DLQ_TRACEBACK_LAST = "dlq_traceback_last"

RETRY_ATTEMPT = "retry_attempt"
RETRY_DUE = "retry_due_at"
RETRY_REASON = "retry_reason"

REPLAY = "replay"

# No real retry or replay count comes near this; a larger (forged or corrupted) count is clamped
# to it, which every retry policy treats as exhausted.
MAX_ATTEMPTS = 10_000
# Kafka partitions and offsets are non-negative 32- and 64-bit integers.
MAX_PARTITION = 2**31 - 1
MAX_OFFSET = 2**63 - 1

# Longer than any number Lantoa writes (an epoch time with 3 decimals is 14 characters): a longer
# value is not ours and is not parsed at all (int() of thousands of digits costs, and raises).
MAX_NUMBER_CHARS = 40
# Header values Lantoa writes from what it was given (a reason quoting a refused key, a platform's
# error text, the last frame of a traceback) are cut to these sizes, in characters (at most four
# bytes each): a header is read by operators and by ``lantoa deadletters``, and a record of a few
# bytes must not carry megabytes of headers. A reason keeps the receipt's size (MAX_RECEIPT_REASON_CHARS
# in schemas/models.py), so the dead letter and the receipt of one refusal say the same thing.
MAX_REASON_HEADER_CHARS = 2000
MAX_TRACEBACK_HEADER_CHARS = 500  # one frame: file, line, function and the exception's first line
MAX_RETRY_REASON_CHARS = (
    500  # the retry tiers' note of why the last try failed (consumers/delivery/runtime.py)
)
# Any other value written from input (a channel or stage name read from a record).
MAX_HEADER_VALUE_CHARS = 200
_INT = re.compile(r"[+-]?[0-9]+", re.ASCII)
_FLOAT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


def is_internal(name: str) -> bool:
    """True for a header only Lantoa may set (``dlq_*``, ``retry_*``, ``replay``), in any letter case.

    Case-insensitive on purpose: a ``DLQ_Topic`` is not read by us today, but nothing a reader
    might one day normalise should get through from outside.
    """
    folded = name.lower()
    return folded.startswith((DLQ_PREFIX, RETRY_PREFIX)) or folded == REPLAY


def strip_internal(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The headers without the internal ones, in their order: for records arriving from outside."""
    return [(k, v) for k, v in headers if not is_internal(k)]


def header_int(headers: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    """The integer in header ``name``, kept within [lo, hi]. Never raises.

    - missing, empty, or not a plain decimal integer ("abc", "1.5", "1e3", "NaN", "inf", non-ASCII
      digits, more than MAX_NUMBER_CHARS characters) → ``default``, returned as given;
    - an integer below ``lo`` (a negative count) → ``lo``; above ``hi`` (a huge count) → ``hi``.
    """
    raw = (headers.get(name) or "").strip()
    if len(raw) > MAX_NUMBER_CHARS or not _INT.fullmatch(raw):
        return default
    return min(hi, max(lo, int(raw)))


def header_float(headers: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    """The finite number in header ``name``, kept within [lo, hi]. Never raises.

    - missing, empty, not a plain decimal number ("abc", "0x10", "1_0", non-ASCII digits, more than
      MAX_NUMBER_CHARS characters), or not finite (NaN, inf, and 1e400, which overflows to inf)
      → ``default``, returned as given;
    - a finite number below ``lo`` (negative) → ``lo``; above ``hi`` (a due time years ahead) → ``hi``.
    """
    raw = (headers.get(name) or "").strip()
    if len(raw) > MAX_NUMBER_CHARS or not _FLOAT.fullmatch(raw):
        return default
    value = float(raw)
    if not math.isfinite(value):
        return default
    return min(hi, max(lo, value))
