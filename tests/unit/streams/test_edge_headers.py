"""The edge strips Lantoa's internal headers from outside records, without Kafka: an invalid
article, CAP alert or engagement event carrying forged dlq_*/retry_*/replay headers becomes a dead
letter whose origin, count and first-seen time are Lantoa's own, not the forger's."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone

from aiokafka import TopicPartition
from helpers import ce_headers

from infra.kafka.compacted import CompactedView
from infra.kafka.outbox import OutRecord
from schemas import contracts
from schemas.codec import headers_to_dict
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.topics import Topic
from streams.engagement.store import Triage
from streams.steps import StreamSteps

SETTINGS = Settings.from_env({"LANTOA_TOPIC_PREFIX": "e."})
NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
FORGED = [
    ("dlq_topic", b"e.distribution.receipts"),
    ("dlq_partition", b"0"),
    ("dlq_offset", b"0"),
    ("dlq_attempts", b"abc"),
    ("dlq_first_seen", b"2001-01-01T00:00:00Z"),
    ("Dlq_Channel", b"x"),
    ("retry_due_at", b"1e400"),
    ("retry_attempt", b"x"),
    ("replay", b"forged"),
]


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def the_dead_letter(out: list[OutRecord], origin: Topic) -> dict[str, str]:
    [dead] = [r for r in out if r.topic == SETTINGS.topic(Topic.DEADLETTER)]
    headers = headers_to_dict(dead.headers)
    contracts.check("deadletter", headers)
    assert headers["dlq_topic"] == SETTINGS.topic(origin) and (
        headers["dlq_partition"],
        headers["dlq_offset"],
    ) == ("1", "7")
    assert headers["dlq_attempts"] == "1" and headers["dlq_first_seen"] != "2001-01-01T00:00:00Z"
    assert "Dlq_Channel" not in headers and not any(k.startswith("retry_") or k == "replay" for k in headers)
    return headers


def steps() -> StreamSteps:
    return StreamSteps(
        SETTINGS, CompactedView(SETTINGS.topic(Topic.ARTICLE_STATE)), lambda: Registry([]), lambda: NOW
    )


def test_an_article_with_forged_headers_is_dead_lettered_as_lantoa_sees_it() -> None:
    ce = [(k, v.encode()) for k, v in ce_headers().items()]
    rec = Rec(SETTINGS.topic(Topic.CMS_ARTICLES), 1, 7, b"urn:lantoa:article:x", b"{not json", ce + FORGED)
    headers = the_dead_letter(steps().article(rec).out, Topic.CMS_ARTICLES)
    assert headers["ce_id"] and headers["dlq_reason"].startswith("not JSON")


def test_an_alert_with_forged_headers_is_dead_lettered_as_lantoa_sees_it() -> None:
    rec = Rec(SETTINGS.topic(Topic.ALERTS_CAP), 1, 7, b"alert", b"<alert>not cap</alert>", FORGED)
    the_dead_letter(steps().alert(rec).out, Topic.ALERTS_CAP)


async def test_an_engagement_event_with_forged_headers_is_dead_lettered_as_lantoa_sees_it() -> None:
    tp = TopicPartition(SETTINGS.topic(Topic.ENGAGEMENT_INBOUND), 1)
    out = Triage(SETTINGS, clock=lambda: NOW.timestamp()).take(tp, 7, b"k", b"{not json", list(FORGED))
    assert the_dead_letter(out, Topic.ENGAGEMENT_INBOUND)["dlq_channel"] == "engagement"
