"""Triage follows the fanpage/Zalo ledgers across a ``lantoa topics grow``: a live entry copied to
its new partition and tombstoned in its old one stays known, whatever order the partitions are read."""

from __future__ import annotations

from typing import Any

from schemas.settings import Settings
from schemas.topics import Channel, Topic
from streams.engagement.store import Triage

KEY = "live|urn:lantoa:a:1|fanpage:p1"
VALUE = {"kind": "live", "uri": "urn:lantoa:a:1", "version": 1, "external_id": "1_2", "target": "fanpage:p1"}


class Reader:
    def __init__(self, records: list[tuple[str, int, str, Any]]) -> None:
        self.records = records

    async def catch_up(self) -> list[tuple[str, int, str, Any]]:
        out, self.records = self.records, []
        return out


class Index:
    def __init__(self) -> None:
        self.calls: list[tuple[Channel, str, Any]] = []

    def apply(self, channel: Channel, key: str, value: Any) -> None:
        self.calls.append((channel, key, value))


async def follow(order: list[tuple[int, Any]]) -> list[Any]:
    settings = Settings(topic_prefix="p.")
    triage = Triage(settings)
    topic = settings.topic(Topic.FANPAGE_LEDGER)
    triage.ledgers = Reader([(topic, p, KEY, v) for p, v in order])  # type: ignore[assignment]
    index = Index()
    triage.index = index  # type: ignore[assignment]
    await triage.follow_ledgers()
    return [v for _, _, v in index.calls]


async def test_the_old_partitions_tombstone_after_the_copy_is_not_applied() -> None:
    assert await follow([(12, VALUE), (3, VALUE), (3, None)]) == [VALUE, VALUE]


async def test_the_last_holder_tombstone_is_applied() -> None:
    assert await follow([(3, VALUE), (3, None)]) == [VALUE, None]
    assert await follow([(3, VALUE), (12, VALUE), (3, None), (12, None)]) == [VALUE, VALUE, None]
