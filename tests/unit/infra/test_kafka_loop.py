"""The consumer loop (infra/kafka/loop.py) over an in-memory consumer, outbox and poison topic.

- outputs are acknowledged before the commit, and the commit names the records handled;
- an unexpected exception is retried a bounded number of times (each retry counted durably first),
  then the record becomes a dead letter with its origin, type, message and traceback digest;
- a record that kills the process is found and dead-lettered after restarts (the durable count);
- a batch handler's failure is isolated one record at a time;
- the dead-letter limit, at its bound and past it; contract refusals (stage decode) not counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import TopicPartition

from infra.kafka.compacted import CompactedView
from infra.kafka.loop import Batch, ConsumerLoop, Handled, Subscription
from infra.kafka.outbox import OutRecord
from infra.kafka.poison import DeadLetterLimitExceeded
from schemas import metrics
from schemas.deadletter import dead_letter_headers
from schemas.settings import Settings, SettingsError
from schemas.topics import Topic

TOPIC = "in.topic"
TP = TopicPartition(TOPIC, 0)


@dataclass
class Rec:
    offset: int
    value: bytes
    key: bytes = b"k"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


class Broker:
    """What survives a process: the events in order, the committed offsets, the poison topic."""

    def __init__(self, settings: Settings) -> None:
        self.events: list[tuple[str, Any]] = []
        self.committed: dict[TopicPartition, int] = {}
        self.poison_topic = settings.topic(Topic.POISON)
        self.poison: dict[str, Any] = {}

    async def read_poison(self) -> dict[str, Any]:
        return dict(self.poison)

    def sent(self, topic: str) -> list[OutRecord]:
        return [r for kind, recs in self.events if kind == "send" for r in recs if r.topic == topic]


class FakeOutbox:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    async def send_all(self, records: Sequence[OutRecord]) -> None:
        if not records:
            return
        self.broker.events.append(("send", list(records)))
        for r in records:
            if r.topic == self.broker.poison_topic:
                if r.value is None:
                    self.broker.poison.pop(r.key.decode(), None)
                else:
                    self.broker.poison[r.key.decode()] = orjson.loads(r.value)


class FakeConsumer:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.broker.events.append(("commit", dict(offsets)))
        self.broker.committed.update(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.broker.events.append(("seek", (tp, offset)))


class Killed(BaseException):
    """os._exit / OOM: nothing after it runs."""


class Records:
    """A process: one output per record; raises ``fail[offset]`` (an exception or a count of
    ValueErrors still to raise) for the records named there."""

    def __init__(
        self,
        *,
        batch_at_once: bool = False,
        fail: dict[int, Any] | None = None,
        refuse: set[int] | None = None,
        decode_refuse: set[int] | None = None,
    ) -> None:
        self.subscription = Subscription("test", (TOPIC,), "g", batch_at_once=batch_at_once)
        self.fail, self.refuse, self.decode_refuse = fail or {}, refuse or set(), decode_refuse or set()
        self.calls: list[int] = []
        self.batches: list[list[int]] = []

    @property
    def views(self) -> Sequence[CompactedView]:
        return ()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        pass

    def revoked(self, revoked: set[TopicPartition]) -> None:
        pass

    async def tick(self) -> list[OutRecord]:
        return []

    def boom(self, offset: int) -> None:
        todo = self.fail.get(offset)
        if isinstance(todo, int) and todo > 0:
            self.fail[offset] = todo - 1
            raise ValueError(f"bad luck at {offset}")
        if isinstance(todo, BaseException):
            raise todo

    async def handle(self, batch: Batch) -> Handled:
        out = []
        self.batches.append([r.offset for recs in batch.values() for r in recs])
        for tp, recs in batch.items():
            for rec in recs:
                self.calls.append(rec.offset)
                self.boom(rec.offset)
                if rec.offset in self.refuse or rec.offset in self.decode_refuse:
                    stage = "deliver" if rec.offset in self.refuse else "decode"
                    headers = dead_letter_headers(
                        [],
                        topic=tp.topic,
                        partition=tp.partition,
                        offset=rec.offset,
                        reason="refused",
                        stage=stage,
                        now_iso="2026-11-26T01:00:00Z",
                    )
                    out.append(OutRecord("distribution.deadletter", rec.key, rec.value, tuple(headers)))
                else:
                    out.append(OutRecord("out", rec.key, rec.value))
        commit = (
            {tp: recs[-1].offset + 1 for tp, recs in batch.items()} if self.subscription.batch_at_once else {}
        )
        return Handled(out=out, commit=commit)


def settings(**env: str) -> Settings:
    return Settings.from_env({f"LANTOA_{k.upper()}": v for k, v in env.items()})


def loop(broker: Broker, process: Records, s: Settings | None = None) -> tuple[ConsumerLoop, list[float]]:
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)

    made = ConsumerLoop(
        s or settings(),
        process,
        FakeOutbox(broker),
        consumer=FakeConsumer(broker),  # type: ignore[arg-type]
        sleep=sleep,
        rng=lambda: 0.5,
        poison_reader=broker.read_poison,
        clock=lambda: 1000.0,
    )
    return made, sleeps


def records(first: int, last: int) -> dict[TopicPartition, list[Any]]:
    return {TP: [Rec(i, f"v{i}".encode()) for i in range(first, last + 1)]}


def dead_letters(broker: Broker) -> list[dict[str, str]]:
    return [{k: v.decode() for k, v in r.headers} for r in broker.sent("distribution.deadletter")]


async def test_outputs_are_acknowledged_before_the_commit_which_comes_last() -> None:
    broker = Broker(settings())
    process = Records()
    consumer_loop, _ = loop(broker, process)
    await consumer_loop.take(records(0, 4))
    kinds = [kind for kind, _ in broker.events]
    assert kinds == ["send", "commit"]
    assert [r.value for r in broker.events[0][1]] == [f"v{i}".encode() for i in range(5)]
    assert broker.committed == {TP: 5}


async def test_an_unexpected_error_is_retried_counted_then_dead_lettered_and_the_partition_moves_on() -> None:
    broker = Broker(settings())
    process = Records(fail={2: 99})
    consumer_loop, sleeps = loop(broker, process)
    before = metrics.POISON_RECORDS.labels("test", TOPIC)._value.get()
    await consumer_loop.take(records(0, 4))
    assert process.calls.count(2) == 3  # LANTOA_POISON_MAX_ATTEMPTS (default 3), no more
    assert process.calls[-2:] == [3, 4]  # the later records are handled
    assert len(sleeps) == 2 and all(0 < s <= 2.0 for s in sleeps)  # jittered backoff between attempts
    # each retry was counted durably before it started (attempts 2 and 3)
    notes = [orjson.loads(r.value) for r in broker.sent(broker.poison_topic) if r.value]
    assert [n["attempts"] for n in notes] == [2, 3] and notes[0]["error_class"] == "ValueError"
    (letter,) = dead_letters(broker)
    assert letter["dlq_stage"] == "poison" and letter["dlq_error_class"] == "ValueError"
    assert (letter["dlq_topic"], letter["dlq_partition"], letter["dlq_offset"]) == (TOPIC, "0", "2")
    assert "bad luck at 2" in letter["dlq_reason"] and "3 attempts" in letter["dlq_reason"]
    assert re.fullmatch(r"[0-9a-f]{64}", letter["dlq_traceback_sha256"])
    assert "in boom" in letter["dlq_traceback_last"]
    assert metrics.POISON_RECORDS.labels("test", TOPIC)._value.get() == before + 1
    assert broker.committed == {TP: 5}
    await consumer_loop.take(records(5, 5))
    assert broker.poison == {}  # the commit moved past it: its entry is removed with the next outputs
    # the records before the poison one were committed before its first retry
    assert ("commit", {TP: 2}) in broker.events


async def test_a_record_that_fails_once_is_handled_on_its_retry_without_a_dead_letter() -> None:
    broker = Broker(settings())
    process = Records(fail={1: 1})
    consumer_loop, sleeps = loop(broker, process)
    await consumer_loop.take(records(0, 2))
    assert process.calls == [0, 1, 1, 2] and len(sleeps) == 1
    assert dead_letters(broker) == [] and [r.value for r in broker.sent("out")] == [b"v0", b"v1", b"v2"]
    assert broker.committed == {TP: 3}


@pytest.mark.parametrize("max_attempts", [1, 2])
async def test_the_attempt_limit_is_configurable(max_attempts: int) -> None:
    broker = Broker(settings())
    process = Records(fail={0: 99})
    consumer_loop, _ = loop(broker, process, settings(poison_max_attempts=str(max_attempts)))
    await consumer_loop.take(records(0, 0))
    assert process.calls == [0] * max_attempts and len(dead_letters(broker)) == 1


async def test_a_record_that_kills_the_process_is_found_across_restarts_and_dead_lettered() -> None:
    broker = Broker(settings())
    killer = 5
    restarts = 0
    handled_killer = 0
    while True:
        process = Records(fail={killer: Killed()})
        consumer_loop, _ = loop(broker, process)
        await consumer_loop.assigned({TP})
        start = broker.committed.get(TP, 0)
        try:
            await consumer_loop.take(records(start, 9))
        except Killed:
            restarts += 1
            handled_killer += process.calls.count(killer)
            assert restarts < 10, "the crash-restart-crash cycle was not recognised"
            continue
        break
    assert handled_killer == 4  # once in the first batch, then one at a time: 3 marked attempts
    (letter,) = dead_letters(broker)
    assert letter["dlq_offset"] == str(killer) and letter["dlq_error_class"] == "ProcessKilled"
    assert letter["dlq_stage"] == "poison"
    assert broker.committed == {TP: 10}
    # every other record went out (some more than once: at-least-once, the ledgers absorb it)
    assert {r.value for r in broker.sent("out")} == {f"v{i}".encode() for i in range(10) if i != killer}
    await consumer_loop.take(records(10, 10))
    assert broker.poison == {}


async def test_a_killer_that_raised_before_keeps_its_error_in_the_dead_letter() -> None:
    broker = Broker(settings())
    # attempt 1 raises ValueError (counted: attempts 2 written), attempt 2 kills the process
    process = Records(fail={0: 1})
    consumer_loop, _ = loop(broker, process)

    async def kill_on_second(batch: Batch) -> Handled:
        if process.calls.count(0) == 1:
            raise Killed()
        return await Records.handle(process, batch)

    await consumer_loop.assigned({TP})
    process.handle = kill_on_second  # type: ignore[method-assign]
    with pytest.raises(Killed):
        await consumer_loop.take(records(0, 0))
    assert broker.poison and next(iter(broker.poison.values()))["attempts"] == 2
    for _ in range(5):
        again = Records(fail={0: Killed()})
        restarted, _ = loop(broker, again)
        await restarted.assigned({TP})
        try:
            await restarted.take(records(0, 0))
            break
        except Killed:
            continue
    (letter,) = dead_letters(broker)
    assert letter["dlq_error_class"] == "ValueError" and "bad luck at 0" in letter["dlq_reason"]


async def test_a_failing_batch_is_isolated_one_record_at_a_time() -> None:
    broker = Broker(settings())
    process = Records(batch_at_once=True, fail={3: 99})
    consumer_loop, _ = loop(broker, process)
    await consumer_loop.take(records(0, 5))
    assert process.batches[0] == [0, 1, 2, 3, 4, 5]  # the whole batch once, then one by one
    assert all(len(b) == 1 for b in process.batches[1:])
    (letter,) = dead_letters(broker)
    assert letter["dlq_offset"] == "3"
    assert sorted(r.value for r in broker.sent("out")) == sorted(f"v{i}".encode() for i in range(6) if i != 3)
    assert broker.committed == {TP: 6}


def limit_settings() -> Settings:
    return settings(dlq_limit_share="0.5", dlq_limit_min_records="4", dlq_limit_window_s="60")


async def test_the_dead_letter_limit_at_its_bound_lets_the_batch_through() -> None:
    broker = Broker(limit_settings())
    consumer_loop, _ = loop(broker, Records(refuse={0, 1}), limit_settings())
    await consumer_loop.take(records(0, 3))  # 2 of 4: exactly the share, not more
    assert broker.committed == {TP: 4}


async def test_past_the_dead_letter_limit_the_process_stops_without_committing() -> None:
    broker = Broker(limit_settings())
    consumer_loop, _ = loop(broker, Records(refuse={0, 1, 2}), limit_settings())
    with pytest.raises(DeadLetterLimitExceeded) as stopped:
        await consumer_loop.take(records(0, 3))  # 3 of 4
    assert broker.committed == {} and broker.sent("out") == [] and dead_letters(broker) == []
    message = str(stopped.value)
    assert "3 of 4 records" in message and TOPIC in message and "--stage poison" in message


async def test_the_dead_letter_limit_waits_for_its_minimum_and_counts_poison_records() -> None:
    broker = Broker(limit_settings())
    consumer_loop, _ = loop(broker, Records(fail={0: 99, 1: 99, 2: 99}), limit_settings())
    await consumer_loop.take(records(0, 2))  # 3 of 3 dead, but fewer than 4 seen
    assert broker.committed == {TP: 3}
    with pytest.raises(DeadLetterLimitExceeded):
        await consumer_loop.take(records(3, 3))  # the fourth: 3 of 4 in the window


async def test_contract_refusals_of_input_are_not_counted_by_the_limit() -> None:
    broker = Broker(limit_settings())
    consumer_loop, _ = loop(broker, Records(decode_refuse=set(range(400))), limit_settings())
    await consumer_loop.take(records(0, 399))  # 400 hostile records: all dead letters, nobody stops
    assert broker.committed == {TP: 400} and len(dead_letters(broker)) == 400


async def test_the_dead_letter_limit_counts_per_window() -> None:
    s = limit_settings()
    broker = Broker(s)
    now = [1000.0]
    consumer_loop = ConsumerLoop(
        s,
        Records(refuse={0, 1, 2, 4, 5, 6}),
        FakeOutbox(broker),  # type: ignore[arg-type]
        consumer=FakeConsumer(broker),
        poison_reader=broker.read_poison,
        clock=lambda: now[0],
    )
    await consumer_loop.take(records(0, 2))  # 3 of 3: below the minimum
    now[0] += 60.0  # a new window: the three do not count any more
    await consumer_loop.take(records(3, 3))
    now[0] += 59.9  # same window: 1 + 3 seen, 3 dead: over
    with pytest.raises(DeadLetterLimitExceeded):
        await consumer_loop.take(records(4, 6))
    assert broker.committed == {TP: 4}


async def test_a_careful_record_left_for_later_takes_its_marker_back() -> None:
    broker = Broker(settings())
    process = Records(batch_at_once=True)
    consumer_loop, _ = loop(broker, process)
    key = consumer_loop.poison.key(TP, 0)
    broker.poison[key] = {
        "group": "g",
        "topic": TOPIC,
        "partition": 0,
        "offset": 0,
        "span_end": 0,
        "attempts": 1,
        "error_class": None,
        "reason": None,
        "at": "2026-11-26T01:00:00Z",
    }

    async def not_due(batch: Batch) -> Handled:  # a retry-tier record whose time has not come
        consumer_loop.seek(TP, 0)
        return Handled()

    process.handle = not_due  # type: ignore[method-assign]
    await consumer_loop.assigned({TP})
    for _ in range(5):  # fetched again and again before it is due: never counted as an attempt
        await consumer_loop.take(records(0, 1))
    assert broker.poison[key]["attempts"] == 1 and broker.committed == {}
    process.handle = Records.handle.__get__(process)  # type: ignore[method-assign]
    await consumer_loop.take(records(0, 1))
    assert broker.committed == {TP: 2} and dead_letters(broker) == []


def test_the_poison_and_limit_settings_are_read_once_and_checked() -> None:
    s = settings(
        poison_max_attempts="5", dlq_limit_share="0.25", dlq_limit_min_records="10", dlq_limit_window_s="30"
    )
    assert (s.poison_max_attempts, s.dlq_limit_share, s.dlq_limit_min_records, s.dlq_limit_window_s) == (
        5,
        0.25,
        10,
        30.0,
    )
    assert settings().poison_max_attempts == 3 and settings().dlq_limit_share == 0.5
    assert settings(poison_max_attempts="1").poison_max_attempts == 1
    with pytest.raises(SettingsError, match="POISON_MAX_ATTEMPTS"):
        settings(poison_max_attempts="0")
    assert settings(dlq_limit_share="1").dlq_limit_share == 1.0
    for share in ("1.5", "0"):
        with pytest.raises(SettingsError, match="DLQ_LIMIT_SHARE"):
            settings(dlq_limit_share=share)
    assert settings(dlq_limit_min_records="1").dlq_limit_min_records == 1
    with pytest.raises(SettingsError, match="MIN_RECORDS"):
        settings(dlq_limit_min_records="0")
