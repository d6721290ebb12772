"""Forged or corrupted retry headers on a retry tier, without Kafka: they never raise in the
runtime, and a due time never parks the tier's partition longer than the tier's own delay."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka import TopicPartition

from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import TransientDeliveryError
from consumers.delivery.retry import RetryPolicy
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from infra.kafka.grow import channel_topics
from infra.kafka.loop import ConsumerLoop
from infra.kafka.outbox import OutRecord
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.topics import Channel, Topic

PREFIX = "h."
NOW = 1000.0
TIER_10S = TopicPartition(PREFIX + Topic.retry(Channel.FANPAGE, "10s").value, 0)


class Outbox:
    def __init__(self) -> None:
        self.records: list[OutRecord] = []

    async def send_all(self, records: list[OutRecord]) -> None:
        self.records.extend(records)

    async def start(self) -> None:
        pass


class Consumer:
    def __init__(self) -> None:
        self.paused: list[TopicPartition] = []
        self.commits: list[dict[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return {TIER_10S}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        pass

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.extend(tps)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))


class Adapter:
    channel: ClassVar[Channel] = Channel.FANPAGE

    def __init__(self) -> None:
        self.delivered: list[str] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        self.delivered.append(command.target)
        return Effect("delivered", f"{command.target}#1")

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        return None


@dataclass
class Rec:
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def runtime(adapter: Adapter) -> tuple[DeliveryRuntime, Outbox, Consumer]:
    # One partition per channel topic: the command is in place at partition 0 (not forwarded).
    one = ",".join(f"{t.value}=1" for t in channel_topics(Channel.FANPAGE))
    settings = Settings.from_env({"LANTOA_TOPIC_PREFIX": PREFIX, "LANTOA_PARTITIONS": one})
    rt = DeliveryRuntime(
        settings, adapter, RuntimeConfig(policy=RetryPolicy(in_process=1)), clock=lambda: NOW
    )
    outbox, consumer = Outbox(), Consumer()
    rt.outbox = outbox  # type: ignore[assignment]
    rt.loop = ConsumerLoop(settings, rt, outbox, consumer=consumer, clock=lambda: NOW)  # type: ignore[arg-type]
    rt.ledger._parts[0] = {}  # partition 0 restored (empty), as after an assignment
    return rt, outbox, consumer


def retry_record(due: bytes, attempt: bytes) -> dict[TopicPartition, list[Any]]:
    cmd = Command(
        IdempotencyKey("urn:h:1", 1, Channel.FANPAGE, "fanpage:a", Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {"message": "x"},
    )
    headers = [("retry_due_at", due), ("retry_attempt", attempt), ("retry_reason", b"503")]
    return {TIER_10S: [Rec(0, b"fanpage:a", encode(cmd.to_dict()), headers)]}


async def test_a_due_time_far_ahead_parks_the_partition_only_for_the_tier_delay() -> None:
    adapter = Adapter()
    rt, _, consumer = runtime(adapter)
    await rt.loop.take(retry_record(b"99999999999.5", b"1"))
    assert consumer.paused == [TIER_10S] and adapter.delivered == []
    assert rt.loop._paused_until[TIER_10S] == NOW + 10.0  # clamped: without it, 3,000 years


async def test_a_due_time_at_the_tier_delay_is_kept() -> None:
    rt, _, consumer = runtime(Adapter())
    await rt.loop.take(retry_record(f"{NOW + 10.0:.3f}".encode(), b"1"))
    assert rt.loop._paused_until[TIER_10S] == NOW + 10.0
    rt2, _, _ = runtime(Adapter())
    await rt2.loop.take(retry_record(f"{NOW + 4.0:.3f}".encode(), b"1"))
    assert rt2.loop._paused_until[TIER_10S] == NOW + 4.0


async def test_unreadable_retry_headers_are_due_now_and_count_from_zero() -> None:
    for due, attempt in [(b"1e400", b"x"), (b"NaN", b"-3"), (b"abc", b"1e9"), (b"-5", b"")]:
        adapter = Adapter()
        rt, outbox, consumer = runtime(adapter)
        await rt.loop.take(retry_record(due, attempt))
        assert consumer.paused == [] and adapter.delivered == ["fanpage:a"], (due, attempt)
        assert consumer.commits == [{TIER_10S: 1}]
        assert not any(r.topic == rt.settings.topic(Topic.DEADLETTER) for r in outbox.records)


async def test_a_huge_attempt_count_is_clamped_and_gives_up_at_once() -> None:
    class Failing(Adapter):
        async def deliver(self, command: Command, prior: Prior) -> Effect:
            raise TransientDeliveryError("503", None)

    rt, outbox, _ = runtime(Failing())
    await rt.loop.take(retry_record(b"0", b"9" * 30))
    dead = [r for r in outbox.records if r.topic == rt.settings.topic(Topic.DEADLETTER)]
    assert len(dead) == 1 and b"gave up after" in dict(dead[0].headers)["dlq_reason"]
