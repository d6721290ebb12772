"""The one consumer loop of Lantoa: every process that consumes a topic runs it.

A process implements ``Process`` (what to subscribe to, the state views it restores per partition,
``handle(batch) -> Handled``, an optional ``tick``); ``ConsumerLoop.run`` does, per fetch:

    1. wait until the process's state views are restored (a decision on a missing state would be a
       publish, a resend): aiokafka fetches a newly assigned partition before its restore returns
    2. the poison markers: before the first batch of a newly assigned partition, an "attempt at the
       committed offset" marker (acked, distribution.poison); a partition whose committed offset
       already has one is handled one record at a time, a marker before each, until past it
    3. handle: one record at a time (``batch_at_once=False``: outputs gathered, flushed every
       ``flush_bytes``), or the whole fetch in one call (the delivery runtime's batch intents)
    4. the dead-letter limit: over it, stop (raise) before anything of the batch is sent
    5. send the outputs (acks=all), then the state changes (acks=all)
    6. commit the offsets, last; then remove the poison entries the commit moved past

What each kind of error does to the offset:

    InvalidContent (bad input)   the process turns it into a dead letter with the reason; the
                                 offset is committed with the batch (stage decode: never counted
                                 by the dead-letter limit, so hostile input cannot stop anything)
    TransientDeliveryError,      handled inside the delivery runtime (retried in process, parked
    TargetPaused                 in a retry tier, the partition paused with ``pause_until``): the
                                 offset is committed once the retry record is acknowledged
    PermanentDeliveryError       a dead letter (stage deliver), committed; counted by the limit
    PartitionNotHeld             revoked while in hand: nothing committed for that partition from
                                 that record on; fetched again from there if it is still ours
    anything unexpected          the poison policy: retried in process up to
                                 LANTOA_POISON_MAX_ATTEMPTS (jittered backoff, the views reloaded
                                 from Kafka first), each retry counted in distribution.poison
                                 before it starts; at the limit a dead letter (stage poison, the
                                 exception type, message and a traceback digest), committed. A
                                 batch handler's failure is isolated by handling the batch again
                                 one record at a time. A process killed by a record (os._exit,
                                 OOM) is recognised by the markers of step 2 after its restarts.
    the dead-letter limit        DeadLetterLimitExceeded: nothing of that batch sent or committed;
                                 the process exits (70) with one critical line saying what to check
    Kafka refuses a send,        raised out of ``run``: nothing committed past the last acknowledged
    or any KafkaError            batch, the process exits (70) and its restart replays
    CommitFailed (rebalance)     logged: the outputs are durable, the partition's new owner replays
                                 from the last commit (the ledgers make the duplicates harmless)

A group-less loop (``group_id=None``: the status follower) assigns every partition of its topics,
reads them from the beginning, follows new partitions, commits nothing and keeps no poison counts
(a restart reads everything again); its poison records get the in-process retries only.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError

from infra.kafka import clients
from infra.kafka.compacted import CompactedView, PartitionNotHeld, Rebalance
from infra.kafka.outbox import Outbox, OutRecord
from infra.kafka.poison import (
    DeadLetterLimit,
    DeadLetterLimitExceeded,
    Failure,
    PoisonLog,
    Reader,
    topic_reader,
)
from schemas import metrics
from schemas.deadletter import dead_letter_headers
from schemas.models import utc_now_iso
from schemas.settings import Settings
from schemas.topics import Topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class InRecord:
    """One consumed record as every process sees it: typed at the loop's edge (aiokafka's
    ConsumerRecord carries more, and its headers as a list or None)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp_ms: int | None = None

    @classmethod
    def of(cls, rec: Any) -> InRecord:
        return cls(
            rec.topic,
            rec.partition,
            rec.offset,
            rec.key,
            rec.value,
            tuple((str(k), bytes(v or b"")) for k, v in (rec.headers or ())),
            getattr(rec, "timestamp", None),
        )


Batch = Mapping[TopicPartition, Sequence[InRecord]]
# Dead letters the limit counts: the poison policy's and a platform's final refusals. Contract
# refusals of input (decode) are not counted: a hostile producer must not stop a process.
LIMITED_STAGES = (b"poison", b"deliver")
BACKOFF_BASE_S, BACKOFF_CAP_S = 0.1, 2.0
# Errors that are never a record's fault: they leave the loop as they are.
PASS_THROUGH = (PartitionNotHeld, KafkaError, DeadLetterLimitExceeded)


@dataclass(frozen=True)
class Subscription:
    """What a process consumes and how (frozen; built once at start)."""

    name: str  # in logs, the client id and the ``process`` label of lantoa_poison_records_total
    topics: tuple[str, ...]
    group_id: str | None  # None: every partition, from the beginning, nothing committed
    max_records: int = 200
    poll_timeout_ms: int = 200
    batch_at_once: bool = False
    flush_bytes: int = 8 * 1024 * 1024  # 0: send and commit after every record
    tick_every_s: float | None = None  # ``Process.tick`` between fetches, at most this often
    metadata_refresh_s: float = 30.0  # group-less: how often new partitions are looked for


@dataclass
class Handled:
    """What handling records produced: ``out`` acknowledged first, then ``state``, then ``commit``
    (next offsets) is committed; ``durable`` callbacks run once both sends were acknowledged."""

    out: list[OutRecord] = field(default_factory=list)
    state: list[OutRecord] = field(default_factory=list)
    commit: dict[TopicPartition, int] = field(default_factory=dict)
    durable: list[Callable[[], None]] = field(default_factory=list)
    records: int = 0  # input records handled (the dead-letter limit's denominator; set by the loop)

    def add(self, other: Handled) -> None:
        self.out += other.out
        self.state += other.state
        self.commit.update(other.commit)
        self.durable += other.durable
        self.records += other.records

    def size(self) -> int:
        return sum(len(r.value or b"") for r in self.out) + sum(len(r.value or b"") for r in self.state)


class Process(Protocol):
    """What a process gives the loop. ``handle`` may raise InvalidContent only if it wants the
    loop's poison policy for it (processes turn it into their own dead letters), PartitionNotHeld
    when a view partition went away, KafkaError when a send of its own failed; anything else is a
    poison candidate. ``views`` are waited on before ``handle`` and reloaded before a retry."""

    subscription: Subscription

    @property
    def views(self) -> Sequence[CompactedView]: ...

    async def assigned(self, assigned: set[TopicPartition]) -> None: ...

    def revoked(self, revoked: set[TopicPartition]) -> None: ...

    async def handle(self, batch: Batch) -> Handled: ...

    async def tick(self) -> list[OutRecord]: ...


class ConsumerLoop:
    """Runs one Process until ``stop`` is set; see the module docstring for the steps and errors.

    ``consumer`` (tests): an in-memory stand-in, already started; ``poison_reader`` (tests): what
    the poison topic holds. ``clock``/``sleep``/``rng`` drive the pauses and the retry backoff.
    """

    def __init__(
        self,
        settings: Settings,
        process: Process,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        consumer: Any | None = None,
        poison_reader: Reader | None = None,
        on_caught_up: Callable[[], None] | None = None,
    ) -> None:
        self.settings, self.process, self.outbox = settings, process, outbox
        self.sub = process.subscription
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.max_attempts = settings.poison_max_attempts
        self.deadletter_topic = settings.topic(Topic.DEADLETTER)
        poison_topic = settings.topic(Topic.POISON)
        reader = poison_reader or topic_reader(
            settings.kafka,
            poison_topic,
            settings.partitions(Topic.POISON),
            f"{settings.client_id}-{self.sub.name}-poison",
        )
        self.poison = PoisonLog(poison_topic, self.sub.group_id or self.sub.name, reader)
        self.limit = DeadLetterLimit(
            settings.dlq_limit_share, settings.dlq_limit_min_records, settings.dlq_limit_window_s, clock
        )
        self.on_caught_up = on_caught_up
        self._consumer = consumer
        self._paused_until: dict[TopicPartition, float] = {}
        self._fresh: set[TopicPartition] = set()  # assigned, no batch handled since
        self._careful: dict[TopicPartition, int] = {}  # one record at a time, up to this offset
        self._sought: set[TopicPartition] = set()  # the process left the rest of the fetch
        self._pending = Handled()
        self._pending_bytes = 0  # of ``_pending``'s records, kept as they come (not summed again)
        self._tombstones: list[OutRecord] = []  # sent with the next outputs
        self._poison_read = asyncio.Event()  # cleared while an assignment reads the poison topic
        self._poison_read.set()
        self._ends: dict[TopicPartition, int] = {}  # group-less: what the topics held when assigned
        self._caught_up = False
        for topic in self.sub.topics:
            metrics.POISON_RECORDS.labels(self.sub.name, topic)  # the first one is an increase

    # -- helpers for the process (the runtime's retry tiers) --------------------------------------

    def assignment(self) -> set[TopicPartition]:
        return set(self._consumer.assignment()) if self._consumer is not None else set()

    def seek(self, tp: TopicPartition, offset: int) -> None:
        """Fetch ``tp`` again from ``offset`` (if still ours); the rest of this fetch of ``tp`` is
        not handled and nothing past ``offset`` is committed for it."""
        self._sought.add(tp)
        if self._consumer is not None and tp in self.assignment():
            self._consumer.seek(tp, offset)

    def pause_until(self, tp: TopicPartition, at: float) -> None:
        """No fetch of ``tp`` until ``clock() >= at`` (then resumed before a fetch)."""
        assert self._consumer is not None
        self._consumer.pause(tp)
        self._paused_until[tp] = at

    def _resume_due(self) -> None:
        now = self.clock()
        due = [tp for tp, at in self._paused_until.items() if at <= now]
        for tp in due:
            del self._paused_until[tp]
        if due and self._consumer is not None:
            self._consumer.resume(*due)

    # -- rebalance ----------------------------------------------------------------------------

    def revoked(self, revoked: set[TopicPartition]) -> None:
        for tp in revoked:
            self._paused_until.pop(tp, None)
            self._careful.pop(tp, None)
            self._fresh.discard(tp)
        self.process.revoked(revoked)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("%s: assigned %s", self.sub.name, sorted((tp.topic, tp.partition) for tp in assigned))
        # aiokafka fetches the new partitions while this runs: ``take`` waits for the poison counts.
        self._fresh |= set(assigned)
        self._poison_read.clear()
        try:
            await self.poison.reload()  # what a dead owner of these partitions recorded
        finally:
            self._poison_read.set()
        await self.process.assigned(assigned)

    # -- the loop -------------------------------------------------------------------------------

    def _new_consumer(self) -> AIOKafkaConsumer:
        s, sub = self.settings, self.sub
        if sub.group_id is None:
            return clients.aio_consumer(
                s.kafka,
                group_id=None,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                client_id=f"{s.client_id}-{sub.name}",
            )
        timeout_ms = s.consumer_session_timeout_ms
        return clients.aio_consumer(
            s.kafka,
            group_id=sub.group_id,
            client_id=f"{s.client_id}-{sub.name}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=sub.max_records,
            session_timeout_ms=timeout_ms,
            heartbeat_interval_ms=max(1000, timeout_ms // 4),
            max_poll_interval_ms=600000,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set. Raises what the module docstring says leaves the loop
        (a Kafka error, the dead-letter limit): nothing past the last commit is lost then."""
        own = self._consumer is None
        consumer = self._consumer if self._consumer is not None else self._new_consumer()
        self._consumer = consumer
        if own:
            await consumer.start()
        sub = self.sub
        if sub.group_id is not None:
            consumer.subscribe(list(sub.topics), listener=Rebalance(self))
        log.info(
            "%s: consuming %s (%s)",
            sub.name,
            ", ".join(sub.topics),
            f"group {sub.group_id}" if sub.group_id else "every partition, no group",
        )
        next_tick, next_refresh = time.monotonic(), 0.0
        try:
            while not stop.is_set():
                if sub.group_id is None:
                    if time.monotonic() >= next_refresh:
                        next_refresh = time.monotonic() + await self._follow_partitions()
                    if not self.assignment():
                        try:
                            await asyncio.wait_for(stop.wait(), timeout=1.0)
                        except TimeoutError:
                            pass
                        continue
                self._resume_due()
                wait_ms = sub.poll_timeout_ms
                if sub.tick_every_s:
                    wait_ms = int(min(wait_ms, sub.tick_every_s * 1000))
                fetched = await consumer.getmany(timeout_ms=wait_ms, max_records=sub.max_records)
                batch = {tp: [InRecord.of(r) for r in recs] for tp, recs in fetched.items()}
                if sub.tick_every_s is not None and time.monotonic() >= next_tick:
                    next_tick = time.monotonic() + sub.tick_every_s
                    ticked = await self.process.tick()
                    if ticked:
                        await self.outbox.send_all(ticked)
                if batch:
                    await self.take(batch)
                if sub.group_id is None and not self._caught_up:
                    await self._check_caught_up()
        finally:
            if own:
                self._consumer = None
                await consumer.stop()

    async def take(self, batch: Batch) -> None:
        """One fetch through steps 1-6 of the module docstring."""
        await self._poison_read.wait()
        for view in self.process.views:
            await view.restored.wait()
        owned = self.assignment()
        # A partition revoked since the fetch: its next owner starts from the last commit.
        fetched = {tp: list(recs) for tp, recs in batch.items() if recs and tp in owned}
        if not fetched:
            return
        self._sought.clear()
        await self._mark_fresh(fetched)
        careful = {tp: recs for tp, recs in fetched.items() if tp in self._careful}
        normal = {tp: recs for tp, recs in fetched.items() if tp not in self._careful}
        if normal and self.sub.batch_at_once:
            await self._whole(normal)
        elif normal:
            await self._records(normal)
        if careful:
            await self._records(careful)

    async def _whole(self, batch: dict[TopicPartition, list[Any]]) -> None:
        try:
            handled = await self.process.handle(batch)
        except PartitionNotHeld as exc:
            log.info("%s: %s; the batch is fetched again if still ours", self.sub.name, exc)
            for tp, recs in batch.items():
                self.seek(tp, recs[0].offset)
            return
        except PASS_THROUGH:
            raise
        except Exception as exc:
            log.warning(
                "%s: a batch of %d records failed (%s: %s); handling it again one record at a time",
                self.sub.name,
                sum(len(r) for r in batch.values()),
                type(exc).__name__,
                exc,
            )
            await self._reload_views()
            self._sought.clear()
            await self._records(batch)
            return
        handled.records = sum(len(r) for r in batch.values())
        await self._flush(handled)

    async def _records(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """One record at a time (per-record processes, careful partitions, an isolated batch)."""
        self._pending, self._pending_bytes = Handled(), 0
        for tp, recs in batch.items():
            for rec in recs:
                careful = tp in self._careful and rec.offset <= self._careful[tp]
                if careful:
                    await self._flush_pending()  # what came before is committed first
                try:
                    handled = await self._one(tp, rec, careful)
                except PartitionNotHeld as exc:
                    log.info(
                        "%s: %s; %s[%d] from offset %d left for its owner",
                        self.sub.name,
                        exc,
                        tp.topic,
                        tp.partition,
                        rec.offset,
                    )
                    self.seek(tp, rec.offset)
                    break
                handled.records = 1
                left = tp in self._sought
                if not self.sub.batch_at_once and not left:
                    handled.commit[tp] = rec.offset + 1
                self._pending.add(handled)
                self._pending_bytes += handled.size()
                if careful:
                    consumed = handled.commit.get(tp, 0) > rec.offset
                    if not consumed:
                        # Not handled after all (a retry record not due yet): the marker is taken back.
                        await self.outbox.send_all(
                            [
                                self.poison.note(
                                    tp, rec.offset, self.poison.attempts(tp, rec.offset) - 1, self._now()
                                )
                            ]
                        )
                    await self._flush_pending()
                    if consumed and rec.offset >= self._careful.get(tp, -1):
                        self._careful.pop(tp, None)
                        log.info(
                            "%s: %s[%d] past offset %d: whole batches again",
                            self.sub.name,
                            tp.topic,
                            tp.partition,
                            rec.offset,
                        )
                elif self._pending_bytes >= self.sub.flush_bytes:
                    await self._flush_pending()
                if left:
                    break
        await self._flush_pending()

    async def _one(self, tp: TopicPartition, rec: InRecord, careful: bool) -> Handled:
        """Handle one record under the poison policy (see the module docstring)."""
        grouped = self.sub.group_id is not None
        attempts = self.poison.attempts(tp, rec.offset) if grouped else 0
        failure: Failure | None = None
        while True:
            if attempts >= self.max_attempts:
                return self._poisoned(tp, rec, attempts, failure)
            attempts += 1
            if grouped and (careful or failure is not None):
                # Durable before the attempt: a process killed by it leaves the count behind.
                await self.outbox.send_all(
                    [self.poison.note(tp, rec.offset, attempts, self._now(), failure=failure)]
                )
            try:
                return await self.process.handle({tp: [rec]})
            except PASS_THROUGH:
                raise
            except Exception as exc:
                failure = Failure.of(exc)
                log.warning(
                    "%s: %s[%d]@%d failed (attempt %d of %d): %s: %s",
                    self.sub.name,
                    tp.topic,
                    tp.partition,
                    rec.offset,
                    attempts,
                    self.max_attempts,
                    failure.error_class,
                    failure.reason,
                )
                await self._flush_pending()  # the records before it are committed, the views reloaded
                await self._reload_views()
                if attempts < self.max_attempts:
                    await self.sleep(
                        min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempts - 1)) * (0.5 + self.rng() / 2)
                    )

    def _poisoned(self, tp: TopicPartition, rec: InRecord, attempts: int, failure: Failure | None) -> Handled:
        entry = self.poison.entry(tp, rec.offset) or {}
        if failure is None:  # it killed the process: what a previous attempt recorded, if anything
            error_class = entry.get("error_class") or "ProcessKilled"
            reason = entry.get("reason") or f"the process stopped {attempts} times while handling this record"
            failure = Failure(error_class, reason, entry.get("traceback_sha256") or "", "")
        log.error(
            "%s: %s[%d]@%d is a poison record after %d attempts (%s: %s): dead-lettered, the partition moves on",
            self.sub.name,
            tp.topic,
            tp.partition,
            rec.offset,
            attempts,
            failure.error_class,
            failure.reason,
        )
        metrics.POISON_RECORDS.labels(self.sub.name, tp.topic).inc()
        metrics.DEAD_LETTERS.labels("poison", metrics.reason_class(failure.reason)).inc()
        headers = dead_letter_headers(
            list(rec.headers or []),
            topic=tp.topic,
            partition=tp.partition,
            offset=rec.offset,
            reason=f"{failure.error_class}: {failure.reason} (after {attempts} attempts)",
            stage="poison",
            now_iso=self._now(),
            error_class=failure.error_class,
            channel=self.sub.name,
            traceback_sha256=failure.traceback_sha256 or None,
            traceback_last=failure.last_frame or None,
        )
        return Handled(out=[OutRecord(self.deadletter_topic, rec.key or b"", rec.value, tuple(headers))])

    # -- steps 2 and 4-6 --------------------------------------------------------------------------

    async def _mark_fresh(self, batch: dict[TopicPartition, list[Any]]) -> None:
        if self.sub.group_id is None:
            return
        notes = []
        for tp in [tp for tp in batch if tp in self._fresh]:
            self._fresh.discard(tp)
            first, last = batch[tp][0].offset, batch[tp][-1].offset
            until = self.poison.suspect_until(tp, first)
            if until is not None:
                log.warning(
                    "%s: %s[%d] was tried before from offset %d without getting past %d: one record at a "
                    "time until then",
                    self.sub.name,
                    tp.topic,
                    tp.partition,
                    first,
                    until,
                )
                self._careful[tp] = until
            else:
                notes.append(self.poison.note(tp, first, 0, self._now(), span_end=last))
        if notes:  # one acknowledged round trip per assignment, before its first batch
            await self.outbox.send_all(notes)

    async def _flush_pending(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, Handled(), 0
        await self._flush(pending)

    async def _flush(self, handled: Handled) -> None:
        dead = [
            r
            for r in handled.out
            if r.topic == self.deadletter_topic and dict(r.headers).get("dlq_stage") in LIMITED_STAGES
        ]
        if handled.records and self.limit.count(handled.records, len(dead)):
            topics = sorted({dict(r.headers).get("dlq_topic", b"?").decode() for r in dead})
            raise DeadLetterLimitExceeded(
                f"{self.sub.name}: {self.limit.dead} of {self.limit.seen} records dead-lettered within "
                f"{self.settings.dlq_limit_window_s:.0f}s (limit: more than {self.settings.dlq_limit_share:.0%} once "
                f"{self.settings.dlq_limit_min_records} were seen), last from {', '.join(topics)}; stopping without "
                f"committing this batch. Check the last deploy and `lantoa deadletters list --stage poison` "
                f"(dlq_error_class, dlq_traceback_last), or a revoked platform permission (--stage deliver)"
            )
        # Tombstones of poison entries earlier commits moved past ride along (no round trip of their
        # own): one lost in a crash leaves an entry below the committed offset, which is ignored.
        out, self._tombstones = [*self._tombstones, *handled.out], []
        if out:
            await self.outbox.send_all(out)
        if handled.state:
            await self.outbox.send_all(handled.state)
        for done in handled.durable:
            done()
        await self._commit(handled.commit)

    async def _commit(self, positions: dict[TopicPartition, int]) -> None:
        if self.sub.group_id is None or self._consumer is None:
            return
        owned = self.assignment()
        offsets = {tp: off for tp, off in positions.items() if tp in owned}
        if not offsets:
            return
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            # A rebalance took the partitions while we worked: their new owner replays from the
            # last commit (duplicates the ledgers absorb), and our outputs are already durable.
            log.warning(
                "%s: commit of %s not taken (%s); the new owner replays them",
                self.sub.name,
                sorted((tp.topic, tp.partition, off) for tp, off in offsets.items()),
                exc,
            )
            return
        self._tombstones += [t for tp, off in offsets.items() for t in self.poison.clear_below(tp, off)]

    async def _reload_views(self) -> None:
        """Bring the views back to what Kafka holds (a failed attempt may have changed them)."""
        for view in self.process.views:
            owned = view.owned()
            view.drop(owned)
            await view.load(self.settings.kafka, owned, f"{self.settings.client_id}-{self.sub.name}")

    def _now(self) -> str:
        return utc_now_iso(datetime.fromtimestamp(self.clock(), UTC))

    # -- group-less: every partition --------------------------------------------------------------

    async def _follow_partitions(self) -> float:
        """Assign every partition of the topics (new ones: read everything again from the
        beginning, the process's fold being idempotent); seconds until the next look."""
        assert self._consumer is not None
        cluster = await clients.cluster_of(self._consumer)
        found: set[TopicPartition] = set()
        missing = []
        for topic in self.sub.topics:
            parts = cluster.partitions_for_topic(topic)
            if parts:
                found.update(TopicPartition(topic, p) for p in parts)
            else:
                missing.append(topic)
        if missing:
            log.warning("%s: topics not there yet: %s", self.sub.name, ", ".join(missing))
        if found - self.assignment():
            self._consumer.assign(sorted(found))
            await self._consumer.seek_to_beginning(*found)
            ends = await self._consumer.end_offsets(sorted(found))
            self._ends = {tp: off for tp, off in ends.items() if off}
            await self.process.assigned(found)
        return 2.0 if missing else self.sub.metadata_refresh_s

    async def _check_caught_up(self) -> None:
        assert self._consumer is not None
        positions = {tp: await self._consumer.position(tp) for tp in self._ends}
        if all(positions[tp] >= end for tp, end in self._ends.items()):
            self._caught_up = True
            if self.on_caught_up is not None:
                self.on_caught_up()
