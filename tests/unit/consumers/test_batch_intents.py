"""The runtime's batched intents, without Kafka: a fake outbox records every awaited send.

- a batch's intents go out in ONE acknowledged send, before the first effect;
- a command that produces no effect after all (paused by an earlier command, superseded earlier in
  the batch) has its fresh intent taken back (tombstone), so a replay does not reconcile;
- a crash between the intents and the effects leaves intents that make a restarted worker
  reconcile before any resend, and an effect found by reconciliation is not made twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
import pytest
from aiokafka import TopicPartition

from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import TargetPaused
from consumers.delivery.retry import RetryPolicy
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from infra.kafka.grow import channel_topics
from infra.kafka.loop import ConsumerLoop
from infra.kafka.outbox import OutRecord
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.topics import Channel, Topic

TOPIC_PREFIX = "u."


class FakeOutbox:
    """Records each awaited ``send_all`` as one list of records (one acks=all round trip)."""

    def __init__(self) -> None:
        self.sends: list[list[OutRecord]] = []

    async def send_all(self, records: list[OutRecord]) -> None:
        if records:
            self.sends.append(list(records))


class FakeConsumer:
    def __init__(self) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition(TOPIC_PREFIX + Topic.commands(Channel.FANPAGE).value, 0)}

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class Crash(BaseException):
    """A kill (a bug is an Exception: the loop's poison policy takes it): the worker stops
    without committing."""


class Adapter:
    channel: ClassVar[Channel] = Channel.FANPAGE

    def __init__(
        self,
        outbox: FakeOutbox,
        *,
        crash_on: str | None = None,
        pause_on: str | None = None,
        bug_on: str | None = None,
    ) -> None:
        self.outbox, self.crash_on, self.pause_on, self.bug_on = outbox, crash_on, pause_on, bug_on
        self.effects: list[tuple[str, str, int, str]] = []
        self.sends_seen_at_effect: list[int] = []
        self.reconciled: list[str] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        if command.target == self.pause_on:
            raise TargetPaused("rate limited (32)", 30.0)
        if command.target == self.bug_on:
            raise KeyError("page_id")  # a bug met by this command, every time
        self.sends_seen_at_effect.append(len(self.outbox.sends))
        self.effects.append((command.target, command.key.uri, command.key.version, command.key.action.value))
        if command.target == self.crash_on:
            raise Crash("killed after the effect, before the outcome was recorded")
        return Effect(
            "deleted" if command.key.action is Action.RETRACT else "delivered",
            f"{command.target}#{len(self.effects)}",
        )

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        self.reconciled.append(command.target)
        key = (command.target, command.key.uri, command.key.version, command.key.action.value)
        return Effect("delivered", f"{command.target}#found") if key in self.effects else None


@dataclass
class Rec:
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


def command(uri: str, target: str, version: int = 1, action: Action = Action.PUBLISH) -> Command:
    return Command(
        IdempotencyKey(uri, version, Channel.FANPAGE, target, action),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {"message": "x"},
    )


def batch(commands: list[Command], tp: TopicPartition) -> dict[TopicPartition, list[Any]]:
    return {tp: [Rec(i, c.target.encode(), encode(c.to_dict()), []) for i, c in enumerate(commands)]}


def runtime(adapter: Adapter, outbox: FakeOutbox) -> DeliveryRuntime:
    # One partition per channel topic: every command of the batch is in place at partition 0.
    one = ",".join(f"{t.value}=1" for t in channel_topics(Channel.FANPAGE))
    settings = Settings.from_env({"LANTOA_TOPIC_PREFIX": TOPIC_PREFIX, "LANTOA_PARTITIONS": one})
    rt = DeliveryRuntime(
        settings, adapter, RuntimeConfig(policy=RetryPolicy(in_process=1)), clock=lambda: 1000.0
    )
    rt.outbox = outbox  # type: ignore[assignment]
    rt.loop = ConsumerLoop(settings, rt, outbox, consumer=FakeConsumer())  # type: ignore[arg-type]
    rt.ledger._parts[0] = {}  # partition 0 restored (empty), as after an assignment
    return rt


def ledger_records(
    sends: list[list[OutRecord]], settings_topic: str
) -> list[tuple[str, dict[str, Any] | None]]:
    return [
        (r.key.decode(), None if r.value is None else orjson.loads(r.value))
        for send in sends
        for r in send
        if r.topic == settings_topic
    ]


@pytest.fixture
def tp() -> TopicPartition:
    return TopicPartition(TOPIC_PREFIX + Topic.commands(Channel.FANPAGE).value, 0)


async def test_a_batch_writes_its_intents_in_one_send_before_any_effect(tp: TopicPartition) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox)
    rt = runtime(adapter, outbox)
    cmds = [command(f"urn:a:{i}", f"fanpage:p{i % 7}") for i in range(40)]
    await rt.loop.take(batch(cmds, tp))
    assert len(adapter.effects) == 40
    # send 1: the 40 intents; send 2: done + live + receipt of each. Nothing awaited per command.
    assert len(outbox.sends) == 2
    first = [orjson.loads(r.value) for r in outbox.sends[0] if r.value is not None]
    assert len(first) == 40 and {v["state"] for v in first} == {"intent"}
    assert all(r.topic == rt.ledger.topic for r in outbox.sends[0])
    assert set(adapter.sends_seen_at_effect) == {
        1
    }  # every effect started after the intents were acknowledged
    states = Counter(
        v["state"]
        for k, v in ledger_records(outbox.sends[1:], rt.ledger.topic)
        if v and v["kind"] == "command"
    )
    assert states == Counter({"done": 40})
    assert rt.loop._consumer.commits == [{tp: 40}]  # type: ignore[union-attr]


async def test_commands_that_end_without_an_effect_take_their_intent_back(tp: TopicPartition) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox, pause_on="fanpage:busy")
    rt = runtime(adapter, outbox)
    uri = "urn:a:order"
    cmds = [
        command(uri, "fanpage:busy"),
        command("urn:a:other", "fanpage:busy"),  # paused by the first one
        command(uri, "fanpage:ok", 2, Action.UPDATE),
        command(uri, "fanpage:ok", 1),  # v1 superseded by v2
        command(uri, "fanpage:ok2"),
    ]
    await rt.loop.take(batch(cmds, tp))
    assert len(outbox.sends[0]) == 5  # all five looked deliverable when the batch started
    later = dict(ledger_records(outbox.sends[1:], rt.ledger.topic))
    paused_first, paused_second, _, superseded, _ = (c.key.command_id() for c in cmds)
    # the first busy command was attempted (the platform refused): its intent stays, as before
    assert paused_first not in later and rt.ledger.command(0, paused_first)["state"] == "intent"  # type: ignore[index]
    # parked behind the pause and superseded: no attempt, so no intent left to reconcile on replay
    assert later[paused_second] is None and rt.ledger.command(0, paused_second) is None
    assert later[superseded] is None and rt.ledger.command(0, superseded) is None
    assert [e[:3] for e in adapter.effects] == [("fanpage:ok", uri, 2), ("fanpage:ok2", uri, 1)]


async def test_a_crash_between_intent_and_effect_is_reconciled_not_resent(tp: TopicPartition) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox, crash_on="fanpage:doomed")
    rt = runtime(adapter, outbox)
    cmds = [
        command("urn:a:1", "fanpage:doomed"),
        command("urn:a:2", "fanpage:doomed"),
        command("urn:a:3", "fanpage:calm"),
    ]
    with pytest.raises(Crash):
        await rt.loop.take(batch(cmds, tp))
    assert rt.loop._consumer.commits == []  # type: ignore[union-attr]
    assert len(outbox.sends) == 1  # only the intents reached Kafka

    # A restarted worker rebuilds its ledger from what Kafka acknowledged, then gets the batch again.
    outbox2 = FakeOutbox()
    adapter2 = Adapter(outbox2)
    adapter2.effects = list(adapter.effects)  # the platform keeps what was posted before the crash
    rt2 = runtime(adapter2, outbox2)
    for key, value in ledger_records(outbox.sends, rt.ledger.topic):
        rt2.ledger.record(0, key, value)
    await rt2.loop.take(batch(cmds, tp))
    # all three had an intent: each is looked up first; the one made before the crash is found
    assert sorted(adapter2.reconciled) == ["fanpage:calm", "fanpage:doomed", "fanpage:doomed"]
    made = Counter(e[:2] for e in adapter2.effects)
    assert made == Counter(
        {("fanpage:doomed", "urn:a:1"): 1, ("fanpage:doomed", "urn:a:2"): 1, ("fanpage:calm", "urn:a:3"): 1}
    )
    # one-command path for reconciled commands: intent after reconciliation, before the effect
    assert all(
        e is not None and e["state"] == "done"
        for e in (rt2.ledger.command(0, c.key.command_id()) for c in cmds)
    )


async def test_a_replayed_batch_is_acknowledged_without_effects_or_intents(tp: TopicPartition) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox)
    rt = runtime(adapter, outbox)
    cmds = [command(f"urn:a:{i}", f"fanpage:p{i % 3}") for i in range(9)]
    await rt.loop.take(batch(cmds, tp))
    before = len(outbox.sends)
    await rt.loop.take(batch(cmds + cmds[:2], tp))  # replay, with duplicates inside the batch
    assert len(adapter.effects) == 9
    assert len(outbox.sends) == before + 1  # receipts only: no intents
    assert all(r.topic != rt.ledger.topic for r in outbox.sends[-1])


async def test_an_oversized_command_is_dead_lettered_with_its_size(tp: TopicPartition) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox)
    rt = runtime(adapter, outbox)
    big = Command(
        IdempotencyKey("urn:a:big", 1, Channel.FANPAGE, "fanpage:p1", Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {"message": "x", "padding": "x" * (rt.max_command_bytes + 1)},
    )
    await rt.loop.take(batch([big, command("urn:a:small", "fanpage:p1")], tp))
    assert [e[1] for e in adapter.effects] == ["urn:a:small"]
    dead = [r for send in outbox.sends for r in send if r.topic.endswith("distribution.deadletter")]
    assert len(dead) == 1
    reason = dict(dead[0].headers)["dlq_reason"].decode()
    assert "exceeds the fanpage limit" in reason and str(len(encode(big.to_dict()))) in reason
    assert rt.loop._consumer.commits == [{tp: 2}]  # type: ignore[union-attr]


async def test_a_batch_waits_for_the_ledger_and_skips_partitions_not_held(tp: TopicPartition) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox)
    rt = runtime(adapter, outbox)
    rt.ledger.restored.clear()  # an assignment's ledger is still loading
    handling = asyncio.create_task(rt.loop.take(batch([command("urn:a:wait", "fanpage:p1")], tp)))
    await asyncio.sleep(0.05)
    assert not handling.done() and adapter.effects == []
    rt.ledger.restored.set()
    await handling
    assert len(adapter.effects) == 1
    rt.ledger.drop({0})  # revoked: nothing decided from an absent ledger, nothing committed
    await rt.loop.take(batch([command("urn:a:gone", "fanpage:p2")], tp))
    assert len(adapter.effects) == 1 and rt.loop._consumer.commits == [{tp: 1}]  # type: ignore[union-attr]


class HistoryAdapter(Adapter):
    keeps_every_version = True


@pytest.mark.parametrize("keeps_history", [False, True])
async def test_a_late_older_version_is_skipped_unless_the_channel_keeps_history(
    tp: TopicPartition, keeps_history: bool
) -> None:
    outbox = FakeOutbox()
    adapter = (HistoryAdapter if keeps_history else Adapter)(outbox)
    rt = runtime(adapter, outbox)
    uri = "urn:a:late"
    await rt.loop.take(batch([command(uri, "fanpage:arch", 2, Action.UPDATE)], tp))
    await rt.loop.take(batch([command(uri, "fanpage:arch", 1)], tp))  # v1 back from a retry tier
    assert [e[2] for e in adapter.effects] == ([2, 1] if keeps_history else [2])
    live = rt.ledger.live(0, uri, "fanpage:arch")
    assert live is not None and live["version"] == 2  # the live entry never goes back
    receipts = [
        orjson.loads(r.value or b"") for send in outbox.sends for r in send if r.topic.endswith("receipts")
    ]
    assert [r["outcome"] for r in receipts if r["version"] == 1] == (
        ["delivered"] if keeps_history else ["skipped"]
    )


async def test_a_bug_on_one_command_is_isolated_dead_lettered_and_the_others_are_not_resent(
    tp: TopicPartition,
) -> None:
    outbox = FakeOutbox()
    adapter = Adapter(outbox, bug_on="fanpage:buggy")
    rt = runtime(adapter, outbox)

    async def load_from_kafka(conn: Any, partitions: set[int], client_id: str) -> None:
        for p in partitions:  # what the fake Kafka acknowledged, as a restore reads it
            rt.ledger._parts[p] = {}
            for key, value in ledger_records(outbox.sends, rt.ledger.topic):
                rt.ledger.apply(p, key, value)

    async def no_wait(seconds: float) -> None:
        pass

    rt.ledger.load = load_from_kafka  # type: ignore[method-assign]
    rt.loop.sleep = no_wait
    cmds = [
        command("urn:a:1", "fanpage:ok1"),
        command("urn:a:2", "fanpage:buggy"),
        command("urn:a:3", "fanpage:ok2"),
    ]
    await rt.loop.take(batch(cmds, tp))
    # the batch failed once; handled again one command at a time: the two effects made in the
    # failed pass are found by reconciliation (their intents were durable), not made again
    assert Counter(e[0] for e in adapter.effects) == Counter({"fanpage:ok1": 1, "fanpage:ok2": 1})
    assert {"fanpage:ok1", "fanpage:ok2"} <= set(adapter.reconciled)
    dead = [
        dict(r.headers) for send in outbox.sends for r in send if r.topic.endswith("distribution.deadletter")
    ]
    assert [(d["dlq_stage"], d["dlq_error_class"], d["dlq_offset"]) for d in dead] == [
        (b"poison", b"KeyError", b"1")
    ]
    # the command before the poison one is committed before its first retry, then the rest
    assert rt.loop._consumer.commits == [{tp: 1}, {tp: 3}]  # type: ignore[union-attr]
    done = {
        k: v["state"]
        for k, v in ledger_records(outbox.sends, rt.ledger.topic)
        if v and v["kind"] == "command"
    }
    assert done[cmds[0].key.command_id()] == "done" and done[cmds[2].key.command_id()] == "done"


class SlowDown(Adapter):
    """A platform that is down: every attempt fails as a transient error after a while; the stop
    comes while the first one is in hand."""

    def __init__(self, outbox: FakeOutbox, stop: asyncio.Event) -> None:
        super().__init__(outbox)
        self.stop, self.attempts = stop, 0

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        from consumers.delivery.errors import TransientDeliveryError

        self.attempts += 1
        self.stop.set()  # SIGTERM arrives during the first attempt
        await asyncio.sleep(0)
        raise TransientDeliveryError("connection refused")


async def test_a_stop_during_a_batch_starts_nothing_new_and_commits_nothing_untried(
    tp: TopicPartition,
) -> None:
    outbox = FakeOutbox()
    stop = asyncio.Event()
    adapter = SlowDown(outbox, stop)
    rt = runtime(adapter, outbox)
    rt.config = RuntimeConfig(policy=RetryPolicy(in_process=3), concurrency=1)
    rt.stopping = stop
    cmds = [command(f"urn:a:{i}", "fanpage:same") for i in range(5)]  # one target: in order
    await rt.loop.take(batch(cmds, tp))
    # one attempt (no in-process retry once stopping), the other four never started
    assert adapter.attempts == 1
    later = dict(ledger_records(outbox.sends[1:], rt.ledger.topic))
    for c in cmds[1:]:  # their intents are taken back: the next owner does not reconcile them
        assert later[c.key.command_id()] is None and rt.ledger.command(0, c.key.command_id()) is None
    # the partition is left from the batch's start for its next owner: nothing committed
    assert rt.loop._consumer.commits == []  # type: ignore[union-attr]
    assert (tp, 0) in rt.loop._consumer.seeks  # type: ignore[union-attr]


async def test_emergency_commands_go_first_in_a_batch_and_each_kind_keeps_its_order(
    tp: TopicPartition,
) -> None:
    """A CAP warning fetched behind articles for the same page is posted before them (issue 16);
    articles keep their order among themselves, and so do the alert's own commands."""
    from dataclasses import replace

    outbox = FakeOutbox()
    adapter = Adapter(outbox)
    rt = runtime(adapter, outbox)
    rt.config = replace(rt.config, concurrency=1)  # one target at a time: the order is the batch's
    articles = [command(f"urn:a:{i}", "fanpage:ha-tinh") for i in range(5)]
    alert = replace(command("urn:lantoa:cap:A", "fanpage:ha-tinh", 10), priority=Priority.EMERGENCY)
    withdrawn = replace(
        command("urn:lantoa:cap:A", "fanpage:ha-tinh", 20, Action.RETRACT), priority=Priority.EMERGENCY
    )
    other = replace(command("urn:lantoa:cap:A", "fanpage:ha-noi", 10), priority=Priority.EMERGENCY)
    await rt.loop.take(batch([*articles[:3], alert, articles[3], withdrawn, articles[4], other], tp))
    order = [(t, u, v) for t, u, v, _ in adapter.effects]
    # every emergency command before any article, even with one call at a time in the pool
    assert sorted(order[:3]) == [
        ("fanpage:ha-noi", "urn:lantoa:cap:A", 10),
        ("fanpage:ha-tinh", "urn:lantoa:cap:A", 10),
        ("fanpage:ha-tinh", "urn:lantoa:cap:A", 20),
    ]
    ha_tinh = [u for t, u, _ in order if t == "fanpage:ha-tinh"]
    assert ha_tinh == ["urn:lantoa:cap:A", "urn:lantoa:cap:A"] + [f"urn:a:{i}" for i in range(5)]
    assert order.index(("fanpage:ha-noi", "urn:lantoa:cap:A", 10)) < order.index(
        ("fanpage:ha-tinh", "urn:a:0", 1)
    )
