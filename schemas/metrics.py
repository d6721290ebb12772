"""Every Prometheus metric Lantoa exports, declared once. Names are a contract with ops.

Labels are bounded: channel (4 values), type/outcome/stage/action (small enums), reason classes
(a fixed list, never free text). No per-article, per-zone or per-target labels.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
