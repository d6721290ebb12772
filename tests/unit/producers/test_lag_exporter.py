"""The lag exporter's arithmetic and the groups it watches (the broker part runs in tests/e2e)."""

from __future__ import annotations

from kafka import TopicPartition

from consumers.delivery.runtime import DeliveryRuntime
from producers.lag_exporter import lag_by_topic, publish, render, watched_groups
from schemas import metrics
from schemas.settings import Settings
from schemas.topics import Channel, Topic
from streams.app import StreamWorker


class _Adapter:
    def __init__(self, channel: Channel) -> None:
        self.channel = channel


def test_lag_counts_from_the_commit_or_from_the_first_offset() -> None:
    a0, a1, b0 = TopicPartition("a", 0), TopicPartition("a", 1), TopicPartition("b", 0)
    first = {a0: 0, a1: 100, b0: 5}
    end = {a0: 50, a1: 130, b0: 5}
    # a0 committed at 40; a1 never committed (its log starts at 100); b0 empty
    assert lag_by_topic({a0: 40, a1: None}, first, end) == {"a": 10 + 30, "b": 0}
    # a commit older than the log start (retention deleted it) counts from the log start
    assert lag_by_topic({a0: 40, a1: 20}, first, end) == {"a": 40, "b": 0}
    assert lag_by_topic({a0: -1}, first, {a0: 50}) == {"a": 50}


def test_the_watched_groups_are_the_ones_the_processes_use() -> None:
    settings = Settings(topic_prefix="x.", app_id="x.streams")
    groups = watched_groups(settings)
    for channel in Channel:
        runtime = DeliveryRuntime(settings, _Adapter(channel))  # type: ignore[arg-type]
        assert groups[runtime.group_id] == [
            runtime.commands_topic,
            *(t for t, _ in runtime.retry_topics.values()),
        ]
    worker = StreamWorker(settings)
    for loop in (worker.intake, worker.alerts):
        assert loop.sub.group_id is not None and groups[loop.sub.group_id] == list(loop.sub.topics)
    assert groups["x.streams"] == [settings.topic(Topic.CMS_ARTICLES), settings.topic(Topic.EMBARGO_RELEASES)]
    assert groups["x.streams-alerts"] == [settings.topic(Topic.ALERTS_CAP)]
    assert groups["x.lantoa-emergency"] == [settings.topic(Topic.EMERGENCY_COMMANDS)]


def test_series_of_topics_no_longer_polled_go_away() -> None:
    shown = publish({("g", "t1"): 3, ("g", "t2"): 4}, set())
    assert metrics.CONSUMER_LAG.labels("g", "t1")._value.get() == 3
    shown = publish({("g", "t2"): 1}, shown)
    samples = {
        s.labels["topic"]: s.value
        for m in metrics.CONSUMER_LAG.collect()
        for s in m.samples
        if s.labels["group"] == "g"
    }
    assert samples == {"t2": 1}
    publish({}, shown)


def test_render_is_a_table() -> None:
    text = render({("lantoa-zalo", "distribution.zalo.commands"): 12})
    assert text.splitlines()[0].split() == ["GROUP", "TOPIC", "LAG"]
    assert text.splitlines()[1].split() == ["lantoa-zalo", "distribution.zalo.commands", "12"]
