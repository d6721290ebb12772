"""Growing a family of co-partitioned topics (``lantoa topics grow CHANNEL|streams N``): its
topics together, and every entry of its compacted state moved to the partition its key now
hashes to.

Two kinds of family hold state by partition number:

- a **channel**: its command topic, retry tiers and ledger. The runtime writes a command's retries
  and ledger entries to the partition number the command came from;
- **streams**: ``cms.articles``, ``streams.embargo.releases`` and ``streams.article.state``. The
  stream worker keeps an article's state (and writes its embargo release ticks) in the partition
  number its revisions come from.

So a family topic with more partitions than the others writes to partitions that do not exist (a
crash loop), and a key whose partition changed finds no state where it now lands (a channel posts
a second post instead of an edit or skips a retraction; the stream worker takes a revision of a
published article for a new article).

The order ``grow`` enforces, safe on a running system:

1. refuse unless the family's consumer group is empty (its adapters or stream workers stopped:
   nothing reads or writes the state meanwhile) and configuration (LANTOA_PARTITIONS) already
   asks for N for every topic of the family (the processes check that too);
2. raise every topic but the input (commands; cms.articles) to N;
3. rewrite each state entry that lives in the wrong partition to the partition its key hashes to
   with N (a ledger entry: ``command_key(channel, target)``; an article state: its uri, the
   record key of the article's revisions) and, once that is acknowledged, tombstone it where it
   was (an entry already present in its right partition wins: a rerun after an interruption only
   finishes the tombstones);
4. raise the input topic last. Until then the counts disagree and every process of the family
   refuses to start (``check_counts``), so an interrupted run leaves the family stopped, never
   running on half-moved state; running it again finishes the job, and a run with nothing to do
   moves nothing.

Records already queued in an old partition (and producers whose metadata is still the old count,
for up to metadata.max.age.ms) are forwarded by their consumer to their right partition without
an effect (consumers/delivery/runtime.py, streams/steps.py). Embargo release ticks are not moved: a tick
left in an old partition finds no state there and does nothing, and the worker owning the moved
state ticks again within its check interval. Re-keying with the same count (the Zalo rule of
``schemas.topics.command_key``) is the same run with N unchanged: step 4 then has nothing to do,
so the adapters must stay stopped until it returned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.errors import CoordinatorLoadInProgressError, CoordinatorNotAvailableError

from infra.kafka import clients
from infra.kafka.partitioning import partition_for
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.settings import Settings
from schemas.topics import RETRY_TIERS, Channel, Topic, command_key

log = logging.getLogger(__name__)

STREAMS = "streams"  # the family name of the stream worker's co-partitioned topics


class PartitionMismatch(RuntimeError):
    """A family's partition counts disagree with each other or with configuration. A process
    raising it has consumed and committed nothing; the message says what to run."""


class GrowRefused(RuntimeError):
    """``grow`` would not be safe now (processes running, configuration not asking for N, a
    shrink); nothing was changed."""


# record key and value of a state entry -> the key whose hash places it, None when unreadable
Home = Callable[[bytes, bytes], bytes | None]


@dataclass(frozen=True)
class Family:
    """Topics whose partition numbers must agree, the one input topic raised last, the compacted
    topic whose entries move, and who consumes them."""

    name: str
    topics: tuple[Topic, ...]
    input: Topic
    state: Topic
    home: Home
    processes: str  # "fanpage adapters", "stream workers"

    def group(self, settings: Settings) -> str:
        """The consumer group whose members must be stopped for a grow."""
        if self.name == STREAMS:
            return settings.app_id
        return f"{settings.topic_prefix}lantoa-{self.name}"


def _ledger_home(channel: Channel) -> Home:
    def home(_key: bytes, value: bytes) -> bytes | None:
        try:
            target = decode(value).get("target")
        except (InvalidContent, AttributeError):
            return None
        return command_key(channel, target) if isinstance(target, str) else None

    return home


def channel_topics(channel: Channel) -> list[Topic]:
    """Every topic whose partition number follows the command's: commands, retry tiers, ledger."""
    return [
        Topic.commands(channel),
        *(Topic.retry(channel, tier) for tier in RETRY_TIERS),
        Topic.ledger(channel),
    ]


def channel_family(channel: Channel) -> Family:
    return Family(
        channel.value,
        tuple(channel_topics(channel)),
        Topic.commands(channel),
        Topic.ledger(channel),
        _ledger_home(channel),
        f"{channel.value} adapters",
    )


STREAMS_FAMILY = Family(
    STREAMS,
    (Topic.CMS_ARTICLES, Topic.EMBARGO_RELEASES, Topic.ARTICLE_STATE),
    Topic.CMS_ARTICLES,
    Topic.ARTICLE_STATE,
    lambda key, _value: key or None,
    "stream workers",
)


def families() -> list[Family]:
    """Every family, channels first."""
    return [*(channel_family(c) for c in Channel), STREAMS_FAMILY]


def family(name: str) -> Family:
    """The family named ``name`` (a channel or ``streams``); ValueError otherwise."""
    for f in families():
        if f.name == name:
            return f
    raise ValueError(f"no topic family {name!r}: one of {', '.join(f.name for f in families())}")


def adapter_group(settings: Settings, channel: Channel) -> str:
    """The channel adapters' consumer group (DeliveryRuntime.group_id)."""
    return channel_family(channel).group(settings)


def _partitions_setting(fam: Family, n: int) -> str:
    return ",".join(f"{t.value}={n}" for t in fam.topics)


def _family(of: Channel | Family) -> Family:
    return of if isinstance(of, Family) else channel_family(of)


def mismatches(settings: Settings, of: Channel | Family, found: Mapping[str, int]) -> list[str]:
    """What disagrees, given the partition counts found on the cluster by physical topic name."""
    fam = _family(of)
    problems = []
    configured = {t: settings.partitions(t) for t in fam.topics}
    if len(set(configured.values())) > 1:
        problems.append(
            "configuration asks for " + ", ".join(f"{t.value}={n}" for t, n in configured.items())
        )
    for t, want in configured.items():
        name = settings.topic(t)
        have = found.get(name)
        if have is None:
            problems.append(f"{name} does not exist")
        elif have != want:
            problems.append(f"{name} has {have} partitions, configuration says {want}")
    return problems


def check_counts(settings: Settings, of: Channel | Family, found: Mapping[str, int]) -> None:
    """Raise PartitionMismatch (naming the command to run) unless the family's topics all have the
    configured count and configuration agrees with itself."""
    fam = _family(of)
    who = "stream worker" if fam.name == STREAMS else f"{fam.name} adapter"
    problems = mismatches(settings, fam, found)
    missing = [settings.topic(t) for t in fam.topics if settings.topic(t) not in found]
    if missing:
        raise PartitionMismatch(
            f"{who} refuses to start: {', '.join(missing)} missing; run `lantoa topics apply` first"
        )
    if problems:
        n = max(settings.partitions(t) for t in fam.topics)
        raise PartitionMismatch(
            f"{who} refuses to start: {'; '.join(problems)}. Stop the {fam.processes}, "
            f"set LANTOA_PARTITIONS={_partitions_setting(fam, n)} (every process) and run "
            f"`lantoa topics grow {fam.name} {n}`"
        )


async def family_counts(
    settings: Settings, of: Channel | Family, client_id: str, *also: Topic
) -> dict[str, int]:
    """The partition counts of the family's topics (and of ``also``) that exist, from the cluster's
    metadata (the aiokafka client of a service; raises what the client raises when the cluster is
    unreachable)."""
    fam = _family(of)
    client = clients.aio_client(settings.kafka, client_id=client_id)
    await client.bootstrap()
    try:
        cluster = await client.fetch_all_metadata()
    finally:
        await client.close()
    names = [settings.topic(t) for t in (*fam.topics, *also)]
    return {n: len(parts) for n in names if (parts := cluster.partitions_for_topic(n))}


channel_counts = family_counts


def current_partitions(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition counts of the topics that exist, by name."""
    found: dict[str, int] = {}
    for meta in admin.describe_topics(names):
        # A topic created a moment ago may answer LEADER_NOT_AVAILABLE (5) with its partitions
        # listed: it exists. UNKNOWN_TOPIC_OR_PARTITION (3) lists none.
        if meta.get("error_code", 0) in (0, 5) and meta.get("partitions"):
            found[meta.get("name") or meta["topic"]] = len(meta["partitions"])
    return found


def group_members(admin: KafkaAdminClient, group: str, tries: int = 30) -> int:
    """How many members the consumer group has now (0 for an empty or unknown group).

    The group coordinator may not be there yet (a new cluster creates the offsets topic on first
    use): that is asked again every 0.5 s, ``tries`` times, then raised."""
    for attempt in range(tries):
        try:
            described: Any = admin.describe_groups([group])
            break
        except (CoordinatorNotAvailableError, CoordinatorLoadInProgressError):
            if attempt + 1 >= tries:
                raise
            time.sleep(0.5)
    info = described.get(group) if isinstance(described, dict) else None
    if not info:
        return 0
    return len(info.get("members") or ())


@dataclass(frozen=True)
class GrowReport:
    """What ``grow`` did: topics raised (name → (before, after)), state entries moved, and
    entries left where they are because nothing places them (logged)."""

    raised: dict[str, tuple[int, int]]
    moved: int
    kept: int
    unplaceable: int


def grow(
    settings: Settings, of: Channel | Family, n: int, admin: KafkaAdminClient | None = None
) -> GrowReport:
    """Grow the family's topics to ``n`` partitions and move its state (see the module docstring).

    Raises GrowRefused before changing anything when it is not safe; Kafka errors propagate (a run
    interrupted by one is finished by running it again; the processes refuse to start meanwhile).
    """
    fam = _family(of)
    own = admin is None
    client = admin or clients.admin(
        settings.kafka, client_id=f"{settings.client_id}-grow", request_timeout_ms=30000
    )
    try:
        names = {t: settings.topic(t) for t in fam.topics}
        wrong_config = {t.value: settings.partitions(t) for t in names if settings.partitions(t) != n}
        if wrong_config:
            raise GrowRefused(
                f"configuration asks for {wrong_config}, not {n}: set "
                f"LANTOA_PARTITIONS={_partitions_setting(fam, n)} here and for every process first"
            )
        found = current_partitions(client, list(names.values()))
        missing = [name for name in names.values() if name not in found]
        if missing:
            raise GrowRefused(f"{', '.join(missing)} missing: run `lantoa topics apply` first")
        bigger = {name: c for name, c in found.items() if c > n}
        if bigger:
            raise GrowRefused(f"{bigger} already have more than {n} partitions; Kafka cannot shrink a topic")
        group = fam.group(settings)
        members = group_members(client, group)
        if members:
            raise GrowRefused(
                f"consumer group {group} has {members} member(s): stop the {fam.processes} "
                f"first (they refuse to start again until the grow is done)"
            )
        raised: dict[str, tuple[int, int]] = {}
        first = {names[t]: n for t in names if t is not fam.input and found[names[t]] < n}
        if first:
            client.create_partitions(first)
            raised.update({name: (found[name], n) for name in first})
        moved, kept, unplaceable = move_state(settings, fam, n)
        inp = names[fam.input]
        if found[inp] < n:
            client.create_partitions({inp: n})
            raised[inp] = (found[inp], n)
        log.info("%s grown to %d partitions: %s; %d state entries moved", fam.name, n, raised, moved)
        return GrowReport(raised, moved, kept, unplaceable)
    finally:
        if own:
            client.close()


def grow_channel(
    settings: Settings, channel: Channel, n: int, admin: KafkaAdminClient | None = None
) -> GrowReport:
    """``grow`` for a channel: its command, retry and ledger topics and its ledger."""
    return grow(settings, channel, n, admin)


def read_latest(settings: Settings, topic: str) -> dict[int, dict[bytes, bytes]]:
    """The latest value of every key in every partition of a compacted topic (tombstones
    applied), read from the beginning to the end offsets taken at the start."""
    consumer = clients.consumer(
        settings.kafka, group_id=None, enable_auto_commit=False, client_id=f"{settings.client_id}-grow-read"
    )
    try:
        parts = sorted(consumer.partitions_for_topic(topic) or ())
        tps = [TopicPartition(topic, p) for p in parts]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        latest: dict[int, dict[bytes, bytes]] = {p: {} for p in parts}
        remaining = {tp for tp in tps if end[tp] > 0}
        while remaining:
            for tp, recs in consumer.poll(timeout_ms=500, max_records=20000).items():
                for rec in recs:
                    if rec.key is None or rec.offset >= end[tp]:
                        continue
                    if rec.value is None:
                        latest[tp.partition].pop(rec.key, None)
                    else:
                        latest[tp.partition][rec.key] = rec.value
            remaining = {tp for tp in remaining if consumer.position(tp) < end[tp]}
        return latest
    finally:
        consumer.close()


def read_ledger(settings: Settings, channel: Channel) -> dict[int, dict[bytes, bytes]]:
    """``read_latest`` of the channel's ledger."""
    return read_latest(settings, settings.topic(Topic.ledger(channel)))


def producer_seeing(settings: Settings, topic: str, n: int, tries: int = 60) -> KafkaProducer:
    """A producer whose metadata has the ``n`` partitions just created (a new partition reaches the
    brokers' metadata a moment after CreatePartitions returns); RuntimeError after ``tries``."""
    for _ in range(tries):
        producer = clients.producer(
            settings.kafka,
            acks="all",
            client_id=f"{settings.client_id}-grow",
            max_request_size=8 * 1024 * 1024,
        )
        if len(producer.partitions_for(topic) or ()) >= n:
            return producer
        producer.close()
        time.sleep(0.5)
    raise RuntimeError(f"{topic} does not show {n} partitions in the cluster metadata; run the grow again")


def move_state(settings: Settings, of: Channel | Family, n: int) -> tuple[int, int, int]:
    """Move every state entry not in ``partition_for(home, n)`` there: the copy is acknowledged
    before the old one is tombstoned. Returns (moved, already in place, unplaceable). Entries
    nothing places (unreadable) stay where they are, logged."""
    fam = _family(of)
    topic = settings.topic(fam.state)
    latest = read_latest(settings, topic)
    copies: list[tuple[int, bytes, bytes]] = []
    tombstones: list[tuple[int, bytes]] = []
    kept = unplaceable = 0
    for p, entries in latest.items():
        for key, value in entries.items():
            home = fam.home(key, value)
            if home is None:
                unplaceable += 1
                log.error("%s[%d] %r: nothing places it, left where it is", topic, p, key[:80])
                continue
            right = partition_for(home, n)
            if right == p:
                kept += 1
                continue
            if key not in latest.get(right, {}):
                copies.append((right, key, value))
            tombstones.append((p, key))
    producer = producer_seeing(settings, topic, n)
    try:
        for batch in (copies, [(p, k, None) for p, k in tombstones]):
            futures = [producer.send(topic, key=k, value=v, partition=p) for p, k, v in batch]
            producer.flush()
            for f in futures:
                f.get(timeout=60)  # raises if any was not acknowledged: nothing is tombstoned then
    finally:
        producer.close()
    return len(tombstones), kept, unplaceable


def move_ledger(settings: Settings, channel: Channel, n: int) -> tuple[int, int, int]:
    """``move_state`` of the channel's ledger."""
    return move_state(settings, channel, n)
