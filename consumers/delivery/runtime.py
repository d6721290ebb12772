"""The delivery runtime shared by every channel adapter.

One consumer group per channel reads ``distribution.<channel>.commands`` and the channel's retry
tiers in batches. Per batch: commands are grouped by target; targets run concurrently, the
commands of one target strictly in order. Per command:

    ledger says done → acknowledge again (same receipt id), no effect
    target paused    → park it in a retry tier (no call), the partition goes on
    superseded       → a newer version (or a retraction) is already live there: skip, receipt
    intent/unknown   → reconcile with the platform first (find the effect by our marker)
    otherwise        → ledger intent (acknowledged) → effect → ledger done + live + receipt

The intents are not written one command at a time (one acks=all round trip before every effect
made a target's commands wait ~40 ms each): before the batch's effects start, every command that
will probably need one (no ledger entry yet, target not paused, not superseded, first time in the
batch) gets its intent in ONE acknowledged send. A command that then produces no effect after all
(its target got paused by an earlier command, a newer version went live earlier in the batch) has
that fresh intent removed again (a tombstone, sent with the batch's other records), so that a
replay does not reconcile for nothing. Everything else (a replayed failure, an intent/unknown entry
to reconcile first) keeps the one-command path: intent after the reconciliation, before the effect.
A crash anywhere leaves either no intent (no effect was attempted) or an intent (reconciled on
replay before any resend).

The batch runs on the one consumer loop (infra/kafka/loop.py): offsets are committed after the
batch's ledger entries, receipts, retries and dead letters are acknowledged by Kafka; a retry tier
not due yet is paused there (``pause_until``). Anything unexpected out of a batch is isolated by
the loop's poison policy (the batch again, one record at a time, the ledger reloaded first: its
intents make the replay reconcile); a Kafka send failure stops the worker without committing.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumers.delivery.base import ChannelAdapter, Effect, Prior
from consumers.delivery.errors import (
    OutcomeUnknown,
    PermanentDeliveryError,
    TargetPaused,
    TransientDeliveryError,
)
from consumers.delivery.ledger import Ledger, horizon_s
from consumers.delivery.limiter import TargetLimiter
from consumers.delivery.retry import RetryPolicy
from infra import heap
from infra.kafka.compacted import PartitionNotHeld
from infra.kafka.grow import channel_counts, check_counts
from infra.kafka.loop import Batch, ConsumerLoop, Handled, Subscription
from infra.kafka.outbox import Outbox, OutRecord
from infra.kafka.partitioning import partition_for
from infra.kafka.payloads import PayloadReader, PayloadRef
from schemas import contracts, metrics
from schemas.article import parse_time
from schemas.codec import decode, encode, headers_to_dict
from schemas.deadletter import dead_letter_headers
from schemas.errors import InvalidContent
from schemas.headers import (
    MAX_ATTEMPTS,
    MAX_RETRY_REASON_CHARS,
    RETRY_ATTEMPT,
    RETRY_DUE,
    RETRY_REASON,
    header_float,
    header_int,
)
from schemas.models import Action, Command, Outcome, Priority, Receipt, Stage, utc_now_iso
from schemas.settings import Settings
from schemas.text import bounded
from schemas.topics import Channel, Topic, command_key

log = logging.getLogger(__name__)

EXIT_CRASH = 70

# Commands larger than this are dead-lettered, not delivered: a post, a Zalo message or a
# loudspeaker script is a few kilobytes; the archive carries whole documents (its topic takes 4 MB).
MAX_COMMAND_BYTES = 1024 * 1024
MAX_COMMAND_BYTES_BY_CHANNEL = {Channel.ARCHIVE: 4 * 1024 * 1024}


def _phase(w: WorkItem) -> int:
    """0 for emergency commands (CAP alerts, their Updates and Cancels), 1 for the rest: a batch
    carries out its phase 0 on every target before phase 1. Commands of one article never change
    places (articles are never emergencies), nor do those of one alert chain; a Cancel moved ahead
    of its own priority-lane alert leaves the alert superseded ("retracted at version …"), which is
    what a Cancel wants."""
    return 0 if w.cmd is not None and w.cmd.priority is Priority.EMERGENCY else 1


@dataclass(frozen=True)
class RuntimeConfig:
    """Knobs of one channel's runtime (frozen; built once at start)."""

    max_batch: int = 500
    concurrency: int = 64
    poll_timeout_ms: int = 200
    policy: RetryPolicy = field(default_factory=RetryPolicy)
    min_interval_s: float = 0.0
    sweep_interval_s: float = 60.0  # how often finished ledger entries past the horizon are removed


@dataclass
class WorkItem:
    tp: TopicPartition
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    attempt: int
    cmd: Command | None = None
    invalid: str | None = None  # why it does not decode/validate (a dead letter)
    raw: dict[str, Any] | None = None  # decoded, waiting for its payload_ref to be resolved
    ref: PayloadRef | None = None
    prewritten: bool = False  # its intent went out with the batch's intents (no entry before)


class DeliveryRuntime:
    """Runs one ChannelAdapter against its command topic until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        adapter: ChannelAdapter,
        config: RuntimeConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.settings = settings
        self.adapter = adapter
        self.channel = adapter.channel
        self.config = config or RuntimeConfig()
        self.clock, self.sleep, self.rng = clock, sleep, rng
        self.commands_topic = settings.topic(Topic.commands(self.channel))
        self.retry_topics = {
            name: (settings.topic(Topic.retry(self.channel, name)), delay)
            for name, delay in self.config.policy.tiers
        }
        self._tier_of_topic = {topic: name for name, (topic, _) in self.retry_topics.items()}
        self.ledger = Ledger(
            settings.topic(Topic.ledger(self.channel)),
            horizon_s(self.channel),
            getattr(adapter, "live_until", None),
        )
        # Commands, retry tiers and ledger share this count (checked at start: check_partitions).
        self.partitions = settings.partitions(Topic.commands(self.channel))
        self._next_sweep = 0.0
        self.limiter = TargetLimiter(clock=clock, min_interval_s=self.config.min_interval_s)
        self.outbox = Outbox(settings.kafka, f"{settings.client_id}-{self.channel.value}")
        self.payloads = PayloadReader(
            settings.kafka,
            settings.topic(Topic.PAYLOADS),
            f"{settings.client_id}-{self.channel.value}",
            cache_bytes=int(settings.payload_cache_mb * 1024 * 1024),
        )
        self.group_id = f"{settings.topic_prefix}lantoa-{self.channel.value}"
        self.subscription = Subscription(
            self.channel.value,
            (self.commands_topic, *(t for t, _ in self.retry_topics.values())),
            self.group_id,
            max_records=self.config.max_batch,
            poll_timeout_ms=self.config.poll_timeout_ms,
            batch_at_once=True,
            tick_every_s=0.0,
        )
        self.loop = ConsumerLoop(settings, self, self.outbox, clock=clock, sleep=sleep, rng=rng)
        self.max_command_bytes = MAX_COMMAND_BYTES_BY_CHANNEL.get(self.channel, MAX_COMMAND_BYTES)
        # An adapter with ``keeps_every_version = True`` (the archive) gets late older versions too.
        self.keeps_history = bool(getattr(adapter, "keeps_every_version", False))
        self.delivered = 0  # effects produced by this process (tests, bench)
        # Set by SIGTERM (run's ``stop``): the batch in hand starts no new command and retries
        # nothing in process, so a stop takes one delivery, not a batch of them against a platform
        # that is down (the drill's S3 outage kept an archive worker busy past a minute).
        self.stopping = asyncio.Event()

    # -- partitions ---------------------------------------------------------------------------

    @property
    def views(self) -> tuple[Ledger]:
        return (self.ledger,)

    def revoked(self, revoked: set[TopicPartition]) -> None:
        """Forget the ledger partitions no longer ours (a batch in hand that reaches one of them
        stops there: PartitionNotHeld, nothing committed for it)."""
        still = {tp.partition for tp in self.loop.assignment()} - {tp.partition for tp in revoked}
        self.ledger.drop(self.ledger.owned() - still)

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        await self.ledger.load(
            self.settings.kafka, {tp.partition for tp in assigned}, self.settings.client_id
        )
        metrics.LEDGER_ENTRIES.labels(self.channel.value).set(self.ledger.size())

    async def tick(self) -> list[OutRecord]:
        """Between fetches (no command in hand): the ledger sweep, at most every sweep_interval_s."""
        await self.sweep()
        metrics.PAUSED_TARGETS.labels(self.channel.value).set(self.limiter.paused_targets())
        return []

    # -- main loop ----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run the adapter on the consumer loop (infra/kafka/loop.py) until ``stop`` is set; refuse
        to start on mismatched partition counts (check_partitions)."""
        await self.check_partitions()
        await self.outbox.start()
        await self.adapter.start()
        # Series exist from the start, so that the first retry, unknown outcome, dead letter or late
        # emergency is an increase Prometheus can see, not a series appearing at 1.
        ch = self.channel.value
        for outcome in ("delivered", "updated", "deleted", "skipped", "retrying", "unknown", "failed"):
            metrics.DELIVERIES.labels(ch, outcome)
        for kind in ("in_process", "scheduled", "paused"):
            metrics.RETRIES.labels(ch, kind)
        for result in ("found", "absent"):
            metrics.RECONCILED.labels(ch, result)
        for result in ("cached", "fetched", "refused"):
            metrics.PAYLOAD_READS.labels(ch, result)
        for stage in ("decode", "deliver", "poison"):
            for reason in metrics.REASON_CLASSES:
                metrics.DEAD_LETTERS.labels(stage, reason)
        metrics.OUTCOME_UNKNOWN.labels(ch)
        metrics.PAUSED_TARGETS.labels(ch)
        metrics.DELIVERY_LATENCY.labels(ch)
        metrics.EMERGENCY_LATENCY.labels(ch)
        self.stopping = stop
        try:
            await self.loop.run(stop)
        finally:
            await self.adapter.close()
            await self.payloads.stop()
            await self.outbox.stop()

    async def check_partitions(self) -> None:
        """Refuse to start (PartitionMismatch, naming ``lantoa topics grow``) unless the channel's
        command, retry and ledger topics have the configured count: a command's retries and ledger
        entries go to the partition number it came from. Runs before anything is consumed."""
        client_id = f"{self.settings.client_id}-{self.channel.value}-check"
        check_counts(
            self.settings, self.channel, await channel_counts(self.settings, self.channel, client_id)
        )

    async def sweep(self) -> int:
        """Remove the finished ledger entries past the horizon (consumers/delivery/ledger.py), a bounded
        slice per call, at most every ``sweep_interval_s``; returns how many.

        Runs between batches (no command is in hand). The tombstones are acknowledged before it
        returns; a failed send raises and stops the worker like any other (no offset is involved:
        the entries are gone from memory here and still on the topic, so the next owner removes
        them on its own sweep)."""
        now = self.clock()
        if now < self._next_sweep:
            return 0
        self._next_sweep = now + self.config.sweep_interval_s
        expired = self.ledger.expired(now)
        if expired:
            await self.outbox.send_all([self.ledger.forget(p, key) for p, key in expired])
            log.info(
                "%s: %d finished ledger entries past the %.0f h horizon removed",
                self.channel.value,
                len(expired),
                self.ledger.horizon / 3600,
            )
            metrics.LEDGER_ENTRIES.labels(self.channel.value).set(self.ledger.size())
        heap.trim()  # what this sweep and the adapter freed since the last one goes back to the system
        return len(expired)

    def _order_key(self, w: WorkItem) -> bytes:
        """Commands that must run one after another: those of one target (a Zalo partition carries
        a whole Official Account under one record key; its groups still go concurrently)."""
        return w.cmd.target.encode() if w.cmd is not None else (w.key or b"")

    def _misplaced(self, w: WorkItem, cmd: Command) -> OutRecord | None:
        """The record that forwards a command sitting in the wrong partition to the one its key
        hashes to now (where ``lantoa topics grow`` moved its ledger), or None when it is in place.
        Such a command was queued before a grow or re-key, or produced with stale metadata."""
        key = command_key(self.channel, cmd.target)
        right = partition_for(key, self.partitions)
        if right == w.tp.partition:
            return None
        return OutRecord(w.tp.topic, key, w.value, tuple(w.headers), partition=right)

    async def handle(self, batch: Batch) -> Handled:
        """One fetched batch (see the module docstring); the loop sends what it returns and commits.

        Raises what ``_process`` does not handle, once every target of the batch has finished (the
        loop's poison policy then handles the batch again one record at a time), PartitionNotHeld
        never (a revoked partition is fetched again from the batch's start), KafkaError when a send
        of the intents fails (nothing committed).
        """
        # A replayed command decided before its ledger is back would find no entry: sent twice.
        await self.ledger.restored.wait()
        work: list[WorkItem] = []
        commit: dict[TopicPartition, int] = {}
        first: dict[TopicPartition, int] = {tp: recs[0].offset for tp, recs in batch.items() if recs}
        now = self.clock()
        owned = self.loop.assignment()
        for tp, recs in batch.items():
            if tp not in owned or not self.ledger.holds(tp.partition):
                self._refetch(
                    tp, first.get(tp)
                )  # revoked since the fetch: its owner starts from the last commit
                continue
            tier = self._tier_of_topic.get(tp.topic)
            for rec in recs:
                headers = list(rec.headers or [])
                hmap = headers_to_dict(headers)
                if tier is not None:
                    due = header_float(hmap, RETRY_DUE, 0.0, 0.0, now + self.retry_topics[tier][1])
                    if due > now:
                        # Not due yet: rewind this retry partition and wait; others go on.
                        self.loop.seek(tp, rec.offset)
                        self.loop.pause_until(tp, due)
                        break
                work.append(
                    WorkItem(
                        tp,
                        rec.offset,
                        rec.key,
                        rec.value,
                        headers,
                        header_int(hmap, RETRY_ATTEMPT, 0, 0, MAX_ATTEMPTS),
                    )
                )
                commit[tp] = rec.offset + 1
        if not work:
            return Handled()
        for w in work:
            self._decode(w)
        await self._resolve(work)
        # Per phase (see ``_phase``), the commands of each target in batch order.
        phases: tuple[OrderedDict[bytes, list[WorkItem]], ...] = (OrderedDict(), OrderedDict())
        for w in work:
            phases[_phase(w)].setdefault(self._order_key(w), []).append(w)
        # Durable before any effect of the batch starts (invariant 2): one round trip, not one per command.
        await self.outbox.send_all(self._batch_intents(work))
        sem = asyncio.Semaphore(self.config.concurrency)
        out: list[OutRecord] = []
        left: set[int] = set()  # partition numbers (commands and retry tiers share the ledger's)

        async def one_target(items: list[WorkItem]) -> None:
            async with sem:
                for w in items:
                    if self.stopping.is_set() and w.cmd is not None:
                        # Stopping: the rest is left for the next owner (nothing of this partition
                        # committed from the batch's start; done ones replay as receipts), its
                        # untried intents taken back so that the replay does not reconcile them.
                        for rest in items[items.index(w) :]:
                            if rest.cmd is not None:
                                self._no_effect(rest, rest.cmd, out)
                            left.add(rest.tp.partition)
                        return
                    try:
                        out.extend(await self._process(w))
                    except PartitionNotHeld as exc:
                        # Revoked while in hand: the partition is fetched again from this batch's
                        # start if it is ours again (else its owner starts from the last commit); the
                        # intents written make the replay reconcile, done ones are acknowledged.
                        log.info(
                            "%s: %s; leaving %s[%d]@%d on",
                            self.channel.value,
                            exc,
                            w.tp.topic,
                            w.tp.partition,
                            w.offset,
                        )
                        left.add(w.tp.partition)
                        return

        # Emergency commands first, on every target, then the rest: a warning for one page never
        # waits behind another page's articles for a place in the pool. Without emergencies in the
        # batch this is one phase, as before.
        for phase in (p for p in phases if p):
            # Every target finishes before a failure leaves: no effect runs on behind the loop's back.
            results = await asyncio.gather(
                *(one_target(items) for items in phase.values() if items[0].tp.partition not in left),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        for tp in first:
            if tp.partition in left:
                self._refetch(tp, first[tp])
        owned = self.loop.assignment()
        commit = {tp: off for tp, off in commit.items() if tp.partition not in left and tp in owned}
        metrics.LEDGER_ENTRIES.labels(self.channel.value).set(self.ledger.size())
        return Handled(out=out, commit=commit)

    def _refetch(self, tp: TopicPartition, offset: int | None) -> None:
        """Records left unprocessed: fetch them again if the partition is (again) ours."""
        if offset is not None:
            self.loop.seek(tp, offset)

    # -- the batch's intents ------------------------------------------------------------------

    def _decode(self, w: WorkItem) -> None:
        """Decode and validate one record: sets ``w.cmd``, or ``w.invalid`` with the reason, or
        (a command whose payload is stored once for many) ``w.raw`` and ``w.ref`` for _resolve."""
        try:
            if w.value is not None and len(w.value) > self.max_command_bytes:
                raise InvalidContent(
                    f"command of {len(w.value)} bytes exceeds the {self.channel.value} "
                    f"limit of {self.max_command_bytes} bytes"
                )
            raw = decode(w.value)
            contracts.check("command", raw)
            if "payload_ref" in raw and "payload" not in raw:
                w.raw, w.ref = raw, PayloadRef.from_dict(raw["payload_ref"])
                return
            self._command(w, raw)
        except InvalidContent as exc:
            w.invalid = exc.reason

    def _command(self, w: WorkItem, raw: dict[str, Any]) -> None:
        cmd = Command.from_dict(raw)
        if cmd.channel is not self.channel:
            raise InvalidContent(f"a {cmd.channel.value} command on the {self.channel.value} topic")
        w.cmd = cmd

    async def _resolve(self, work: list[WorkItem]) -> None:
        """Put the stored payload in place of each ``payload_ref`` of the batch (one read per
        payload not cached; infra/kafka/payloads.py). A reference that cannot be resolved (gone
        past retention, not found, not matching its hash) makes its command a dead letter with
        the reason; Kafka errors propagate (the loop's poison policy, then a restart)."""
        pending = [w for w in work if w.ref is not None and w.raw is not None]
        if not pending:
            return
        refs = [w.ref for w in pending if w.ref is not None]
        fresh = {r.sha256 for r in refs if not self.payloads.has(r.sha256)}
        found, failed = await self.payloads.resolve(refs)
        ch = self.channel.value
        for w in pending:
            raw, ref = w.raw, w.ref
            w.raw = w.ref = None
            assert raw is not None and ref is not None
            try:
                if ref in failed or ref.sha256 not in found:
                    metrics.PAYLOAD_READS.labels(ch, "refused").inc()
                    raise InvalidContent(failed.get(ref) or f"shared payload {ref.sha256[:12]} not resolved")
                metrics.PAYLOAD_READS.labels(ch, "fetched" if ref.sha256 in fresh else "cached").inc()
                fresh.discard(ref.sha256)
                payload = found[ref.sha256]
                if not isinstance(payload, dict):
                    raise InvalidContent(f"shared payload {ref.sha256[:12]} is not an object")
                resolved = {k: v for k, v in raw.items() if k != "payload_ref"}
                resolved["payload"] = payload
                self._command(w, resolved)
            except InvalidContent as exc:
                w.invalid = exc.reason

    def _batch_intents(self, work: list[WorkItem]) -> list[OutRecord]:
        """The intent entries of the commands that will (as far as the ledger tells now) produce an
        effect: new to the ledger, target not paused, nothing newer live. Applied to the in-memory
        ledger at once; the caller makes them durable before any effect."""
        at = utc_now_iso(datetime.fromtimestamp(self.clock(), UTC))
        records: list[OutRecord] = []
        seen: set[tuple[int, str]] = set()
        for w in work:
            cmd = w.cmd
            if cmd is None:
                continue
            partition, cid = w.tp.partition, cmd.key.command_id()
            if self._misplaced(w, cmd) is not None:
                continue  # forwarded by _process, no effect here
            if (partition, cid) in seen or self.ledger.command(partition, cid) is not None:
                continue  # a duplicate waits for the first's outcome; an entry takes the one-command path
            seen.add((partition, cid))
            if self.limiter.paused_for(self._scope(cmd.target), cmd.priority is Priority.EMERGENCY) > 0:
                continue
            if self._superseded(
                cmd, self.ledger.live(partition, cmd.key.uri, cmd.target), self.keeps_history
            ):
                continue
            records.append(
                self.ledger.command_entry(partition, cmd, "intent", at, attempts=1, detail={"progress": {}})
            )
            w.prewritten = True
        return records

    def _no_effect(self, w: WorkItem, cmd: Command, records: list[OutRecord]) -> list[OutRecord]:
        """A command that ends without an attempt: take back the intent the batch wrote for it."""
        if w.prewritten:
            w.prewritten = False
            records.append(self.ledger.forget(w.tp.partition, cmd.key.command_id()))
        return records

    # -- one command --------------------------------------------------------------------------

    async def _process(self, w: WorkItem) -> list[OutRecord]:
        at = utc_now_iso(datetime.fromtimestamp(self.clock(), UTC))
        if w.cmd is None:
            return [self._dead_letter(w, w.invalid or "invalid command", "decode", at)]
        cmd = w.cmd
        forward = self._misplaced(w, cmd)
        if forward is not None:
            log.debug(
                "%s: %s[%d]@%d forwarded to partition %s",
                self.channel.value,
                w.tp.topic,
                w.tp.partition,
                w.offset,
                forward.partition,
            )
            return [forward]
        partition = w.tp.partition
        cid = cmd.key.command_id()
        # The batch's own intent for this command stands for "no entry yet" (the ledger had none).
        entry = None if w.prewritten else self.ledger.command(partition, cid)
        if entry and entry["state"] == "done":
            return [self._receipt(cmd, entry["outcome"], at, external_id=entry.get("external_id"))]
        replayed = any(k == "replay" for k, _ in w.headers)
        if entry and entry["state"] == "failed" and not replayed:
            return [self._receipt(cmd, Outcome.FAILED, at, reason=entry.get("reason"))]

        urgent = cmd.priority.value == "emergency"
        scope = self._scope(cmd.target)
        wait = self.limiter.paused_for(scope, urgent)
        if wait > 0:
            metrics.RETRIES.labels(self.channel.value, "paused").inc()
            return self._no_effect(
                w,
                cmd,
                self._schedule(w, cmd, at, f"target paused: {self.limiter.reason(scope)}", wait, count=False),
            )

        live = self.ledger.live(partition, cmd.key.uri, cmd.target)
        superseded = self._superseded(cmd, live, self.keeps_history)
        if superseded:
            return self._no_effect(w, cmd, [self._receipt(cmd, Outcome.SKIPPED, at, reason=superseded)])

        attempts = int((entry or {}).get("attempts", 0))

        async def save_progress(progress: dict[str, Any]) -> None:
            await self.outbox.send_all(
                [
                    self.ledger.command_entry(
                        partition, cmd, "intent", at, attempts=attempts + 1, detail={"progress": progress}
                    )
                ]
            )

        prior = Prior(
            external_id=(live or {}).get("external_id") if live and not live.get("retracted") else None,
            version=(live or {}).get("version"),
            unknown_command_id=cid if entry and entry["state"] in ("intent", "unknown") else None,
            detail=(live or {}).get("detail") or {},
            progress=((entry or {}).get("detail") or {}).get("progress") or {},
            save_progress=save_progress,
            retracted=bool((live or {}).get("retracted")),
        )
        try:
            if prior.unknown_command_id:
                found = await self.adapter.reconcile(cmd, prior)
                metrics.RECONCILED.labels(self.channel.value, "found" if found else "absent").inc()
                if found is not None:
                    return self._done(partition, cmd, found, at, attempts)
            if not w.prewritten:
                await self.outbox.send_all(
                    [
                        self.ledger.command_entry(
                            partition,
                            cmd,
                            "intent",
                            at,
                            attempts=attempts + 1,
                            detail={"progress": prior.progress},
                        )
                    ]
                )
            w.prewritten = False  # from here on the intent stays: the effect may happen
            effect = await self._deliver_with_retries(cmd, prior)
            return self._done(partition, cmd, effect, at, attempts + 1)
        except TargetPaused as exc:
            self.limiter.pause(scope, exc.retry_after, exc.reason)
            metrics.RETRIES.labels(self.channel.value, "paused").inc()
            if exc.alert:
                log.error(
                    "%s %s paused for %.0fs: %s", self.channel.value, cmd.target, exc.retry_after, exc.reason
                )
            return self._schedule(w, cmd, at, exc.reason, exc.retry_after, count=False)
        except OutcomeUnknown as exc:
            metrics.OUTCOME_UNKNOWN.labels(self.channel.value).inc()
            known = (self.ledger.command(partition, cid) or {}).get("detail")
            rec = self.ledger.command_entry(
                partition, cmd, "unknown", at, attempts=attempts + 1, reason=exc.reason, detail=known
            )
            return [
                rec,
                *self._schedule(w, cmd, at, f"outcome unknown: {exc.reason}", None, outcome=Outcome.UNKNOWN),
            ]
        except TransientDeliveryError as exc:
            return self._schedule(w, cmd, at, exc.reason, exc.retry_after)
        except (PermanentDeliveryError, InvalidContent) as exc:
            if isinstance(exc, PermanentDeliveryError) and exc.alert:
                log.error(
                    "%s %s: permanent error needing attention: %s", self.channel.value, cmd.target, exc.reason
                )
            rec = self.ledger.command_entry(
                partition, cmd, "failed", at, attempts=attempts + 1, reason=exc.reason
            )
            return [
                rec,
                self._dead_letter(w, exc.reason, "deliver", at, cmd),
                self._receipt(cmd, Outcome.FAILED, at, reason=exc.reason),
            ]

    async def _deliver_with_retries(self, cmd: Command, prior: Prior) -> Effect:
        attempt = 0
        while True:
            attempt += 1
            await self.limiter.turn(self._scope(cmd.target), self.sleep)
            try:
                return await self.adapter.deliver(cmd, prior)
            except TransientDeliveryError as exc:
                short = exc.retry_after is None or exc.retry_after <= self.config.policy.cap_s
                if attempt >= self.config.policy.in_process or not short or self.stopping.is_set():
                    raise
                metrics.RETRIES.labels(self.channel.value, "in_process").inc()
                await self.sleep(max(exc.retry_after or 0.0, self.config.policy.backoff(attempt, self.rng)))

    def _scope(self, target: str) -> str:
        """What a platform limit applies to: the target itself, or the account behind it (a Zalo OA)."""
        scope_of = getattr(self.adapter, "rate_scope", None)
        return str(scope_of(target)) if callable(scope_of) else target

    @staticmethod
    def _superseded(cmd: Command, live: dict[str, Any] | None, keeps_history: bool = False) -> str | None:
        """Why the command must not take effect because of what is live, or None.

        A channel that keeps every version (the archive) takes older and retracted versions too:
        its history is the point, and it keeps taken-down versions out of public view itself.
        """
        if not live:
            return None
        version, retracted = int(live.get("version") or 0), bool(live.get("retracted"))
        if cmd.key.action is Action.RETRACT:
            if retracted and version >= cmd.key.version:
                return f"already retracted at version {version}"
            return None
        if keeps_history:
            return None
        if version > cmd.key.version:
            return f"version {version} is already live"
        if retracted and version >= cmd.key.version:
            return f"retracted at version {version}"
        return None

    def _done(self, partition: int, cmd: Command, effect: Effect, at: str, attempts: int) -> list[OutRecord]:
        self.delivered += 1
        self.limiter.note_usage(self._scope(cmd.target), effect.detail.get("usage_pct"))
        records = [
            self.ledger.command_entry(
                partition,
                cmd,
                "done",
                at,
                attempts=attempts,
                outcome=effect.outcome,
                external_id=effect.external_id,
            )
        ]
        live = self.ledger.live(partition, cmd.key.uri, cmd.target)
        if (
            live is None
            or cmd.key.action is Action.RETRACT
            or int(live.get("version") or 0) <= cmd.key.version
        ):
            # A late older version (a channel keeping history) never takes the live entry back.
            records.append(
                self.ledger.live_entry(
                    partition,
                    cmd,
                    at,
                    external_id=effect.external_id,
                    retracted=cmd.key.action is Action.RETRACT,
                    detail={k: v for k, v in effect.detail.items() if k != "usage_pct"},
                )
            )
        records.append(self._receipt(cmd, effect.outcome, at, external_id=effect.external_id))
        published = parse_time(cmd.published_at) if cmd.published_at else None
        if published is not None and cmd.key.action is not Action.RETRACT:
            metrics.DELIVERY_LATENCY.labels(self.channel.value).observe(
                max(0.0, self.clock() - published.timestamp())
            )
        if (
            published is not None and cmd.priority is Priority.EMERGENCY
        ):  # cancellations too: sirens must stop
            metrics.EMERGENCY_LATENCY.labels(self.channel.value).observe(
                max(0.0, self.clock() - published.timestamp())
            )
        return records

    def _schedule(
        self,
        w: WorkItem,
        cmd: Command,
        at: str,
        reason: str,
        retry_after: float | None,
        *,
        count: bool = True,
        outcome: Outcome = Outcome.RETRYING,
    ) -> list[OutRecord]:
        policy = self.config.policy
        attempt = w.attempt + 1 if count else w.attempt
        if count and policy.exhausted(attempt):
            why = f"gave up after {attempt} attempts: {reason}"
            rec = self.ledger.command_entry(w.tp.partition, cmd, "failed", at, attempts=attempt, reason=why)
            return [
                rec,
                self._dead_letter(w, why, "deliver", at, cmd),
                self._receipt(cmd, Outcome.FAILED, at, reason=why),
            ]
        tier, delay = policy.tier_for(max(1, attempt), retry_after)
        topic, _ = self.retry_topics[tier]
        due = self.clock() + delay
        headers = [(k, v) for k, v in w.headers if k not in (RETRY_ATTEMPT, RETRY_DUE, RETRY_REASON)]
        headers += [
            (RETRY_ATTEMPT, str(attempt).encode()),
            (RETRY_DUE, f"{due:.3f}".encode()),
            (RETRY_REASON, bounded(reason, MAX_RETRY_REASON_CHARS).encode()),
        ]
        if count:
            metrics.RETRIES.labels(self.channel.value, "scheduled").inc()
        retry = OutRecord(topic, w.key or b"", w.value, tuple(headers), partition=w.tp.partition)
        return [retry, self._receipt(cmd, outcome, at, reason=f"{reason} (retry in {tier})")]

    def _receipt(
        self,
        cmd: Command,
        outcome: Outcome,
        at: str,
        *,
        reason: str | None = None,
        external_id: str | None = None,
    ) -> OutRecord:
        metrics.DELIVERIES.labels(self.channel.value, outcome).inc()
        receipt = Receipt(
            uri=cmd.key.uri,
            stage=Stage.DELIVERY,
            outcome=outcome,
            at=at,
            version=cmd.key.version,
            channel=self.channel.value,
            target=cmd.target,
            command_id=cmd.key.command_id(),
            reason=reason,
            external_id=external_id,
            event_id=cmd.event_id,
            actor=cmd.actor,
        )
        return OutRecord(self.settings.topic(Topic.RECEIPTS), cmd.key.uri.encode(), encode(receipt.to_dict()))

    def _dead_letter(
        self, w: WorkItem, reason: str, stage: str, at: str, cmd: Command | None = None
    ) -> OutRecord:
        metrics.DEAD_LETTERS.labels(stage, metrics.reason_class(reason)).inc()
        origin = self.commands_topic if w.tp.topic in self._tier_of_topic else w.tp.topic
        headers = dead_letter_headers(
            [(k, v) for k, v in w.headers if not k.startswith("retry_")],
            topic=origin,
            partition=w.tp.partition,
            offset=w.offset,
            reason=reason,
            stage=stage,
            now_iso=at,
            channel=self.channel.value,
            error_class="PermanentDeliveryError" if stage == "deliver" else "InvalidContent",
        )
        return OutRecord(self.settings.topic(Topic.DEADLETTER), w.key or b"", w.value, tuple(headers))
