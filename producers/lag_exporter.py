"""Consumer lag of Lantoa's consumer groups, for Prometheus.

    python -m producers.lag_exporter [--port P] [--interval S]     serve lantoa_consumer_lag
    python -m producers.lag_exporter --once                         print the lag table and exit

A process of its own, not a collector inside each consumer: the lag matters most when the
consumer is dead, and a dead consumer exports nothing. Every ``interval`` seconds it asks Kafka
for each group's committed offsets and each partition's first and end offsets, and sets
``lantoa_consumer_lag{group, topic}`` (sum over partitions). A partition the group never
committed counts from its first offset: a channel whose adapter never ran shows everything queued
for it. The groups are the ones Lantoa's settings name (the stream app, one per channel, the
emergency lane), so the label values are bounded by configuration.

When a poll fails (Kafka unreachable, a timeout) the lag series are dropped rather than left
stale, and lantoa_lag_poll_errors_total counts the failure. Anything unexpected stops the
exporter (exit 70) for its supervisor to restart.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from kafka import TopicPartition
from kafka.errors import KafkaError

from infra.kafka import clients
from infra.kafka.clients import KafkaAccessError
from infra.kafka.reachable import EXIT_CONFIG
from schemas import metrics
from schemas.settings import Settings
from schemas.topics import RETRY_TIERS, Channel, Topic

log = logging.getLogger(__name__)

EXIT_CRASH = 70
DEFAULT_PORT = 9406


def adapter_group(settings: Settings, channel: str) -> str:
    """The consumer group of a channel's adapter (consumers/delivery/runtime.py: DeliveryRuntime.group_id)."""
    return f"{settings.topic_prefix}lantoa-{channel}"


def watched_groups(settings: Settings) -> dict[str, list[str]]:
    """Group id → the physical topics it consumes."""
    groups = {
        settings.app_id: [settings.topic(t) for t in (Topic.CMS_ARTICLES, Topic.EMBARGO_RELEASES)],
        f"{settings.app_id}-alerts": [settings.topic(Topic.ALERTS_CAP)],
    }
    for channel in Channel:
        groups[adapter_group(settings, channel.value)] = [settings.topic(Topic.commands(channel))] + [
            settings.topic(Topic.retry(channel, tier)) for tier in RETRY_TIERS
        ]
    groups[adapter_group(settings, "emergency")] = [settings.topic(Topic.EMERGENCY_COMMANDS)]
    return groups


def lag_by_topic(
    committed: Mapping[TopicPartition, int | None],
    first: Mapping[TopicPartition, int],
    end: Mapping[TopicPartition, int],
) -> dict[str, int]:
    """Per topic, records between the group's committed offset (or the first offset) and the end."""
    out: dict[str, int] = {}
    for tp, end_offset in end.items():
        start = committed.get(tp)
        low = first.get(tp, 0)
        position = low if start is None or start < 0 else max(start, low)
        out[tp.topic] = out.get(tp.topic, 0) + max(0, end_offset - position)
    return out


@dataclass
class LagPoller:
    """Polls committed and end offsets with kafka-python (its own admin client and consumer)."""

    settings: Settings

    def __post_init__(self) -> None:
        client_id = f"{self.settings.client_id}-lag"
        self.admin = clients.admin(self.settings.kafka, client_id=client_id)
        self.consumer = clients.consumer(
            self.settings.kafka, group_id=None, enable_auto_commit=False, client_id=client_id
        )

    def poll(self) -> dict[tuple[str, str], int]:
        """(group, topic) → lag, for every topic of every watched group that exists."""
        topics = self.consumer.topics()
        specs: dict[str, list[TopicPartition]] = {}
        for group, names in watched_groups(self.settings).items():
            tps = [
                TopicPartition(t, p)
                for t in names
                if t in topics
                for p in sorted(self.consumer.partitions_for_topic(t) or ())
            ]
            if tps:
                specs[group] = tps
        if not specs:
            return {}
        every = sorted({tp for tps in specs.values() for tp in tps})
        first, end = self.consumer.beginning_offsets(every), self.consumer.end_offsets(every)
        offsets = self.admin.list_group_offsets(specs)
        out: dict[tuple[str, str], int] = {}
        for group, tps in specs.items():
            got = offsets.get(group) or {}
            committed = {tp: (meta.offset if meta is not None else None) for tp, meta in got.items()}
            lags = lag_by_topic(committed, first, {tp: end[tp] for tp in tps})
            for topic, lag in lags.items():
                out[(group, topic)] = lag
        return out

    def close(self) -> None:
        self.consumer.close()
        self.admin.close()


def publish(lags: Mapping[tuple[str, str], int], shown: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Set the lag series to these values; series no longer polled go away. Returns what is shown."""
    for group, topic in shown - set(lags):
        metrics.CONSUMER_LAG.remove(group, topic)
    for (group, topic), lag in lags.items():
        metrics.CONSUMER_LAG.labels(group, topic).set(lag)
    return set(lags)


def run(settings: Settings, port: int, interval_s: float, stop: threading.Event) -> None:
    from prometheus_client import start_http_server

    start_http_server(port, addr=settings.web_host)
    log.info("lag exporter on http://%s:%s/metrics, every %.1fs", settings.web_host, port, interval_s)
    poller: LagPoller | None = None
    shown: set[tuple[str, str]] = set()
    while not stop.is_set():
        try:
            if poller is None:
                poller = LagPoller(settings)
            shown = publish(poller.poll(), shown)
        except KafkaError as exc:
            metrics.LAG_POLL_ERRORS.inc()
            metrics.CONSUMER_LAG.clear()
            shown = set()
            log.warning(
                "lag poll failed (%s: %s); lag series dropped until the next good poll",
                type(exc).__name__,
                exc,
            )
            if poller is not None:
                poller.close()
                poller = None
        stop.wait(interval_s)
    if poller is not None:
        poller.close()


def render(lags: Mapping[tuple[str, str], int]) -> str:
    rows = [("GROUP", "TOPIC", "LAG")] + [(g, t, str(n)) for (g, t), n in sorted(lags.items())]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:>{widths[2]}}" for r in rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m producers.lag_exporter", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--port", type=int, help=f"metrics port (default LANTOA_METRICS_PORT, else {DEFAULT_PORT})"
    )
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls (default 5)")
    parser.add_argument("--once", action="store_true", help="print the lag of every group and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)
    settings = Settings.from_env(os.environ)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        if args.once:
            poller = LagPoller(settings)
            try:
                print(render(poller.poll()))
            finally:
                poller.close()
            return 0
        run(settings, args.port or settings.metrics_port or DEFAULT_PORT, args.interval, stop)
    except KafkaAccessError as exc:  # the cluster refuses this configuration: restarting will not help
        log.critical("lag exporter cannot start: %s", exc)
        logging.shutdown()
        os._exit(EXIT_CONFIG)
    except Exception as exc:
        log.critical("lag exporter stopped on %s: %s", type(exc).__name__, exc, exc_info=exc)
        logging.shutdown()
        os._exit(EXIT_CRASH)
    return 0


if __name__ == "__main__":
    sys.exit(main())
