"""The delivery runtime on the real broker, with a scripted in-process adapter.

Checks the invariants the channel adapters rely on: one effect per command across retries,
replays and restarts; transient errors retried; permanent ones dead-lettered with the reason;
unknown outcomes reconciled before any resend; a paused target parked without blocking others;
and an older version never overwriting a newer one.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any, ClassVar

import orjson
import pytest

from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import (
    OutcomeUnknown,
    PermanentDeliveryError,
    TargetPaused,
    TransientDeliveryError,
)
from consumers.delivery.ledger import Ledger
from consumers.delivery.retry import RetryPolicy
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from infra.kafka import clients
from infra.kafka.loop import Handled
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from schemas.codec import encode, headers_to_dict
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.topics import Channel, Topic

FAST = RuntimeConfig(
    policy=RetryPolicy(
        in_process=2, base_s=0.01, cap_s=0.05, max_attempts=4, tiers=(("10s", 0.3), ("1m", 0.6), ("10m", 1.0))
    )
)


class WorkerKilled(BaseException):
    """A kill (kill -9, OOM) in the middle of a command: not an Exception, so the consumer loop's
    poison policy does not take it; the worker stops without committing."""


class ScriptedAdapter:
    """Behaves per target name: ok, flaky (2 transient failures), bad (permanent), lost (effect then no
    answer, once), busy (paused once), crash (effect, then the worker dies, once)."""

    channel: ClassVar[Channel] = Channel.FANPAGE

    def __init__(self, effects: list[tuple[str, str, int, str]] | None = None) -> None:
        # (target, uri, version, action); pass the list of an earlier adapter: the platform's memory
        self.effects: list[tuple[str, str, int, str]] = [] if effects is None else effects
        self.calls: Counter[str] = Counter()
        self.reconciles = 0
        self.sends_at_effect: list[int] = []  # awaited Kafka sends made before each effect
        self.sends = 0

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        t = command.target
        self.calls[t] += 1
        kind = t.split(":")[1].split("-")[0]
        if kind == "flaky" and self.calls[t] <= 2:
            raise TransientDeliveryError("HTTP 503")
        if kind == "verybusy" and self.calls[t] <= 3:
            raise TransientDeliveryError("HTTP 503 again")
        if kind == "bad":
            raise PermanentDeliveryError("invalid parameter (100)")
        if kind == "busy" and self.calls[t] == 1:
            raise TargetPaused("rate limited (32)", 0.5)
        self.effects.append((t, command.key.uri, command.key.version, command.key.action.value))
        self.sends_at_effect.append(self.sends)
        if kind == "crash" and self.calls[t] == 1:
            raise WorkerKilled("worker killed after the effect, before its outcome was recorded")
        if kind == "lost" and self.calls[t] == 1:
            raise OutcomeUnknown("connection dropped after POST")
        return Effect(
            "deleted" if command.key.action is Action.RETRACT else "delivered", f"{t}#{len(self.effects)}"
        )

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        self.reconciles += 1
        for t, uri, version, action in self.effects:
            if (t, uri, version, action) == (
                command.target,
                command.key.uri,
                command.key.version,
                command.key.action.value,
            ):
                return Effect("delivered", f"{t}#found")
        return None


def command(uri: str, target: str, version: int = 1, action: Action = Action.PUBLISH) -> Command:
    return Command(
        IdempotencyKey(uri, version, Channel.FANPAGE, target, action),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {"message": "x"},
        published_at="2026-11-26T01:00:00Z",
    )


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    prefix = f"rt{uuid.uuid4().hex[:6]}."
    s = Settings.from_env({"LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap, "LANTOA_TOPIC_PREFIX": prefix})
    apply_topics(s)
    return s


def produce(settings: Settings, commands: list[Command]) -> None:
    producer = clients.producer(settings.kafka, acks="all")
    topic = settings.topic(Topic.FANPAGE_COMMANDS)
    for c in commands:
        producer.send(topic, key=c.target.encode(), value=encode(c.to_dict()))
    producer.flush()
    producer.close()


async def run_until(
    runtime: DeliveryRuntime, settings: Settings, done: Any, timeout: float = 60.0
) -> TopicTail:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            await asyncio.to_thread(receipts.poll)
            rs = [orjson.loads(r.value) for r in receipts.records]
            if done(rs):
                return receipts
            if task.done():
                task.result()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timeout; receipts: {Counter((r['target'], r['outcome']) for r in rs)}")
            await asyncio.sleep(0.1)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def final(rs: list[dict[str, Any]], outcomes: set[str]) -> set[str]:
    return {r["target"] for r in rs if r["outcome"] in outcomes}


async def test_each_command_has_exactly_one_effect_or_a_dead_letter(settings: Settings) -> None:
    uri = "urn:lantoa:article:rt"
    targets = [
        "fanpage:ok-1",
        "fanpage:ok-2",
        "fanpage:flaky-1",
        "fanpage:verybusy-1",
        "fanpage:bad-1",
        "fanpage:lost-1",
        "fanpage:busy-1",
    ]
    produce(settings, [command(uri, t) for t in targets])
    adapter = ScriptedAdapter()
    runtime = DeliveryRuntime(settings, adapter, FAST)
    good = set(targets) - {"fanpage:bad-1"}
    await run_until(
        runtime,
        settings,
        lambda rs: final(rs, {"delivered"}) >= good and final(rs, {"failed"}) == {"fanpage:bad-1"},
    )
    assert Counter(t for t, *_ in adapter.effects) == Counter({t: 1 for t in good})
    assert adapter.reconciles >= 1  # the lost one was looked up, not resent
    dlq = TopicTail(settings.kafka, settings.topic(Topic.DEADLETTER))
    letters = dlq.wait_for(lambda recs: len(recs) >= 1, 30)
    headers = headers_to_dict(letters[0].headers)
    assert letters[0].key == b"fanpage:bad-1" and headers["dlq_reason"] == "invalid parameter (100)"
    assert (
        headers["dlq_topic"] == settings.topic(Topic.FANPAGE_COMMANDS) and headers["dlq_channel"] == "fanpage"
    )

    # Replay everything with a fresh runtime (a restarted worker): the ledger says done.
    produce(settings, [command(uri, t) for t in targets])
    again = ScriptedAdapter()
    receipts_before = None

    def replayed(rs: list[dict[str, Any]]) -> bool:
        nonlocal receipts_before
        return sum(1 for r in rs if r["outcome"] == "delivered") >= 2 * len(good)

    await run_until(DeliveryRuntime(settings, again, FAST), settings, replayed)
    assert again.effects == [] and receipts_before is None


async def test_an_older_version_never_overwrites_a_newer_one(settings: Settings) -> None:
    uri = "urn:lantoa:article:order"
    produce(
        settings,
        [
            command(uri, "fanpage:ok-9", 2, Action.UPDATE),
            command(uri, "fanpage:ok-9", 1),
            command(uri, "fanpage:ok-8", 1),
            command(uri, "fanpage:ok-8", 1, Action.RETRACT),
            command(uri, "fanpage:ok-8", 1),
            command(uri, "fanpage:ok-7", 1, Action.RETRACT),
            command(uri, "fanpage:ok-7", 1),
        ],
    )
    adapter = ScriptedAdapter()

    def settled(rs: list[dict[str, Any]]) -> bool:
        return (
            len(rs) >= 7
            and final(rs, {"deleted"}) >= {"fanpage:ok-8"}
            and final(rs, {"skipped"}) >= {"fanpage:ok-9", "fanpage:ok-7"}
        )

    await run_until(DeliveryRuntime(settings, adapter, FAST), settings, settled)
    assert ("fanpage:ok-9", uri, 2, "update") in adapter.effects
    assert ("fanpage:ok-9", uri, 1, "publish") not in adapter.effects  # v1 arriving after v2: skipped
    # publish, retract, then the same publish again (a replay): acknowledged, never re-posted
    assert [e for e in adapter.effects if e[0] == "fanpage:ok-8"] == [
        ("fanpage:ok-8", uri, 1, "publish"),
        ("fanpage:ok-8", uri, 1, "retract"),
    ]
    # a retraction that overtook its publication: the late publication is not aired
    assert [e for e in adapter.effects if e[0] == "fanpage:ok-7"] == [("fanpage:ok-7", uri, 1, "retract")]


def count_sends(runtime: DeliveryRuntime, adapter: ScriptedAdapter) -> list[int]:
    """Count the runtime's awaited Kafka sends (each one acks=all round trip) and its batches."""
    batches = [0]
    send_all, handle = runtime.outbox.send_all, runtime.handle

    async def counted_send(records: Any) -> None:
        await send_all(records)
        # The consumer loop's poison marker (once per assignment, before its first batch) is not
        # a send of the runtime's.
        if any(r.topic != runtime.loop.poison.topic for r in records):
            adapter.sends += 1

    async def counted_handle(batch: Any) -> Handled:
        batches[0] += 1
        return await handle(batch)

    runtime.outbox.send_all = counted_send  # type: ignore[method-assign]
    runtime.handle = counted_handle  # type: ignore[method-assign]
    return batches


async def test_a_batch_writes_its_intents_once_before_its_effects(settings: Settings) -> None:
    targets = [f"fanpage:ok-{i}" for i in range(6)]
    produce(settings, [command(f"urn:lantoa:article:b{n}", t) for n in range(10) for t in targets])
    adapter = ScriptedAdapter()
    runtime = DeliveryRuntime(settings, adapter, FAST)
    batches = count_sends(runtime, adapter)
    await run_until(runtime, settings, lambda rs: sum(r["outcome"] == "delivered" for r in rs) >= 60)
    assert len(adapter.effects) == 60
    # per batch: one send of the intents, one of the outcomes (was: one more per command)
    assert adapter.sends <= 2 * batches[0] < 60
    assert 0 not in adapter.sends_at_effect  # no effect before the first acknowledged send
    ledger = Ledger(settings.topic(Topic.ledger(Channel.FANPAGE)))
    await ledger.load(settings.kafka, set(range(settings.partitions(Topic.ledger(Channel.FANPAGE)))), "t")
    states = Counter(
        e["state"] for p in ledger.owned() for k, _ in ledger.items(p) if (e := ledger.command(p, k))
    )
    assert states == Counter({"done": 60})


async def test_a_worker_killed_between_intent_and_outcome_reconciles_on_restart(settings: Settings) -> None:
    uri = "urn:lantoa:article:crash"
    targets = ["fanpage:crash-1", "fanpage:ok-1", "fanpage:ok-2"]
    produce(settings, [command(uri, t) for t in targets])
    adapter = ScriptedAdapter()
    stop = asyncio.Event()
    with pytest.raises(WorkerKilled, match="worker killed"):
        await asyncio.wait_for(DeliveryRuntime(settings, adapter, FAST).run(stop), 60)
    assert ("fanpage:crash-1", uri, 1, "publish") in adapter.effects

    # The restarted worker gets the uncommitted batch again; the platform still has the effect.
    again = ScriptedAdapter(adapter.effects)
    await run_until(
        DeliveryRuntime(settings, again, FAST), settings, lambda rs: final(rs, {"delivered"}) >= set(targets)
    )
    assert again.reconciles >= 1  # its intent was durable: looked up, not resent
    assert Counter(t for t, *_ in adapter.effects) == Counter({t: 1 for t in targets})
