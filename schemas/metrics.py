"""Every Prometheus metric Lantoa exports, declared once. Names are a contract with ops.

Labels are bounded: channel (4 values), type/outcome/stage/action (small enums), reason classes
(a fixed list, never free text). No per-article, per-zone or per-target labels.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS = Counter(
    "lantoa_events_total",
    "Article events taken in by the stream app, by CloudEvents type and outcome.",
    ["type", "outcome"],
)
DEAD_LETTERS = Counter(
    "lantoa_dead_letters_total",
    "Records sent to the dead-letter topic, by stage and reason class.",
    ["stage", "reason"],
)
COMMANDS = Counter(
    "lantoa_commands_total",
    "Channel commands produced by the fan-out, by channel and action.",
    ["channel", "action"],
)
FANOUT_SECONDS = Histogram(
    "lantoa_fanout_seconds",
    "Time from taking an event to having all its commands acknowledged by Kafka.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

REASON_CLASSES = (
    "empty", "utf8", "json", "schema", "headers", "key", "version", "place", "too_large", "other",
)


def reason_class(reason: str) -> str:
    """Map a free-text reason to one of REASON_CLASSES (bounded label values)."""
    text = reason.lower()
    for needle, label in (
        ("empty", "empty"),
        ("utf-8", "utf8"),
        ("not json", "json"),
        ("cloudevents", "headers"),
        ("ce_", "headers"),
        ("record key", "key"),
        ("version", "version"),
        ("place", "place"),
        ("exceeds", "too_large"),
        ("$", "schema"),
    ):
        if needle in text:
            return label
    return "other"

DELIVERIES = Counter(
    "lantoa_deliveries_total",
    "Command outcomes at the channel adapters, by channel and outcome "
    "(delivered, updated, deleted, skipped, retrying, unknown, failed).",
    ["channel", "outcome"],
)
RETRIES = Counter(
    "lantoa_retries_total",
    "Retries by channel and kind (in_process, scheduled, paused).",
    ["channel", "kind"],
)
OUTCOME_UNKNOWN = Counter(
    "lantoa_outcome_unknown_total",
    "Requests that left with no answer (reconciled before any resend), by channel.",
    ["channel"],
)
RECONCILED = Counter(
    "lantoa_reconciled_total",
    "Reconciliations after an unknown outcome, by channel and result (found, absent).",
    ["channel", "result"],
)
DELIVERY_LATENCY = Histogram(
    "lantoa_delivery_latency_seconds",
    "End to end: CMS publish time (ce_time) to the effect at the platform, by channel.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)
PAUSED_TARGETS = Gauge(
    "lantoa_paused_targets",
    "Targets currently paused (rate limit, quota, token, policy), by channel.",
    ["channel"],
)
LEDGER_ENTRIES = Gauge(
    "lantoa_ledger_entries",
    "Idempotency ledger entries held in memory by this worker, by channel.",
    ["channel"],
)
