"""The Faust stream app: topics, the article-state table and the agents, declared in one place.

intake agent   cms.articles → decode/validate/NFC → order by (uri, version) → policy → route →
               render → bulk fan-out to distribution.<channel>.commands, a receipt per event,
               dead letters for what can never be processed.
release agent  streams.embargo.releases → publishes held versions whose embargo has passed.
embargo clock  a timer that scans the local table partitions and emits release ticks.

Ordering of effects per event (at-least-once): commands and receipt are acknowledged by Kafka,
then the table is updated, then Faust commits the offset. A crash anywhere replays the event;
the adapters' ledgers make replayed commands harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import faust

from schemas import metrics
from schemas.codec import decode, encode, headers_to_dict
from schemas.deadletter import dead_letter_headers
from schemas.errors import InvalidContent
from schemas.models import Receipt, utc_now_iso
from schemas.settings import Settings
from schemas.topics import Topic
from infra.kafka.outbox import Outbox, OutRecord
from streams.fanout import command_records, plan, receipt_record
from streams.intake import CE_TYPES, ArticleEvent, parse_article_event
from streams.policy import decide, due_for_release, publish_now
from streams.registry_follower import RegistryFollower

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# Exit code of a worker that stopped itself on an unexpected error (sysexits EX_SOFTWARE).
EXIT_CRASH = 70


def crash(where: str, exc: BaseException) -> None:
    """Stop the process at once, without letting Faust ack the event in hand.

    Faust acks (and later commits) the event an agent crashed on, so a plain exception would
    lose it. Exiting from inside the agent body means the event is never acked: the restarted
    worker sees it again. Only InvalidContent is handled in place (dead letter); everything
    else lands here, and the supervisor (systemd, Kubernetes, the test harness) restarts us.
    """
    log.critical("%s: unexpected %s, exiting so the event is replayed: %s", where, type(exc).__name__, exc, exc_info=exc)
    logging.shutdown()
    os._exit(EXIT_CRASH)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class Runtime:
    """The app's connections, started lazily on first use by the agents (never at import)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.outbox = Outbox(settings.kafka_bootstrap, f"{settings.client_id}-streams")
        self.registry = RegistryFollower(settings.kafka_bootstrap, settings.topic(Topic.TARGETS), settings.client_id)
        self._lock = asyncio.Lock()
        self._started = False

    async def ready(self) -> None:
        if self._started:
            return
        async with self._lock:
            if not self._started:
                await self.outbox.start()
                await self.registry.start()
                self._started = True

    async def stop(self) -> None:
        await self.registry.stop()
        await self.outbox.stop()
        self._started = False


class LantoaApp(faust.App):
    """faust.App that also closes the Runtime's producer and registry reader on shutdown."""

    runtime: Runtime

    async def on_shutdown(self) -> None:
        # After the agents have stopped (on_stop runs before them, and an agent still in an
        # event would find its producer gone and crash the worker on a clean shutdown).
        await super().on_shutdown()
        await self.runtime.stop()


def _raw_headers(message: Any) -> list[tuple[str, bytes]]:
    headers = message.headers or []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items]


def create_app(settings: Settings, clock: Clock = _utc_now) -> LantoaApp:
    """Build the stream app. Nothing connects until the worker starts."""
    partitions = settings.partitions(Topic.CMS_ARTICLES)
    app = LantoaApp(
        settings.app_id,
        broker=[f"kafka://{hp}" for hp in settings.kafka_bootstrap.split(",")],
        store="memory://",
        autodiscover=False,
        topic_partitions=partitions,
        topic_replication_factor=settings.replication_factor,
        topic_disable_leader=True,
        topic_allow_declare=True,
        processing_guarantee="at_least_once",
        consumer_auto_offset_reset="earliest",
        broker_commit_every=100,
        broker_commit_interval=1.0,
        producer_acks=-1,
        web_enabled=settings.web_port > 0,
        web_bind=settings.web_host,
        web_port=max(settings.web_port, 1),
        web_host=settings.web_host,
        datadir=str(settings.data_dir / "faust"),
    )
    runtime = Runtime(settings)
    app.runtime = runtime

    def raw_topic(name: str, count: int) -> Any:
        return app.topic(name, partitions=count, internal=False, key_type=bytes, value_type=bytes,
                         key_serializer="raw", value_serializer="raw")

    articles_topic = raw_topic(settings.topic(Topic.CMS_ARTICLES), partitions)
    releases_name = settings.topic(Topic.EMBARGO_RELEASES)
    releases_topic = raw_topic(releases_name, partitions)
    state = app.Table("article-state", default=None, partitions=partitions, key_type=str)
    deadletter_topic = settings.topic(Topic.DEADLETTER)

    def dead_letter(message: Any, reason: str, stage: str, key_text: str | None, now_iso: str) -> list[OutRecord]:
        headers = dead_letter_headers(
            _raw_headers(message), topic=message.topic, partition=message.partition, offset=message.offset,
            reason=reason, stage=stage, now_iso=now_iso,
        )
        out = [OutRecord(deadletter_topic, message.key or b"", message.value or b"", tuple(headers))]
        if key_text:
            receipt = Receipt(uri=key_text, stage="intake", outcome="dead_lettered", at=now_iso, reason=reason)
            out.append(receipt_record(receipt, settings))
        metrics.DEAD_LETTERS.labels(stage, metrics.reason_class(reason)).inc()
        return out

    async def carry_out(ev: ArticleEvent, st: dict[str, Any] | None, now: datetime, decision_fn: Any) -> None:
        started = time.perf_counter()
        now_iso = utc_now_iso(now)
        decision = decision_fn()
        commands, receipt = plan(decision, ev, runtime.registry.registry, settings, now_iso)
        records = command_records(commands, settings)
        records.append(receipt_record(receipt, settings))
        await runtime.outbox.send_all(records)
        if decision.new_state is not None:
            state[ev.uri] = decision.new_state
        for cmd in commands:
            metrics.COMMANDS.labels(cmd.channel.value, cmd.key.action.value).inc()
        metrics.EVENTS.labels(ev.ce.type, receipt.outcome).inc()
        if commands:
            metrics.FANOUT_SECONDS.observe(time.perf_counter() - started)
            log.info("%s v%s: %s, %d commands %s", ev.uri, ev.version, receipt.outcome, len(commands), receipt.counts)
        else:
            log.info("%s v%s: %s (%s)", ev.uri, ev.version, receipt.outcome, decision.reason)

    @app.agent(articles_topic, name="intake")
    async def intake(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                await take(event.message)
            except Exception as exc:  # noqa: BLE001 - see crash(): anything unexpected stops the worker
                crash("intake", exc)

    async def take(message: Any) -> None:
        await runtime.ready()
        now = clock()
        headers = headers_to_dict(_raw_headers(message))
        key_text = message.key.decode("utf-8", "replace") if message.key else None
        try:
            ev = parse_article_event(message.key, message.value, headers)
            st = state.get(ev.uri)
            held_json = {"key": ev.uri, "value": (message.value or b"").decode("utf-8"), "headers": headers}
            await carry_out(ev, st, now, lambda: decide(st, ev, now, held_json))
        except InvalidContent as exc:
            stage = "route" if "place" in exc.reason else "validate"
            log.warning("dead letter %s[%s]@%s: %s", message.topic, message.partition, message.offset, exc.reason)
            ce_type = headers.get("ce_type", "")
            metrics.EVENTS.labels(ce_type if ce_type in CE_TYPES else "unknown", "dead_lettered").inc()
            await runtime.outbox.send_all(dead_letter(message, exc.reason, stage, key_text, utc_now_iso(now)))

    @app.agent(releases_topic, name="embargo-release")
    async def release(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                await take_release(event.message)
            except Exception as exc:  # noqa: BLE001 - see crash()
                crash("embargo-release", exc)

    async def take_release(message: Any) -> None:
        await runtime.ready()
        now = clock()
        try:
            tick = decode(message.value)
            uri, version = str(tick["uri"]), int(tick["version"])
        except (InvalidContent, KeyError, TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, InvalidContent) else f"bad release tick: {exc!r}"
            await runtime.outbox.send_all(dead_letter(message, reason, "release", None, utc_now_iso(now)))
            return
        st = state.get(uri)
        if due_for_release(st, now) != version:
            return  # already released, cancelled or superseded: ticks are idempotent
        assert st is not None
        held = st["held"]["event"]
        ev = parse_article_event(held["key"].encode(), held["value"].encode(), held["headers"])
        await runtime.outbox.send_all([receipt_record(Receipt(
            uri=uri, stage="policy", outcome="released", at=utc_now_iso(now), version=version, event_id=ev.ce.id,
        ), settings)])
        await carry_out(ev, st, now, lambda: publish_now(st, ev))

    alerts_topic = raw_topic(settings.topic(Topic.ALERTS_CAP), settings.partitions(Topic.ALERTS_CAP))

    @app.agent(alerts_topic, name="alerts")
    async def alerts(stream: faust.StreamT[bytes]) -> None:
        async for event in stream.events():
            try:
                await take_alert(event.message)
            except Exception as exc:  # noqa: BLE001 - see crash()
                crash("alerts", exc)

    async def take_alert(message: Any) -> None:
        from schemas.cap import parse_cap
        from streams.alert_lane import plan_records
        from streams.alerts import plan_alert

        await runtime.ready()
        now = clock()
        headers = headers_to_dict(_raw_headers(message))
        key_text = message.key.decode("utf-8", "replace") if message.key else None
        try:
            alert = parse_cap(message.value or b"")
            plan = plan_alert(alert, runtime.registry.registry)
            records, receipt = plan_records(alert, plan, settings, now, headers.get("ce_time"), headers.get("ce_id"))
        except InvalidContent as exc:
            log.warning("alert dead-lettered %s[%s]@%s: %s", message.topic, message.partition, message.offset, exc.reason)
            await runtime.outbox.send_all(dead_letter(message, exc.reason, "alert", key_text, utc_now_iso(now)))
            return
        await runtime.outbox.send_all([*records, receipt_record(receipt, settings)])
        metrics.EVENTS.labels(f"alert.{plan.lane}", "routed").inc()
        log.info("CAP %s (%s, %s): %s lane, %d zones", plan.identifier, plan.status.value, plan.msg_type.value,
                 plan.lane, len(plan.zones))

    ticked: dict[tuple[str, int], float] = {}

    @app.timer(settings.embargo_check_interval_s, name="embargo-clock")  # type: ignore[untyped-decorator]
    async def embargo_clock() -> None:
        try:
            await tick_embargoes()
        except Exception as exc:  # noqa: BLE001 - see crash()
            crash("embargo-clock", exc)

    async def tick_embargoes() -> None:
        await runtime.ready()
        now, mono = clock(), time.monotonic()
        due: list[OutRecord] = []
        for uri, st in list(state.items()):
            version = due_for_release(st, now)
            if version is None or mono - ticked.get((uri, version), -1e9) < 30.0:
                continue
            ticked[(uri, version)] = mono
            due.append(OutRecord(releases_name, uri.encode(), encode({"uri": uri, "version": version})))
        await runtime.outbox.send_all(due)

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run the stream app until SIGTERM/SIGINT (``lantoa worker``).

    The status view (streams/status_web.py) serves LANTOA_WEB_PORT instead of Faust's web server;
    with only LANTOA_METRICS_PORT set it runs without HTTP, for the emergency watch.
    """
    from dataclasses import replace

    from faust.worker import Worker

    from streams.status_web import StatusService

    (settings.data_dir / "faust").mkdir(parents=True, exist_ok=True)
    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.web_host)
    status = None
    if settings.web_port > 0 or settings.metrics_port:
        status = StatusService(settings, serve_http=settings.web_port > 0, on_crash=lambda exc: crash("status view", exc))
        status.start()
    app = create_app(replace(settings, web_port=0))
    try:
        Worker(app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        if status is not None:
            status.stop()
