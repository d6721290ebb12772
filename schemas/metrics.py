"""Every Prometheus metric Lantoa exports, declared once. Names are a contract with ops.

Labels are bounded: channel (4 values), type/outcome/stage/action (small enums), reason classes
(a fixed list, never free text). No per-article, per-zone or per-target labels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Sequence

from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

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
POISON_RECORDS = Counter(
    "lantoa_poison_records_total",
    "Input records dead-lettered by the consumer loop's poison policy (handling raised something "
    "unexpected, or killed the process, LANTOA_POISON_MAX_ATTEMPTS times), by process and input topic.",
    ["process", "topic"],
)
COMMANDS = Counter(
    "lantoa_commands_total",
    "Channel commands produced by the fan-out, by channel and action.",
    ["channel", "action"],
)
SHARED_PAYLOADS = Counter(
    "lantoa_shared_payloads_total",
    "Payloads the fan-out stored once on distribution.payloads for several commands (each command "
    "then carries a reference instead of a copy).",
)
PAYLOAD_READS = Counter(
    "lantoa_payload_reads_total",
    "Shared payloads an adapter looked up, by channel and result: cached, fetched (read from "
    "distribution.payloads), refused (gone, not found or not matching its hash: the command is "
    "dead-lettered).",
    ["channel", "result"],
)
FANOUT_SECONDS = Histogram(
    "lantoa_fanout_seconds",
    "Time from taking an event to having all its commands acknowledged by Kafka.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

REASON_CLASSES = (
    "empty",
    "utf8",
    "json",
    "schema",
    "headers",
    "key",
    "version",
    "place",
    "too_large",
    "other",
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

# -- Observability additions (issue 6) ----------------------------------------------------------
#
# Label bounds of the metrics below:
#   channel  the four channels;  token  page | access | refresh;
#   account  a Facebook page id that has a token in the fanpage tokens file (one per page the
#            province runs: tens), or the Zalo app id (one token pair per app, one app per OA);
#   group    Lantoa's consumer groups (the stream app and one per channel: 5);
#   topic    the topics those groups read (per group at most 4: commands and the retry tiers).
# None carries an article, a zone or a target.

EMERGENCY_LATENCY = Histogram(
    "lantoa_emergency_delivery_latency_seconds",
    "Emergency commands only: CMS/CAP publish time (ce_time) to the effect at the platform, by channel.",
    ["channel"],
    buckets=(1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 900.0),
)
CONSUMER_LAG = Gauge(
    "lantoa_consumer_lag",
    "Records on a topic not yet committed by a consumer group (sum over partitions; a partition "
    "the group never committed counts from its first offset). Exported by the lag exporter.",
    ["group", "topic"],
)
LAG_POLL_ERRORS = Counter(
    "lantoa_lag_poll_errors_total",
    "Polls of committed and end offsets that failed in the lag exporter (lag series are dropped then).",
)

Sample = tuple[Sequence[str], float]


class ComputedGauge(Collector):
    """A gauge family whose samples are computed at scrape time (time left, ages), not pushed.

    The process that knows the values registers a source per key (``source(key, fn)``); ``fn``
    returns ``(label values, value)`` pairs and runs in the scrape thread, so it must be cheap
    and thread-safe. A source that raises fails the scrape: Prometheus records ``up == 0`` for
    the process and the LantoaProcessDown alert says so; nothing is dropped silently.
    """

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._sources: dict[str, Callable[[], Iterable[Sample]]] = {}
        self._lock = threading.Lock()
        REGISTRY.register(self)

    def source(self, key: str, fn: Callable[[], Iterable[Sample]]) -> None:
        """Add or replace the source named ``key``."""
        with self._lock:
            self._sources[key] = fn

    def remove(self, key: str) -> None:
        with self._lock:
            self._sources.pop(key, None)

    def samples(self) -> list[Sample]:
        with self._lock:
            sources = [self._sources[k] for k in sorted(self._sources)]
        return [(tuple(labels), float(value)) for fn in sources for labels, value in fn()]

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in self.samples():
            family.add_metric(list(labels), value)
        yield family


TOKEN_EXPIRY = ComputedGauge(
    "lantoa_token_expiry_seconds",
    "Seconds until a platform token expires, by channel, account and token (page: a Facebook page "
    "token, +Inf when it does not expire; access: the Zalo access token, renewed by the adapter "
    "itself; refresh: the Zalo refresh token, whose loss needs the OA admin to authorise again).",
    ["channel", "account", "token"],
)
EMERGENCY_PENDING = ComputedGauge(
    "lantoa_emergency_pending",
    "Emergency commands (publication, update or cancellation) not yet effective at their target, "
    "by channel, from the stream app's status view (those published in the last 6 hours).",
    ["channel"],
)
EMERGENCY_PENDING_AGE = ComputedGauge(
    "lantoa_emergency_pending_oldest_seconds",
    "Age since publication of the oldest emergency command not yet effective at its target, by "
    "channel (0 when none), from the stream app's status view.",
    ["channel"],
)

# -- Citizen engagement (issue 8) ----------------------------------------------------------------
#
# The two gauges are set by the triage process (lantoa triage) from its engagement table, at
# least every second; the webhook metrics come from the receivers (lantoa webhooks). Labels:
# platform (fanpage, zalo), outcome (a fixed list, see below).

OPEN_QUESTIONS = Gauge(
    "lantoa_open_questions",
    "Citizen questions waiting for an answer (state open) in the engagement table, by platform.",
    ["platform"],
)
OLDEST_OPEN_QUESTION_AGE = Gauge(
    "lantoa_oldest_open_question_age_seconds",
    "Age of the oldest open citizen question since it was asked, by platform (0 when none is open).",
    ["platform"],
)
WEBHOOK_EVENTS = Counter(
    "lantoa_webhook_events_total",
    "Webhook deliveries and events at the receivers, by platform and outcome: accepted (produced), "
    "duplicate (already produced), ignored (not a citizen comment or message), forged (bad, missing or "
    "malformed signature), stale (outside the replay window, or without a time), unavailable (Kafka did "
    "not acknowledge in time).",
    ["platform", "outcome"],
)
WEBHOOK_ACK_SECONDS = Histogram(
    "lantoa_webhook_ack_seconds",
    "Time from a webhook request to its answer, Kafka acknowledgement included, by platform "
    "(Zalo wants an answer within 2 s).",
    ["platform"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 5.0),
)
