"""The bounded ledger, without Kafka: finished entries leave at the horizon, live ones stay.

- a ``done``/``failed`` command entry or a retracted live entry exactly at the horizon is removed,
  one a second younger is kept; a live entry still out at a target is kept however old;
- a sweep looks at no more than its budget of entries and goes on where it stopped;
- the runtime's sweep (injectable clock) tombstones what expired, acknowledged, at most once per
  interval; a command seen again after its entry left would be new again, which the horizon
  (retention + one segment of the command and retry topics) rules out;
- finished and live entries are held as small tuples; the runtime reads them as before.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timezone
from typing import Any, ClassVar

from consumers.delivery.base import Effect, Prior
from consumers.delivery.ledger import Finished, Ledger, Live, horizon_s, live_key
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from infra.kafka.outbox import OutRecord
from schemas.models import Command
from schemas.settings import Settings
from schemas.topics import Channel, Topic, descriptors

T0 = 1_789_999_980.0  # 2026-09-21, a whole minute: entries' ages are held rounded up to the minute


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def done(cid: str, t: float, state: str = "done") -> dict[str, Any]:
    return {
        "kind": "command",
        "command_id": cid,
        "uri": "urn:a",
        "version": 1,
        "target": "zone:1",
        "action": "publish",
        "state": state,
        "outcome": "delivered" if state == "done" else None,
        "external_id": "x-1",
        "attempts": 1,
        "reason": None,
        "at": iso(t),
    }


def live(uri: str, t: float, retracted: bool) -> dict[str, Any]:
    return {
        "kind": "live",
        "uri": uri,
        "version": 2,
        "target": "zone:1",
        "external_id": "x-2",
        "retracted": retracted,
        "at": iso(t),
        "detail": {"bulletin": {"id": "b"}},
    }


def test_the_horizon_is_retention_plus_one_segment_of_the_command_and_retry_topics() -> None:
    for channel in Channel:
        desc = descriptors()[Topic.commands(channel)]
        assert desc.retention_ms == 7 * 86400 * 1000 and desc.extra_config["segment.ms"] == "3600000"
        assert horizon_s(channel) == 7 * 86400 + 3600


def test_finished_entries_at_the_horizon_leave_and_younger_ones_stay() -> None:
    h = 1000.0
    ledger = Ledger("l", horizon=h)
    ledger._parts[0] = {}
    now = T0 + h
    ledger.apply(0, "at-horizon", done("at-horizon", T0))
    ledger.apply(0, "failed-at-horizon", done("failed-at-horizon", T0, "failed"))
    ledger.apply(0, "one-second-younger", done("one-second-younger", T0 + 1))  # held as T0 + 60: never early
    ledger.apply(0, "in-flight", {**done("in-flight", T0 - 10 * h), "state": "intent"})
    ledger.apply(0, "unknown", {**done("unknown", T0 - 10 * h), "state": "unknown"})
    ledger.apply(0, live_key("urn:retracted", "zone:1"), live("urn:retracted", T0, True))
    ledger.apply(0, live_key("urn:live", "zone:1"), live("urn:live", T0 - 100 * h, False))
    ledger.apply(0, live_key("urn:retracted-late", "zone:1"), live("urn:retracted-late", T0 + 60, True))
    gone = sorted(k for _, k in ledger.expired(now))
    assert gone == sorted(["at-horizon", "failed-at-horizon", live_key("urn:retracted", "zone:1")])
    assert sorted(k for _, k in ledger.expired(now + 59)) == gone  # a second younger: kept, not removed early
    # A minute later the younger ones are past it too; intents, unknowns and live effects never are.
    later = sorted(k for _, k in ledger.expired(now + 60))
    assert later == sorted(
        [
            "at-horizon",
            "failed-at-horizon",
            live_key("urn:retracted", "zone:1"),
            "one-second-younger",
            live_key("urn:retracted-late", "zone:1"),
        ]
    )


def test_a_sweep_looks_at_no_more_than_its_budget_and_goes_on_where_it_stopped() -> None:
    ledger = Ledger("l", horizon=10.0)
    for p in (0, 1):
        ledger._parts[p] = {}
        for i in range(7):
            ledger.apply(p, f"p{p}-{i}", done(f"p{p}-{i}", T0))
    now = T0 + 10
    seen: list[str] = []
    calls = []
    for _ in range(4):
        found = ledger.expired(now, budget=5)
        calls.append(len(found))
        for p, key in found:  # what the runtime does with them
            ledger.apply(p, key, None)
        seen += [k for _, k in found]
    assert calls == [5, 5, 4, 0]  # at the budget, at the budget, the rest, then a pass finding nothing
    assert len(set(seen)) == 14 and ledger.size() == 0
    ledger.apply(0, "again", done("again", T0))
    assert ledger.expired(now, budget=0) == []  # nothing looked at


def test_finished_and_live_entries_are_held_small_and_read_as_before() -> None:
    ledger = Ledger("l")
    ledger._parts[0] = {}
    ledger.apply(0, "c", done("c", T0))
    ledger.apply(0, live_key("urn:a", "zone:1"), live("urn:a", T0, False))
    held = ledger._parts[0]["c"]
    assert isinstance(held, Finished) and held.at_s == int(T0)
    assert isinstance(ledger._parts[0][("urn:a", "zone:1")], Live)  # a live key is held as (uri, target)
    assert ledger.command(0, "c") == {
        "kind": "command",
        "state": "done",
        "outcome": "delivered",
        "external_id": "x-1",
        "attempts": 1,
        "reason": None,
    }
    got = ledger.live(0, "urn:a", "zone:1")
    assert got is not None and (got["version"], got["external_id"], got["retracted"]) == (2, "x-2", False)
    assert got["detail"] == {"bulletin": {"id": "b"}}
    # A finished entry costs a small tuple, not the entry's dict.
    assert sys.getsizeof(held) < sys.getsizeof(done("c", T0)) / 2


def test_live_keys_are_held_as_shared_pairs_and_written_back_as_they_came() -> None:
    ledger = Ledger("l")
    ledger._parts[0] = {}
    for zone in ("zone:1", "zone:2"):
        for uri in ("urn:a", "urn:b|with-bar"):
            ledger.apply(0, live_key(uri, zone), live(uri, T0, False))
    keys = ledger.held_keys(0)
    assert all(isinstance(k, tuple) for k in keys) and len(keys) == 4
    assert len({id(k[0]) for k in keys}) == 2 and len({id(k[1]) for k in keys}) == 2  # each string once
    assert sorted(k for k, _ in ledger.items(0)) == sorted(
        live_key(u, z) for z in ("zone:1", "zone:2") for u in ("urn:a", "urn:b|with-bar")
    )
    assert ledger.live(0, "urn:b|with-bar", "zone:2") is not None
    # A key that only looks like one keeps its own form, and still round-trips.
    for odd in ("live|no-bar", "live|", "x" * 64, "A" * 64):
        assert ledger.topic_key(ledger.memory_key(odd)) == odd
    record = ledger.forget(0, live_key("urn:a", "zone:1"))
    assert record.key == live_key("urn:a", "zone:1").encode() and ledger.live(0, "urn:a", "zone:1") is None
    assert len(ledger.held_keys(0)) == 3


class FakeOutbox:
    def __init__(self) -> None:
        self.sends: list[list[OutRecord]] = []

    async def send_all(self, records: list[OutRecord]) -> None:
        if records:
            self.sends.append(list(records))


class Idle:
    channel: ClassVar[Channel] = Channel.LOUDSPEAKER

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        raise AssertionError("no delivery in these tests")

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        raise AssertionError("no delivery in these tests")


async def test_the_runtime_sweep_tombstones_what_expired_once_per_interval() -> None:
    now = [T0]
    rt = DeliveryRuntime(Settings(), Idle(), RuntimeConfig(sweep_interval_s=60.0), clock=lambda: now[0])
    outbox = FakeOutbox()
    rt.outbox = outbox  # type: ignore[assignment]
    rt.ledger._parts[3] = {}
    rt.ledger.apply(3, "old", done("old", T0 - rt.ledger.horizon))
    rt.ledger.apply(3, "young", done("young", T0 - rt.ledger.horizon + 30))
    assert await rt.sweep() == 1
    assert [(r.key, r.value, r.partition) for s in outbox.sends for r in s] == [(b"old", None, 3)]
    assert rt.ledger.command(3, "old") is None and rt.ledger.command(3, "young") is not None
    now[0] += 59.0  # before the interval: nothing looked at
    assert await rt.sweep() == 0 and len(outbox.sends) == 1
    now[0] += 1.0  # at the interval: "young" is past the horizon too
    assert await rt.sweep() == 1
    assert outbox.sends[-1][0].key == b"young" and rt.ledger.size() == 0


def test_a_live_entry_leaves_when_the_adapter_says_it_is_no_longer_out_there() -> None:
    until = T0 + 500
    ledger = Ledger("l", horizon=1e9, live_until=lambda detail: until if detail.get("bulletin") else None)
    ledger._parts[0] = {}
    ledger.apply(0, live_key("urn:expiring", "zone:1"), live("urn:expiring", T0, False))
    ledger.apply(0, live_key("urn:kept", "zone:1"), {**live("urn:kept", T0, False), "detail": {}})
    assert ledger.expired(until - 1) == []  # a second before: still out at the zone
    assert ledger.expired(until) == [(0, live_key("urn:expiring", "zone:1"))]  # at it: gone
    assert ledger.expired(until + 1e6) == [(0, live_key("urn:expiring", "zone:1"))]  # never the other


def test_the_loudspeaker_keeps_a_live_zone_entry_a_day_past_its_bulletins_expiry() -> None:
    from consumers.loudspeaker.adapter import LoudspeakerAdapter
    from consumers.loudspeaker.zones import KEEP_EXPIRED_S

    bulletin = {
        "bulletin_id": "b1",
        "uri": "urn:a",
        "version": 1,
        "priority": "normal",
        "title": "t",
        "duration_s": 10.0,
        "published_at": "2026-11-26T01:00:00Z",
        "expires_at": "2026-11-29T01:00:00Z",
        "audio_url": None,
        "audio_path": None,
        "correction": False,
        "corrects": None,
        "reason": None,
    }
    expiry = datetime(2026, 11, 29, 1, tzinfo=UTC).timestamp()
    until = LoudspeakerAdapter.live_until(
        {"bulletin": bulletin, "earlier": [], "retracted": None, "correction": None}
    )
    assert until == expiry + KEEP_EXPIRED_S == expiry + 86400
    assert LoudspeakerAdapter.live_until({"reason": "emergencies go through the emergency lane"}) is None
