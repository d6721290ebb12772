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


def test_the_ledger_holds_finished_commands_slim_but_writes_them_whole() -> None:
    from consumers.delivery.ledger import Ledger

    ledger = Ledger("l")
    ledger._parts[0] = {}
    done = {
        "kind": "command",
        "command_id": "c1",
        "uri": "urn:a",
        "version": 1,
        "target": "zone:1",
        "action": "publish",
        "state": "done",
        "outcome": "delivered",
        "external_id": "x",
        "attempts": 1,
        "reason": None,
        "at": "2026-11-26T01:00:00Z",
    }
    rec = ledger.record(0, "c1", done)
    assert orjson.loads(rec.value or b"") == done
    assert ledger.command(0, "c1") == {
        "kind": "command",
        "state": "done",
        "outcome": "delivered",
        "external_id": "x",
        "attempts": 1,
        "reason": None,
    }
    intent = {**done, "state": "intent", "outcome": None, "detail": {"progress": {"parts": 1}}}
    ledger.record(0, "c2", intent)
    assert ledger.command(0, "c2") == intent  # what a reconciliation needs stays whole
    bulletin = {"bulletin_id": "b1", "title": "Tin", "published_at": "2026-11-26T01:00:00Z"}
    for zone in ("zone:1", "zone:2"):
        live = {
            "kind": "live",
            "uri": "urn:a",
            "version": 2,
            "target": zone,
            "external_id": f"{zone}/b1",
            "retracted": False,
            "at": "2026-11-26T01:00:00Z",
            "detail": {"bulletin": dict(bulletin), "placed": [{"date": "2026-11-27"}]},
        }
        assert orjson.loads(ledger.record(0, f"live|urn:a|{zone}", live).value or b"") == live
    one, two = (ledger.live(0, "urn:a", z) for z in ("zone:1", "zone:2"))
    assert one is not None and two is not None
    assert one["version"] == 2 and one["retracted"] is False and one["external_id"] == "zone:1/b1"
    assert one["detail"]["bulletin"] == bulletin and one["detail"]["bulletin"] is two["detail"]["bulletin"]
