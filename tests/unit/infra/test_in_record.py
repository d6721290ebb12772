"""Records are typed at the loop's edge: what aiokafka hands over becomes an InRecord."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from infra.kafka.loop import InRecord


def test_a_consumer_record_becomes_an_in_record() -> None:
    raw = ConsumerRecord(
        topic="cms.articles",
        partition=2,
        offset=41,
        timestamp=1764550000000,
        timestamp_type=0,
        key=b"urn:a",
        value=b"{}",
        checksum=None,
        serialized_key_size=5,
        serialized_value_size=2,
        headers=[("ce_id", b"e1"), ("empty", None)],
    )
    rec = InRecord.of(raw)
    assert rec == InRecord(
        "cms.articles", 2, 41, b"urn:a", b"{}", (("ce_id", b"e1"), ("empty", b"")), 1764550000000
    )


def test_missing_headers_and_timestamp_are_empty() -> None:
    class Bare:
        topic, partition, offset, key, value, headers = "t", 0, 1, None, None, None

    assert InRecord.of(Bare()) == InRecord("t", 0, 1, None, None, (), None)
