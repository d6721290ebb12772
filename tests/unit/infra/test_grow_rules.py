"""Growing a family of topics, the rules without a broker: where a key goes, what an adapter and the
stream worker refuse, what ``topics apply`` refuses, and a command or an article revision left in
an old partition forwarded without an effect."""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
from aiokafka import TopicPartition
from aiokafka.partitioner import DefaultPartitioner as AioPartitioner
from kafka.partitioner import DefaultPartitioner as KafkaPythonPartitioner

from consumers.delivery.base import Effect, Prior
from consumers.delivery.runtime import DeliveryRuntime, WorkItem
from infra.kafka.compacted import CompactedView
from infra.kafka.grow import STREAMS_FAMILY, PartitionMismatch, channel_topics, check_counts, mismatches
from infra.kafka.partitioning import partition_for
from infra.kafka.topics import GrowRequired, refuse_channel_growth
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.topics import ZALO_ACCOUNT_KEY, Channel, Topic, command_key
from streams.steps import StreamSteps


class Cluster:
    """What kafka-python's partitioner asks of the cluster metadata."""

    def __init__(self, count: int) -> None:
        self.parts = set(range(count))

    def topics(self) -> set[str]:
        return {"t"}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts

    def available_partitions_for_topic(self, topic: str) -> set[int]:
        return self.parts


@pytest.mark.parametrize("count", [1, 2, 12, 48])
def test_partition_for_is_the_clients_default_partitioner(count: int) -> None:
    parts = list(range(count))
    kp, aio = KafkaPythonPartitioner(), AioPartitioner()
    for i in range(300):
        key = f"zone:{i}".encode()
        expected = kp.partition("t", None, key, None, None, Cluster(count))
        assert partition_for(key, count) == expected == aio(key, parts, parts)


def test_partition_for_refuses_a_count_below_one() -> None:
    assert partition_for(b"k", 1) == 0  # at the bound
    with pytest.raises(ValueError):
        partition_for(b"k", 0)


def test_zalo_commands_are_keyed_by_the_official_account_others_by_target() -> None:
    assert (
        command_key(Channel.ZALO, "zalo:nhom-ha-noi")
        == command_key(Channel.ZALO, "zalo:oa-thong-tin")
        == ZALO_ACCOUNT_KEY.encode()
    )
    assert command_key(Channel.FANPAGE, "fanpage:p1") == b"fanpage:p1"
    assert command_key(Channel.LOUDSPEAKER, "zone:4") == b"zone:4"


def settings(partitions: str = "") -> Settings:
    env = {"LANTOA_TOPIC_PREFIX": "g."}
    if partitions:
        env["LANTOA_PARTITIONS"] = partitions
    return Settings.from_env(env)


def counts(s: Settings, channel: Channel, n: int, **override: int) -> dict[str, int]:
    found = {s.topic(t): n for t in channel_topics(channel)}
    found.update({s.topic(Topic(k.replace("_", "."))): v for k, v in override.items()})
    return found


def test_an_adapter_starts_when_every_count_agrees_with_configuration() -> None:
    s = settings()
    check_counts(s, Channel.LOUDSPEAKER, counts(s, Channel.LOUDSPEAKER, 12))
    assert mismatches(s, Channel.LOUDSPEAKER, counts(s, Channel.LOUDSPEAKER, 12)) == []


def test_an_adapter_refuses_a_command_topic_grown_alone_naming_the_grow() -> None:
    # The README's old example: only the command topic raised to 48.
    s = settings("distribution.loudspeaker.commands=48")
    found = counts(s, Channel.LOUDSPEAKER, 12, distribution_loudspeaker_commands=48)
    with pytest.raises(PartitionMismatch) as err:
        check_counts(s, Channel.LOUDSPEAKER, found)
    text = str(err.value)
    assert "`lantoa topics grow loudspeaker 48`" in text
    assert "configuration asks for" in text and "distribution.loudspeaker.ledger=12" in text
    assert "distribution.loudspeaker.ledger=48" in text  # the LANTOA_PARTITIONS to set


def test_an_adapter_refuses_counts_that_differ_from_configuration_or_a_missing_topic() -> None:
    s = settings()
    n = s.partitions(Topic.ZALO_COMMANDS)
    with pytest.raises(PartitionMismatch) as err:
        check_counts(s, Channel.ZALO, counts(s, Channel.ZALO, n, distribution_zalo_retry_1m=n + 1))
    assert str(err.value).startswith(
        f"zalo adapter refuses to start: g.distribution.zalo.retry.1m has {n + 1} "
        f"partitions, configuration says {n}. Stop the zalo adapters"
    )
    found = counts(s, Channel.ZALO, n)
    del found[s.topic(Topic.ZALO_LEDGER)]
    with pytest.raises(
        PartitionMismatch, match="g.distribution.zalo.ledger missing; run `lantoa topics apply` first"
    ):
        check_counts(s, Channel.ZALO, found)


def test_topics_apply_refuses_to_raise_a_familys_topics_and_says_to_grow() -> None:
    s = settings()
    refuse_channel_growth(
        s, {s.topic(Topic.ALERTS_CAP): 24, s.topic(Topic.RECEIPTS): 24}
    )  # no state by partition
    s = settings("distribution.fanpage.retry.10s=12")
    with pytest.raises(GrowRequired, match=r"run `lantoa topics grow fanpage 12`.*nothing was changed"):
        refuse_channel_growth(s, {s.topic(Topic.FANPAGE_RETRY_10S): 12})
    s = settings("cms.articles=24")
    with pytest.raises(
        GrowRequired, match=r"stop the stream workers and run `lantoa topics grow streams 24`"
    ):
        refuse_channel_growth(s, {s.topic(Topic.CMS_ARTICLES): 24})


def test_the_stream_worker_refuses_counts_that_disagree_and_names_the_grow() -> None:
    s = settings("cms.articles=12,streams.embargo.releases=12,streams.article.state=12")
    names = {t: s.topic(t) for t in STREAMS_FAMILY.topics}
    check_counts(s, STREAMS_FAMILY, {n: 12 for n in names.values()})
    with pytest.raises(PartitionMismatch) as err:
        check_counts(s, STREAMS_FAMILY, {**{n: 12 for n in names.values()}, names[Topic.CMS_ARTICLES]: 6})
    assert "stream worker refuses to start: g.cms.articles has 6 partitions, configuration says 12" in str(
        err.value
    )
    assert "LANTOA_PARTITIONS=cms.articles=12,streams.embargo.releases=12,streams.article.state=12" in str(
        err.value
    ) and "`lantoa topics grow streams 12`" in str(err.value)
    with pytest.raises(
        PartitionMismatch, match="configuration asks for cms.articles=12, streams.embargo.releases=6"
    ):
        check_counts(
            settings("cms.articles=12,streams.article.state=12"),
            STREAMS_FAMILY,
            {n: 12 for n in names.values()},
        )


def test_a_revision_in_the_wrong_partition_is_forwarded_to_its_own_without_an_effect() -> None:
    s = settings("cms.articles=12,streams.embargo.releases=12,streams.article.state=12")
    steps = StreamSteps(
        s,
        CompactedView(s.topic(Topic.ARTICLE_STATE)),
        lambda: Registry([]),
        lambda: datetime(2026, 11, 26, tzinfo=UTC),
    )
    key = b"urn:lantoa:article:moved"
    right = partition_for(key, 12)
    headers = [("ce_type", b"x"), ("replay", b"forged")]
    rec = SimpleNamespace(
        topic=s.topic(Topic.CMS_ARTICLES),
        partition=(right + 5) % 12,
        offset=3,
        key=key,
        value=b"{not even json",
        headers=headers,
    )
    step = steps.article(rec)
    assert step.state == [] and step.fanned_out == 0
    [fwd] = step.out  # no dead letter, no receipt, no command here: only the forward
    assert (fwd.topic, fwd.key, fwd.value, fwd.partition, fwd.headers) == (
        rec.topic,
        key,
        rec.value,
        right,
        tuple(headers),
    )
    rec.partition = right  # at home: handled (here, dead-lettered as not JSON)
    assert [r.topic for r in steps.article(rec).out] == [s.topic(Topic.DEADLETTER), s.topic(Topic.RECEIPTS)]


class Idle:
    channel: ClassVar[Channel] = Channel.ZALO

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        raise AssertionError("a misplaced command has no effect")

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        raise AssertionError("a misplaced command has no effect")


async def test_a_command_in_the_wrong_partition_is_forwarded_to_its_own_without_an_effect() -> None:
    s = settings()
    rt = DeliveryRuntime(s, Idle())
    right = partition_for(ZALO_ACCOUNT_KEY.encode(), 12)
    wrong = (right + 1) % 12
    cmd = Command(
        IdempotencyKey("urn:a", 1, Channel.ZALO, "zalo:nhom-ha-noi", Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {"text": "x"},
    )
    headers: list[tuple[str, bytes]] = [("retry_attempt", b"1")]
    topic = s.topic(Topic.ZALO_RETRY_1M)
    # Queued before the re-key: keyed by target, in the partition the target hashes to.
    w = WorkItem(
        TopicPartition(topic, wrong), 7, b"zalo:nhom-ha-noi", encode(cmd.to_dict()), headers, 1, cmd=cmd
    )
    records: list[Any] = await rt._process(w)
    assert len(records) == 1
    fwd = records[0]
    assert (fwd.topic, fwd.key, fwd.partition, fwd.value, fwd.headers) == (
        topic,
        b"zalo-oa",
        right,
        w.value,
        (("retry_attempt", b"1"),),
    )
    assert rt._batch_intents([w]) == []  # no intent written for it in the wrong ledger partition
    in_place = WorkItem(TopicPartition(topic, right), 8, b"zalo-oa", w.value, [], 0, cmd=cmd)
    assert rt._misplaced(in_place, cmd) is None
