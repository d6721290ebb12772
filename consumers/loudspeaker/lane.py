"""The emergency lane: its own topic, its own consumer group, one bulk push per CAP alert.

Reads distribution.emergency.commands (group ``lantoa-emergency``). ``start`` pre-empts every zone
of the alert at once on the loudspeaker platform (EmergencyPusher: one render, one bulk call,
idempotent by the alert id, repeating until it expires); ``cancel`` stops every alert the CAP
Cancel references. One receipt per zone (command ids as streams.status.model expects), the latency
from the CAP publish time into ``lantoa_emergency_delivery_latency_seconds``, then the commit.

Failures: transient ones are retried in place with backoff, because nothing else waits on this
lane and an emergency must not sit in a delay topic; a permanent refusal is dead-lettered with
the reason and a ``failed`` receipt per zone. It runs on the one consumer loop
(infra/kafka/loop.py): anything unexpected goes through its poison policy (retried a bounded
number of times, counted across restarts, then a dead letter) so that one record cannot stop the
siren lane for every later alert; a Kafka send failure stops the worker (exit 70) without
committing: the alert is pushed again on restart, which the platform's idempotency by alert id
makes harmless.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiokafka import TopicPartition

from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.delivery.process import TargetLookup, run_until_signalled
from consumers.loudspeaker.cap_audio import AudioPolicy
from consumers.loudspeaker.emergency import EmergencyPlan, EmergencyPusher
from infra.kafka.loop import Batch, ConsumerLoop, Handled, InRecord, Subscription
from infra.kafka.outbox import Outbox, OutRecord
from schemas import contracts, metrics
from schemas.article import parse_time
from schemas.codec import decode, encode
from schemas.deadletter import dead_letter_headers
from schemas.emergency import EMERGENCY_CHANNEL, alert_uri, emergency_command_id
from schemas.errors import InvalidContent
from schemas.models import Outcome, Receipt, Stage, utc_now_iso
from schemas.settings import Settings
from schemas.topics import Topic

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 5.0


class EmergencyLane:
    """Consumes the emergency topic and drives the pusher; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        pusher: EmergencyPusher,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings, self.pusher, self.clock, self.sleep = settings, pusher, clock, sleep
        self.topic = settings.topic(Topic.EMERGENCY_COMMANDS)
        self.outbox = Outbox(settings.kafka, f"{settings.client_id}-emergency")
        self.cancelled: set[str] = set()  # a Cancel that overtook its Alert keeps it from starting
        self.pushed = 0
        # One record at a time, committed after each (flush_bytes=0): an alert never waits on another.
        self.subscription = Subscription(
            "emergency",
            (self.topic,),
            f"{settings.topic_prefix}lantoa-emergency",
            max_records=50,
            flush_bytes=0,
        )
        self.loop = ConsumerLoop(settings, self, self.outbox, clock=clock, sleep=sleep)

    # -- the Process of the consumer loop (infra/kafka/loop.py) ---------------------------------

    views: tuple[()] = ()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """Nothing restored: the platform is idempotent by alert id."""

    def revoked(self, revoked: set[TopicPartition]) -> None:
        """Nothing held per partition."""

    async def tick(self) -> list[OutRecord]:
        return []

    async def handle(self, batch: Batch) -> Handled:
        out: list[OutRecord] = []
        for tp, recs in batch.items():
            for rec in recs:
                out += await self._handle(tp, rec)
        return Handled(out=out)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop``: one record at a time, its receipts acknowledged, then its commit."""
        await self.outbox.start()
        await self.pusher.start()
        try:
            await self.loop.run(stop)
        finally:
            await self.pusher.close()
            await self.outbox.stop()

    async def _handle(self, tp: TopicPartition, rec: InRecord) -> list[OutRecord]:
        at = utc_now_iso(datetime.fromtimestamp(self.clock(), UTC))
        try:
            value = decode(rec.value)
            contracts.check("emergency", value)
        except InvalidContent as exc:
            return [self._dead_letter(tp, rec, exc.reason, at, stage="decode")]
        eid, zones = str(value["emergency_id"]), [str(z) for z in value["zones"]]
        attempt = 0
        while True:
            attempt += 1
            try:
                if value["action"] == "cancel":
                    for ref in value.get("replaces") or []:
                        self.cancelled.add(str(ref))
                        await self.pusher.cancel(str(ref))
                    return self._receipts(value, zones, Outcome.DELETED, at)
                if eid in self.cancelled:
                    return self._receipts(
                        value, zones, Outcome.SKIPPED, at, reason="cancelled before it started"
                    )
                result = await self.pusher.push(EmergencyPlan.from_record(value))
                self.pushed += 1
                if result.skipped:
                    log.warning("emergency %s not aired: %s", eid, result.skipped)
                    return self._receipts(value, zones, Outcome.SKIPPED, at, reason=result.skipped)
                published = parse_time(value.get("published_at")) if value.get("published_at") else None
                if published is not None:
                    metrics.EMERGENCY_LATENCY.labels("loudspeaker").observe(
                        max(0.0, self.clock() - published.timestamp())
                    )
                log.info(
                    "emergency %s: %d zones pre-empted in %.3fs%s",
                    eid,
                    result.zones,
                    result.elapsed_s,
                    " (already on air)" if result.duplicate else "",
                )
                if result.shortened:
                    log.warning("emergency %s: %s", eid, result.shortened)
                if result.audio_refused:
                    log.warning("emergency %s: %s", eid, result.audio_refused)
                return self._receipts(
                    value,
                    zones,
                    Outcome.DELIVERED,
                    at,
                    external_id=",".join(result.platform_ids),
                    reason="; ".join(r for r in (result.shortened, result.audio_refused) if r) or None,
                )
            except (TransientDeliveryError, TargetPaused) as exc:
                wait = min(MAX_BACKOFF_S, 0.1 * 2 ** min(attempt, 6)) * (0.5 + random.random() / 2)
                metrics.RETRIES.labels("emergency", "in_process").inc()
                log.warning("emergency %s: %s; retrying in %.1fs (attempt %d)", eid, exc, wait, attempt)
                await self.sleep(wait)
            except (PermanentDeliveryError, InvalidContent) as exc:
                reason = exc.reason
                log.error("emergency %s refused: %s", eid, reason)
                return [
                    self._dead_letter(tp, rec, reason, at),
                    *self._receipts(value, zones, Outcome.FAILED, at, reason=reason),
                ]

    def _receipts(
        self,
        value: dict[str, Any],
        zones: list[str],
        outcome: Outcome,
        at: str,
        *,
        reason: str | None = None,
        external_id: str | None = None,
    ) -> list[OutRecord]:
        eid, action = str(value["emergency_id"]), str(value["action"])
        uri = alert_uri(eid)
        topic = self.settings.topic(Topic.RECEIPTS)
        metrics.DELIVERIES.labels(EMERGENCY_CHANNEL, outcome).inc(len(zones))
        out = []
        for zone in zones:
            receipt = Receipt(
                uri=uri,
                stage=Stage.DELIVERY,
                outcome=outcome,
                at=at,
                version=1,
                channel=EMERGENCY_CHANNEL,
                target=zone,
                command_id=emergency_command_id(eid, zone, action),
                reason=reason,
                external_id=external_id,
            )
            out.append(OutRecord(topic, uri.encode(), encode(receipt.to_dict())))
        return out

    def _dead_letter(
        self, tp: TopicPartition, rec: InRecord, reason: str, at: str, *, stage: str = "deliver"
    ) -> OutRecord:
        """A dead letter: ``decode`` for a record that breaks the contract (never counted by the
        loop's dead-letter limit), ``deliver`` for a refusal by the platform (counted)."""
        metrics.DEAD_LETTERS.labels("emergency", metrics.reason_class(reason)).inc()
        headers = dead_letter_headers(
            list(rec.headers or []),
            topic=tp.topic,
            partition=tp.partition,
            offset=rec.offset,
            reason=reason,
            stage=stage,
            now_iso=at,
            channel="emergency",
            error_class="InvalidContent" if stage == "decode" else "PermanentDeliveryError",
        )
        return OutRecord(self.settings.topic(Topic.DEADLETTER), rec.key or b"", rec.value, tuple(headers))


def run(settings: Settings) -> None:
    """`lantoa adapter emergency`: run the lane until SIGTERM/SIGINT; exit 70 on anything unexpected."""

    async def main(stop: asyncio.Event, targets: TargetLookup) -> None:
        pusher = EmergencyPusher.from_settings(settings, targets, AudioPolicy.from_env(os.environ))
        await EmergencyLane(settings, pusher).run(stop)

    run_until_signalled(settings, "emergency lane", main, log)
