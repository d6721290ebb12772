"""CompactedView: values per held partition, tombstones, and no guessing for partitions not held."""

from __future__ import annotations

import orjson
import pytest

from infra.kafka.compacted import CompactedView, PartitionNotHeld


def held(*partitions: int) -> CompactedView:
    view = CompactedView("t")
    view._parts.update({p: {} for p in partitions})  # what load() leaves behind
    return view


def test_record_applies_and_returns_the_durable_record() -> None:
    view = held(2)
    rec = view.record(2, "urn:a", {"version": 3})
    assert (rec.topic, rec.key, rec.partition) == ("t", b"urn:a", 2)
    assert orjson.loads(rec.value or b"") == {"version": 3}
    assert view.get(2, "urn:a") == {"version": 3} and view.get(2, "urn:b") is None
    tomb = view.record(2, "urn:a", None)
    assert tomb.value is None and view.get(2, "urn:a") is None


def test_a_partition_not_held_is_an_error_not_an_absent_key() -> None:
    view = held(0)
    with pytest.raises(PartitionNotHeld):
        view.get(1, "urn:a")
    with pytest.raises(PartitionNotHeld):
        view.record(1, "urn:a", {"version": 1})
    view.drop({0})
    with pytest.raises(PartitionNotHeld):
        view.get(0, "urn:a")
    assert list(view.items(0)) == [] and view.owned() == set()
