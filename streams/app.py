"""The stream worker (``lantoa worker``): its loops, state and connections, declared in one place.

intake    cms.articles + streams.embargo.releases (group = app id) → decode/validate/NFC →
          order by (uri, version) → policy → route → render → bulk fan-out to
          distribution.<channel>.commands, a receipt per event, dead letters for what can never
          be processed; held versions released by the embargo clock through the releases topic
          (co-partitioned, so the owner of an article's state handles its release).
alerts    alerts.cap (group = app id + "-alerts", so an emergency never queues behind articles)
          → CAP plan → the emergency lane or loudspeaker commands.
state     streams.article.state, a compacted topic restored per owned partition.

The three intake topics share one partition count: the worker refuses to start (exit 78, naming
``lantoa topics grow streams N``) when the cluster's counts disagree with configuration, and
forwards a revision found in a partition its key no longer hashes to (infra/kafka/grow.py).

How a record becomes durable and why the loops are ours, not Faust agents: streams/processor.py
(its processes run on the one consumer loop, infra/kafka/loop.py).
Anything unexpected stops the process (exit 70) without committing: the supervisor (systemd,
Kubernetes, the test harness) restarts it and the record is replayed.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from datetime import UTC, datetime

from infra.kafka.clients import KafkaAccessError
from infra.kafka.compacted import CompactedView
from infra.kafka.grow import STREAMS_FAMILY, PartitionMismatch, check_counts, family_counts
from infra.kafka.loop import ConsumerLoop, Subscription
from infra.kafka.outbox import Outbox
from infra.kafka.payloads import PayloadWriter
from infra.kafka.reachable import EXIT_CONFIG, ensure_kafka, wait_for_kafka
from infra.kafka.registry_follower import RegistryFollower
from schemas.access import AccessList
from schemas.secrets import SecretFileError
from schemas.settings import Settings
from schemas.timeline import TimelineFetcher
from schemas.topics import Topic
from streams.processor import TopicHandlers
from streams.status.web import StatusService
from streams.steps import Clock, StreamSteps

log = logging.getLogger(__name__)


# Exit code of a worker that stopped itself on an unexpected error (sysexits EX_SOFTWARE).
EXIT_CRASH = 70


def crash(where: str, exc: BaseException) -> None:
    """Stop the process at once: nothing past the last commit is lost, it is replayed."""
    log.critical(
        "%s: unexpected %s, exiting so the event is replayed: %s",
        where,
        type(exc).__name__,
        exc,
        exc_info=exc,
    )
    logging.shutdown()
    os._exit(EXIT_CRASH)


def refused(exc: KafkaAccessError | PartitionMismatch | SecretFileError) -> None:
    """Stop at start: the cluster refuses this configuration, or its partition counts disagree
    with it (nothing consumed, no offset moved)."""
    log.critical("stream worker cannot start: %s", exc)
    logging.shutdown()
    os._exit(EXIT_CONFIG)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class StreamWorker:
    """The worker's parts; ``run(stop)`` until ``stop`` is set (or raises on anything unexpected)."""

    def __init__(self, settings: Settings, clock: Clock = _utc_now) -> None:
        counts = {
            t.value: settings.partitions(t)
            for t in (Topic.CMS_ARTICLES, Topic.EMBARGO_RELEASES, Topic.ARTICLE_STATE)
        }
        if len(set(counts.values())) != 1:
            raise ValueError(f"co-partitioned topics need the same partition count, got {counts}")
        self.settings = settings
        self.outbox = Outbox(settings.kafka, f"{settings.client_id}-streams")
        self.registry = RegistryFollower(settings.kafka, settings.topic(Topic.TARGETS), settings.client_id)
        self.state = CompactedView(settings.topic(Topic.ARTICLE_STATE))
        self.steps = StreamSteps(settings, self.state, lambda: self.registry.registry, clock)
        articles = settings.topic(Topic.CMS_ARTICLES)
        releases = settings.topic(Topic.EMBARGO_RELEASES)
        self.payloads = PayloadWriter(self.outbox, settings.topic(Topic.PAYLOADS))
        intake = TopicHandlers(
            settings,
            Subscription(
                "intake",
                (articles, releases),
                settings.app_id,
                tick_every_s=settings.embargo_check_interval_s,
            ),
            {articles: self.steps.article, releases: self.steps.release},
            state=self.state,
            state_topic_of=articles,
            ticker=self.steps.embargo_ticks,
            payloads=self.payloads,
        )
        alerts_topic = settings.topic(Topic.ALERTS_CAP)
        alerts = TopicHandlers(
            settings,
            Subscription("alerts", (alerts_topic,), f"{settings.app_id}-alerts", max_records=20),
            {alerts_topic: self.steps.alert},
            payloads=self.payloads,
        )
        self.intake = ConsumerLoop(settings, intake, self.outbox)
        self.alerts = ConsumerLoop(settings, alerts, self.outbox)

    async def check_partitions(self) -> None:
        """Refuse to start (PartitionMismatch, naming ``lantoa topics grow streams``) unless
        cms.articles, the embargo releases and the article state have the configured count: an
        article's state and release ticks go to the partition number its revisions come from.
        Runs before anything is consumed. Refuses as well without the shared payloads' topic (a
        fan-out that stores a payload there would fail at each national article)."""
        found = await family_counts(
            self.settings, STREAMS_FAMILY, f"{self.settings.client_id}-check", Topic.PAYLOADS
        )
        check_counts(self.settings, STREAMS_FAMILY, found)
        payloads = self.settings.topic(Topic.PAYLOADS)
        if payloads not in found:
            raise PartitionMismatch(
                f"stream worker refuses to start: {payloads} missing; run `lantoa topics apply` first"
            )

    async def run(self, stop: asyncio.Event) -> None:
        if not await wait_for_kafka(self.settings.kafka, stop, client_id=f"{self.settings.client_id}-probe"):
            return
        await self.check_partitions()
        await self.outbox.start()
        try:
            await self.registry.start()
            try:
                await asyncio.gather(self.intake.run(stop), self.alerts.run(stop))
            finally:
                await self.registry.stop()
        finally:
            await self.outbox.stop()


def run_worker(settings: Settings, loglevel: str = "info", timeline: TimelineFetcher | None = None) -> None:
    """Run the stream worker until SIGTERM/SIGINT (``lantoa worker``).

    ``timeline`` reads a loudspeaker zone's day for the status web's timeline page (the CLI hands
    in the platform's reader, consumers/loudspeaker/timeline.py).
    The status view (streams/status/web.py) serves LANTOA_WEB_PORT; with only
    LANTOA_METRICS_PORT set it runs without HTTP, for the emergency watch.
    """
    logging.getLogger().setLevel(loglevel.upper())
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.web_host)
    # Before the status views connect: a refused configuration is one clear line, not their crash.
    try:
        ensure_kafka(settings.kafka, client_id=f"{settings.client_id}-probe")
    except KafkaAccessError as exc:
        refused(exc)
    status = None
    if settings.web_port > 0 or settings.metrics_port:
        access = None
        if settings.web_port > 0 and settings.access_file is not None:
            try:  # who may read the status web: read (and checked) once, before it listens
                access = AccessList.load(settings.access_file)
            except SecretFileError as exc:
                refused(exc)
        status = StatusService(
            settings,
            serve_http=settings.web_port > 0,
            on_crash=lambda exc: crash("status view", exc),
            timeline=timeline,
            access=access,
        )
        status.start()

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await StreamWorker(settings).run(stop)

    try:
        asyncio.run(main())
    except (KafkaAccessError, PartitionMismatch) as exc:
        refused(exc)
    except Exception as exc:
        crash("stream worker", exc)
    finally:
        if status is not None:
            status.stop()
