"""The triage process (``lantoa triage``) and the reader of its table (``lantoa questions``).

One process, its own consumer group (``<prefix>lantoa-engagement``) on ``engagement.inbound``:

    start    read engagement.questions whole (compacted: the table survives restarts), the
             targets registry and the fanpage and Zalo ledgers (all partitions, no group)
    batch    on the one consumer loop (infra/kafka/loop.py): catch the ledgers up to their end
             (its tick; a comment can only exist after its post, so the post's live entry is in
             the ledger by then) → link and classify each event (streams/engagement/triage.py) → write
             the changed records → commit the offsets
    idle     follow the ledgers: a delivered reply (the live entry of urn:lantoa:question:<id>)
             closes its question; a failed one leaves it open with the reason

Records are written (acks=all) before offsets are committed; a crash replays the batch and the
records come out the same, so nothing is lost or doubled. The process is the only writer of
engagement.questions, so it holds the whole table in memory and writes a record only when it
changed. Citizen comments are few (hundreds a day for a province), so one process serves; a
second one in the same group would take partitions of engagement.inbound but both would follow
the ledgers, so run one (a restarted one resumes where the first stopped).

An inbound record that is not JSON or breaks schemas/json/engagement.v1.json becomes a dead letter
(origin and reason in headers) and the partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from infra.kafka import clients
from infra.kafka.loop import Batch, ConsumerLoop, Handled, Subscription
from infra.kafka.outbox import Outbox, OutRecord
from infra.kafka.registry_follower import RegistryFollower
from schemas import contracts, metrics
from schemas.article import parse_time
from schemas.codec import decode, encode
from schemas.deadletter import dead_letter_headers
from schemas.errors import InvalidContent
from schemas.headers import strip_internal
from schemas.settings import KafkaConnection, Settings
from schemas.topics import Channel, Topic
from streams.engagement import triage as eng

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class CompactedReader:
    """Reads every partition of some topics from the beginning (no group), then follows them."""

    def __init__(self, conn: KafkaConnection, topics: list[str], client_id: str) -> None:
        self.topics = topics
        self._consumer = clients.aio_consumer(
            conn, group_id=None, enable_auto_commit=False, client_id=client_id, auto_offset_reset="earliest"
        )
        self._tps: list[TopicPartition] = []

    async def start(self) -> None:
        consumer = self._consumer
        await consumer.start()
        for topic in self.topics:
            parts = await clients.partitions_of(consumer, topic)
            if not parts:
                raise RuntimeError(f"topic {topic!r} does not exist: run `lantoa topics apply`")
            self._tps += [TopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(self._tps)
        await consumer.seek_to_beginning(*self._tps)

    async def catch_up(self) -> list[tuple[str, int, str, Any]]:
        """Everything up to the current end: (topic, partition, key, decoded value or None)."""
        end = await self._consumer.end_offsets(self._tps)
        out: list[tuple[str, int, str, Any]] = []
        pending = {tp for tp in self._tps if await self._consumer.position(tp) < end[tp]}
        while pending:
            batch = await self._consumer.getmany(*pending, timeout_ms=500, max_records=10000)
            for tp, recs in batch.items():
                for rec in recs:
                    if rec.key is None:
                        continue
                    try:
                        value = decode(rec.value) if rec.value is not None else None
                    except InvalidContent:
                        log.error("unreadable record at %s[%d]@%d", tp.topic, tp.partition, rec.offset)
                        continue
                    out.append((tp.topic, tp.partition, rec.key.decode("utf-8", "replace"), value))
            pending = {tp for tp in pending if await self._consumer.position(tp) < end[tp]}
        return out

    async def stop(self) -> None:
        await self._consumer.stop()


class QuestionsTable:
    """The engagement table in memory (question id → record) and, apart, when each open question
    was asked, so the metrics cost the open questions, not the whole history."""

    def __init__(self, clock: Clock = time.time) -> None:
        self.records: dict[str, dict[str, Any]] = {}
        self.clock = clock
        self._open: dict[str, tuple[str, datetime]] = {}

    def put(self, record: dict[str, Any]) -> None:
        self.records[record["id"]] = record
        if record["state"] == "open":
            self._open[record["id"]] = (record["platform"], eng.parse_iso(record["asked_at"]))
        else:
            self._open.pop(record["id"], None)

    def remove(self, qid: str) -> None:
        self.records.pop(qid, None)
        self._open.pop(qid, None)

    def stats(self, platform: str | None = None) -> tuple[int, float]:
        """(open questions, age in seconds of the oldest), of one platform or all."""
        asked = [at for p, at in self._open.values() if platform is None or p == platform]
        if not asked:
            return 0, 0.0
        now = datetime.fromtimestamp(self.clock(), UTC)
        return len(asked), max(0.0, (now - min(asked)).total_seconds())

    def export_metrics(self) -> None:
        for platform in (Channel.FANPAGE.value, Channel.ZALO.value):
            count, age = self.stats(platform)
            metrics.OPEN_QUESTIONS.labels(platform).set(count)
            metrics.OLDEST_OPEN_QUESTION_AGE.labels(platform).set(age)


class Triage:
    """The triage process: see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = time.time,
        horizon_s: float = eng.DEFAULT_HORIZON_S,
        poll_timeout_ms: int = 500,
    ) -> None:
        self.settings, self.clock, self.horizon_s = settings, clock, horizon_s
        self.poll_timeout_ms = poll_timeout_ms
        self.inbound_topic = settings.topic(Topic.ENGAGEMENT_INBOUND)
        self.questions_topic = settings.topic(Topic.ENGAGEMENT_QUESTIONS)
        self.ledger_topics = {
            settings.topic(Topic.FANPAGE_LEDGER): Channel.FANPAGE,
            settings.topic(Topic.ZALO_LEDGER): Channel.ZALO,
        }
        self.group_id = f"{settings.topic_prefix}lantoa-engagement"
        self.table = QuestionsTable(clock)
        self.index = eng.LiveIndex()
        self.outbox = Outbox(settings.kafka, f"{settings.client_id}-engagement")
        self.registry = RegistryFollower(settings.kafka, settings.topic(Topic.TARGETS), settings.client_id)
        self._holders: dict[
            tuple[str, str], set[int]
        ] = {}  # (ledger topic, live key) → partitions holding it
        self.ledgers = CompactedReader(
            settings.kafka, list(self.ledger_topics), f"{settings.client_id}-engagement-ledger"
        )
        self.subscription = Subscription(
            "engagement",
            (self.inbound_topic,),
            self.group_id,
            max_records=500,
            poll_timeout_ms=poll_timeout_ms,
            tick_every_s=0.0,
        )
        self.loop = ConsumerLoop(settings, self, self.outbox, clock=clock)

    def now_iso(self) -> str:
        return eng.iso(datetime.fromtimestamp(self.clock(), UTC))

    # -- targets ------------------------------------------------------------------------------

    def _targets_with(self, channel: Channel, name: str, value: str) -> list[str]:
        found = [
            t.id
            for t in self.registry.registry.targets.values()
            if t.channel is channel and str(t.config.get(name, "")) == value
        ]
        return sorted(found)

    def pages(self, page_id: str) -> list[str]:
        return self._targets_with(Channel.FANPAGE, "page_id", page_id)

    def groups(self, group_id: str) -> list[str]:
        return self._targets_with(Channel.ZALO, "group_id", group_id)

    # -- steps --------------------------------------------------------------------------------

    def _put(self, record: dict[str, Any]) -> OutRecord:
        contracts.check("question", record)
        self.table.put(record)
        return OutRecord(self.questions_topic, record["id"].encode(), encode(record))

    async def follow_ledgers(self) -> list[OutRecord]:
        """Read the ledgers to their end; the records of questions whose answer changed."""
        out: list[OutRecord] = []
        for topic, partition, key, value in await self.ledgers.catch_up():
            # A key may live in two partitions for a while: ``lantoa topics grow`` copies a ledger
            # entry to its new partition, then tombstones it in the old one, and partitions are read
            # interleaved. A tombstone counts only once no partition holds the key any more.
            if key.startswith("live|"):  # only live entries say where a post is; the rest is not kept
                holders = self._holders.setdefault((topic, key), set())
                if value is None:
                    holders.discard(partition)
                    if holders:
                        continue
                    del self._holders[(topic, key)]
                else:
                    holders.add(partition)
            outcome = self.index.apply(self.ledger_topics[topic], key, value)
            if outcome is None:
                continue
            changed = eng.on_answer(self.table.records.get(outcome.question_id), outcome, self.now_iso())
            if changed is not None:
                if outcome.answer_id:
                    log.info(
                        "answered %s (answer %d, reply %s)",
                        outcome.question_id,
                        outcome.version,
                        outcome.answer_id,
                    )
                else:
                    log.warning(
                        "answer %d to %s failed: %s", outcome.version, outcome.question_id, outcome.reason
                    )
                out.append(self._put(changed))
        return out

    def take(
        self,
        tp: TopicPartition,
        offset: int,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
    ) -> list[OutRecord]:
        """One inbound record → the table records it changes (or a dead letter)."""
        try:
            event = decode(value)
            contracts.check("engagement", event)
            for name in ("received_at", "created_at"):  # the schema's date-time takes years 1..9999
                parse_time(event.get(name), name)
        except InvalidContent as exc:
            metrics.DEAD_LETTERS.labels("decode", metrics.reason_class(exc.reason)).inc()
            dl_headers = dead_letter_headers(
                strip_internal(headers),
                topic=tp.topic,
                partition=tp.partition,
                offset=offset,
                reason=exc.reason,
                stage="decode",
                now_iso=self.now_iso(),
                channel="engagement",
            )
            return [OutRecord(self.settings.topic(Topic.DEADLETTER), key or b"", value, tuple(dl_headers))]
        qid = eng.question_id(event["platform"], event["message_id"])
        existing = self.table.records.get(qid)
        resolution = None
        if existing is None and (event.get("kind") or "message") == "message":
            resolution = eng.resolve(
                event, self.index, pages=self.pages, groups=self.groups, horizon_s=self.horizon_s
            )
        changed = eng.on_inbound(existing, event, resolution, self.now_iso())
        if changed is None:
            return []
        if existing is None:
            log.info(
                "%s %s from %s: %s (article %s)",
                changed["state"],
                qid,
                changed["platform"],
                changed["signal"] or "no question",
                changed["article_uri"] or "not found",
            )
        return [self._put(changed)]

    # -- process ------------------------------------------------------------------------------

    async def load_table(self) -> None:
        reader = CompactedReader(
            self.settings.kafka, [self.questions_topic], f"{self.settings.client_id}-engagement-table"
        )
        await reader.start()
        try:
            for _, _, key, value in await reader.catch_up():
                if value is None:
                    self.table.remove(key)
                else:
                    self.table.put(value)
        finally:
            await reader.stop()
        log.info(
            "engagement table loaded: %d records, %d open", len(self.table.records), self.table.stats()[0]
        )

    # -- the Process of the consumer loop (infra/kafka/loop.py) ---------------------------------

    views: tuple[()] = ()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing restored per partition: the table is read whole at start (``load_table``)."""

    def revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing held per partition."""

    async def tick(self) -> list[OutRecord]:
        """Between fetches (every one: the ledgers are caught up before a batch is linked)."""
        out = await self.follow_ledgers()
        self.table.export_metrics()
        return out

    async def handle(self, batch: Batch) -> Handled:
        out: list[OutRecord] = []
        for tp, recs in batch.items():
            for rec in recs:
                out += self.take(tp, rec.offset, rec.key, rec.value, list(rec.headers or []))
        return Handled(out=out)

    async def run(self, stop: asyncio.Event) -> None:
        await self.outbox.start()
        await self.registry.start()
        await self.ledgers.start()
        try:
            await self.load_table()
            self.table.export_metrics()
            await self.outbox.send_all(await self.follow_ledgers())
            await self.loop.run(stop)
        finally:
            await self.ledgers.stop()
            await self.registry.stop()
            await self.outbox.stop()


def run_triage(settings: Settings) -> None:
    """``lantoa triage``: run until SIGTERM/SIGINT; exit 70 on anything unexpected (a restart
    replays what was not committed)."""
    import os
    import signal

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await Triage(settings).run(stop)

    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.web_host)
    try:
        asyncio.run(main())
    except Exception as exc:
        log.critical("engagement triage stopped on %s: %s", type(exc).__name__, exc, exc_info=exc)
        logging.shutdown()
        os._exit(70)


def read_table(settings: Settings, timeout_s: float = 30.0) -> dict[str, dict[str, Any]]:
    """The whole engagement table as it is on the topic now (for the CLI; kafka-python, no group)."""
    from kafka import TopicPartition as KTopicPartition

    topic = settings.topic(Topic.ENGAGEMENT_QUESTIONS)
    consumer = clients.consumer(
        settings.kafka, group_id=None, enable_auto_commit=False, client_id=f"{settings.client_id}-questions"
    )
    try:
        parts = consumer.partitions_for_topic(topic)
        if not parts:
            raise RuntimeError(f"topic {topic!r} does not exist: run `lantoa topics apply`")
        tps = [KTopicPartition(topic, p) for p in sorted(parts)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        table: dict[str, dict[str, Any]] = {}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} to its end within {timeout_s:.0f}s")
            for recs in consumer.poll(timeout_ms=500, max_records=10000).values():
                for rec in recs:
                    if rec.key is None:
                        continue
                    key = rec.key.decode("utf-8", "replace")
                    if rec.value is None:
                        table.pop(key, None)
                    else:
                        table[key] = decode(rec.value)
        return table
    finally:
        consumer.close()
