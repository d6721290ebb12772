"""``lantoa topics grow`` on the real broker, and the bounded ledger's restore.

- grow raises the command, retry and ledger topics together and leaves every ledger entry once, in
  the partition its command key hashes to; a second run moves nothing;
- a run interrupted halfway (ledger and retries raised, some copies written, no tombstones) keeps
  the adapters out (they refuse: the counts disagree) and running grow again finishes the job;
- grow refuses while the channel's consumer group has a member; ``topics apply`` refuses to raise
  a channel's topics one by one, before changing anything;
- after a sweep, a restore holds only what is left.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import orjson
import pytest
from kafka import TopicPartition

from consumers.delivery.base import Effect, Prior
from consumers.delivery.ledger import Ledger, epoch_s, live_key
from consumers.delivery.runtime import DeliveryRuntime
from infra.kafka import clients
from infra.kafka.grow import (
    GrowRefused,
    PartitionMismatch,
    adapter_group,
    channel_topics,
    current_partitions,
    grow_channel,
    producer_seeing,
    read_ledger,
)
from infra.kafka.partitioning import partition_for
from infra.kafka.topics import GrowRequired, apply_topics
from schemas.models import Command
from schemas.settings import Settings
from schemas.topics import Channel, Topic, command_key

CHANNEL = Channel.FANPAGE
TARGETS = [f"fanpage:p{i}" for i in range(40)]


def settings_for(bootstrap: str, prefix: str, n: int) -> Settings:
    counts = ",".join(f"{t.value}={n}" for t in channel_topics(CHANNEL))
    return Settings.from_env(
        {"LANTOA_KAFKA_BOOTSTRAP": bootstrap, "LANTOA_TOPIC_PREFIX": prefix, "LANTOA_PARTITIONS": counts}
    )


def entries(target: str) -> list[tuple[bytes, dict[str, Any]]]:
    cid = f"cid-{target}"
    return [
        (
            cid.encode(),
            {
                "kind": "command",
                "command_id": cid,
                "uri": "urn:g",
                "version": 1,
                "target": target,
                "action": "publish",
                "state": "done",
                "outcome": "delivered",
                "external_id": f"post-{target}",
                "attempts": 1,
                "at": "2026-11-26T01:00:00Z",
            },
        ),
        (
            live_key("urn:g", target).encode(),
            {
                "kind": "live",
                "uri": "urn:g",
                "version": 1,
                "target": target,
                "external_id": f"post-{target}",
                "retracted": False,
                "at": "2026-11-26T01:00:00Z",
                "detail": {},
            },
        ),
    ]


def write(s: Settings, records: list[tuple[int, bytes, bytes | None]]) -> None:
    producer = producer_seeing(s, s.topic(Topic.ledger(CHANNEL)), max(p for p, _, _ in records) + 1)
    try:
        for f in [
            producer.send(s.topic(Topic.ledger(CHANNEL)), key=k, value=v, partition=p) for p, k, v in records
        ]:
            f.get(timeout=30)
    finally:
        producer.close()


def placement(s: Settings) -> dict[bytes, list[int]]:
    """key → the partitions holding it (after tombstones)."""
    where: dict[bytes, list[int]] = {}
    for p, part in read_ledger(s, CHANNEL).items():
        for key in part:
            where.setdefault(key, []).append(p)
    return where


def counts(s: Settings) -> dict[str, int]:
    admin = clients.admin(s.kafka)
    try:
        return current_partitions(admin, [s.topic(t) for t in channel_topics(CHANNEL)])
    finally:
        admin.close()


class Idle:
    channel: ClassVar[Channel] = CHANNEL

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        raise AssertionError("not delivering here")

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        raise AssertionError("not delivering here")


def refuses(s: Settings) -> str | None:
    """The adapter's start check: its refusal, or None when it would start."""
    try:
        asyncio.run(DeliveryRuntime(s, Idle()).check_partitions())
    except PartitionMismatch as exc:
        return str(exc)
    return None


def test_grow_moves_the_ledger_with_the_topics_and_a_second_run_moves_nothing(kafka_bootstrap: str) -> None:
    prefix = f"gr{uuid.uuid4().hex[:6]}."
    s2 = settings_for(kafka_bootstrap, prefix, 2)
    apply_topics(s2)
    written = {key: value for t in TARGETS for key, value in entries(t)}
    write(
        s2,
        [
            (partition_for(command_key(CHANNEL, v["target"]), 2), k, orjson.dumps(v))
            for k, v in written.items()
        ],
    )
    write(s2, [(1, b"junk", b"not json")])  # unreadable: stays where it is
    assert refuses(s2) is None

    s5 = settings_for(kafka_bootstrap, prefix, 5)
    assert "lantoa topics grow fanpage 5" in (refuses(s5) or "")  # configuration raised, topics not yet
    with pytest.raises(GrowRequired, match="lantoa topics grow fanpage 5"):
        apply_topics(s5)
    assert set(counts(s5).values()) == {2}  # apply changed nothing

    should_move = sum(
        1
        for v in written.values()
        if partition_for(command_key(CHANNEL, v["target"]), 5)
        != partition_for(command_key(CHANNEL, v["target"]), 2)
    )
    assert should_move > 0
    report = grow_channel(s5, CHANNEL, 5)
    assert (report.moved, report.kept, report.unplaceable) == (should_move, len(written) - should_move, 1)
    assert set(report.raised.values()) == {(2, 5)} and len(report.raised) == len(channel_topics(CHANNEL))
    assert set(counts(s5).values()) == {5}
    where = placement(s5)
    for key, value in written.items():
        assert where[key] == [partition_for(command_key(CHANNEL, value["target"]), 5)], key
    assert where[b"junk"] == [1]
    assert refuses(s5) is None

    again = grow_channel(s5, CHANNEL, 5)
    assert (again.moved, again.raised) == (0, {})
    assert placement(s5) == where


def test_an_interrupted_grow_keeps_adapters_out_and_a_rerun_finishes_it(kafka_bootstrap: str) -> None:
    prefix = f"gi{uuid.uuid4().hex[:6]}."
    s3 = settings_for(kafka_bootstrap, prefix, 3)
    apply_topics(s3)
    written = {key: value for t in TARGETS for key, value in entries(t)}
    write(
        s3,
        [
            (partition_for(command_key(CHANNEL, v["target"]), 3), k, orjson.dumps(v))
            for k, v in written.items()
        ],
    )
    # Halfway through a grow to 7: ledger and retries raised, half of the copies written, no tombstone.
    s7 = settings_for(kafka_bootstrap, prefix, 7)
    admin = clients.admin(s7.kafka)
    try:
        admin.create_partitions(
            {s7.topic(t): 7 for t in channel_topics(CHANNEL) if t is not Topic.commands(CHANNEL)}
        )
    finally:
        admin.close()
    moving = [
        (k, v)
        for k, v in written.items()
        if partition_for(command_key(CHANNEL, v["target"]), 7)
        != partition_for(command_key(CHANNEL, v["target"]), 3)
    ]
    write(
        s7,
        [(partition_for(command_key(CHANNEL, v["target"]), 7), k, orjson.dumps(v)) for k, v in moving[::2]],
    )
    refusal = refuses(s7)
    assert refusal is not None and "has 3 partitions, configuration says 7" in refusal
    assert "`lantoa topics grow fanpage 7`" in refusal

    report = grow_channel(s7, CHANNEL, 7)
    assert report.moved == len(moving) and report.raised == {s7.topic(Topic.commands(CHANNEL)): (3, 7)}
    where = placement(s7)
    assert {k: where[k] for k in written} == {
        k: [partition_for(command_key(CHANNEL, v["target"]), 7)] for k, v in written.items()
    }
    assert refuses(s7) is None


def test_grow_refuses_while_an_adapter_is_in_the_group(kafka_bootstrap: str) -> None:
    prefix = f"gm{uuid.uuid4().hex[:6]}."
    s1 = settings_for(kafka_bootstrap, prefix, 1)
    apply_topics(s1)
    member = clients.consumer(
        s1.kafka,
        s1.topic(Topic.commands(CHANNEL)),
        group_id=adapter_group(s1, CHANNEL),
        enable_auto_commit=False,
    )
    try:
        for _ in range(20):
            member.poll(timeout_ms=500)
            if member.assignment():
                break
        assert member.assignment() == {TopicPartition(s1.topic(Topic.commands(CHANNEL)), 0)}
        s2 = settings_for(kafka_bootstrap, prefix, 2)
        with pytest.raises(GrowRefused, match="stop the fanpage adapters first"):
            grow_channel(s2, CHANNEL, 2)
        assert set(counts(s2).values()) == {1}
    finally:
        member.close()
    assert grow_channel(settings_for(kafka_bootstrap, prefix, 2), CHANNEL, 2).raised  # empty group: it goes


def test_grow_refuses_a_shrink_and_configuration_asking_for_another_count(kafka_bootstrap: str) -> None:
    prefix = f"gs{uuid.uuid4().hex[:6]}."
    s3 = settings_for(kafka_bootstrap, prefix, 3)
    apply_topics(s3)
    with pytest.raises(GrowRefused, match="set LANTOA_PARTITIONS=distribution.fanpage.commands=4"):
        grow_channel(s3, CHANNEL, 4)
    with pytest.raises(GrowRefused, match="cannot shrink"):
        grow_channel(settings_for(kafka_bootstrap, prefix, 2), CHANNEL, 2)
    assert set(counts(s3).values()) == {3}


async def test_a_restore_after_a_sweep_holds_only_what_is_left(kafka_bootstrap: str) -> None:
    prefix = f"gw{uuid.uuid4().hex[:6]}."
    s = settings_for(kafka_bootstrap, prefix, 1)
    apply_topics(s)
    now = [0.0]
    rt = DeliveryRuntime(s, Idle(), clock=lambda: now[0])
    await rt.outbox.start()
    try:
        await rt.ledger.load(s.kafka, {0}, "t")
        old = [(k, v) for t in TARGETS[:30] for k, v in entries(t)]
        young = [(k, {**v, "at": "2026-12-10T00:00:00Z"}) for t in TARGETS[30:] for k, v in entries(t)]
        await rt.outbox.send_all([rt.ledger.record(0, k.decode(), v) for k, v in old + young])
        now[0] = epoch_s("2026-11-26T01:00:00Z") + rt.ledger.horizon  # old ones at the horizon
        removed = await rt.sweep()
        assert removed == 30  # their done entries; the live ones are still out at their pages
    finally:
        await rt.outbox.stop()
    restored = Ledger(s.topic(Topic.ledger(CHANNEL)))
    await restored.load(s.kafka, {0}, "t2")
    assert restored.size() == len(old) + len(young) - 30
    assert all(restored.command(0, k.decode()) is None for k, v in old if v["kind"] == "command")
    assert all(restored.live(0, "urn:g", t) is not None for t in TARGETS)
