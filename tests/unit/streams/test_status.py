"""The status fold: receipts and commands → per article, channel and target state. Pure, order-free."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.emergency import emergency_command_id
from schemas.errors import InvalidContent
from schemas.models import Action, Command, IdempotencyKey, Priority, Receipt
from schemas.topics import Channel
from streams.status.model import STATES, StatusFold, fold
from streams.status.view import StatusView
from streams.status.web import make_app

URI = "urn:lantoa:article:2026-11-26-status"
T0 = "2026-11-26T01:00:00.000Z"


def at(second: int) -> str:
    return f"2026-11-26T01:00:{second:02d}.000Z"


def command(
    target: str,
    channel: Channel = Channel.FANPAGE,
    version: int = 1,
    action: Action = Action.PUBLISH,
    priority: Priority = Priority.NORMAL,
    uri: str = URI,
    published: str = T0,
    title: str = "Tiêu đề",
) -> dict[str, Any]:
    payload = {"message": f"{title}\n\nTóm tắt"} if action is not Action.RETRACT else {"reason": "gỡ"}
    return Command(
        IdempotencyKey(uri, version, channel, target, action),
        priority,
        at(1),
        payload,
        published_at=published,
        event_id="e1",
    ).to_dict()


def receipt(
    cmd: dict[str, Any], outcome: str, when: str, *, external_id: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    return Receipt(
        uri=cmd["uri"],
        stage="delivery",
        outcome=outcome,
        at=when,
        version=cmd["version"],
        channel=cmd["channel"],
        target=cmd["target"],
        command_id=cmd["command_id"],
        external_id=external_id,
        reason=reason,
        event_id="e1",
    ).to_dict()


def routed(
    counts: dict[str, int], when: str = at(1), version: int = 1, outcome: str = "routed", uri: str = URI
) -> dict[str, Any]:
    stage = "fanout" if outcome in ("routed", "retracted") else "policy"
    return Receipt(
        uri=uri,
        stage=stage,
        outcome=outcome,
        at=when,
        version=version,
        counts=counts,
        event_id=f"e-{outcome}-{version}",
    ).to_dict()


def target_of(view: dict[str, Any], channel: str, target: str) -> dict[str, Any]:
    found = [t for t in view["channels"][channel]["targets"] if t["target"] == target]
    assert len(found) == 1, view["channels"][channel]
    return found[0]


def one(
    commands: list[dict[str, Any]],
    receipts: list[dict[str, Any]],
    channel: str = "fanpage",
    target: str = "fanpage:a",
) -> dict[str, Any]:
    view = fold(commands, receipts).article(URI)
    assert view is not None
    return target_of(view, channel, target)


# -- states -------------------------------------------------------------------------------------


def test_a_commanded_target_without_receipt_is_pending() -> None:
    c = command("fanpage:a")
    t = one([c], [])
    assert t["state"] == "pending"
    assert (t["version"], t["action"], t["priority"]) == (1, "publish", "normal")
    assert t["published_at"] == T0 and t["delivered_at"] is None and t["external_id"] is None


def test_delivered_after_retries_keeps_the_time_and_the_post_id() -> None:
    c = command("fanpage:a")
    t = one(
        [c],
        [
            receipt(c, "retrying", at(2), reason="rate limited (retry in 10s)"),
            receipt(c, "delivered", at(9), external_id="100_1"),
        ],
    )
    assert t["state"] == "delivered"
    assert t["delivered_at"] == at(9) and t["external_id"] == "100_1" and t["reason"] is None
    assert t["live_version"] == 1 and t["updated_at"] == at(9)


@pytest.mark.parametrize("outcome", ["retrying", "unknown", "failed"])
def test_trouble_states_carry_their_reason(outcome: str) -> None:
    c = command("fanpage:a")
    t = one([c], [receipt(c, outcome, at(3), reason=f"why {outcome}")])
    assert t["state"] == outcome and t["reason"] == f"why {outcome}"


def test_the_latest_trouble_wins_and_failed_outranks_at_the_same_instant() -> None:
    c = command("fanpage:a")
    assert one([c], [receipt(c, "unknown", at(3)), receipt(c, "retrying", at(5))])["state"] == "retrying"
    assert one([c], [receipt(c, "retrying", at(5)), receipt(c, "failed", at(5))])["state"] == "failed"


def test_a_replayed_dead_letter_that_succeeds_is_delivered() -> None:
    c = command("fanpage:a")
    t = one(
        [c],
        [receipt(c, "failed", at(3), reason="gave up"), receipt(c, "delivered", at(30), external_id="1_2")],
    )
    assert t["state"] == "delivered" and t["reason"] is None


def test_a_newer_version_pending_shows_the_version_still_live() -> None:
    v1, v2 = command("fanpage:a"), command("fanpage:a", version=2, action=Action.UPDATE)
    t = one([v1, v2], [receipt(v1, "delivered", at(4), external_id="1_9")])
    assert (t["state"], t["version"], t["action"], t["live_version"]) == ("pending", 2, "update", 1)
    assert t["external_id"] == "1_9"  # the post that is live there now
    t = one(
        [v1, v2],
        [
            receipt(v1, "delivered", at(4), external_id="1_9"),
            receipt(v2, "updated", at(8), external_id="1_9"),
        ],
    )
    assert (t["state"], t["live_version"]) == ("delivered", 2)


def test_retraction_states() -> None:
    pub, ret = command("fanpage:a"), command("fanpage:a", action=Action.RETRACT)
    t = one([pub, ret], [receipt(pub, "delivered", at(4), external_id="1_9")])
    assert (t["state"], t["action"], t["live_version"]) == ("pending", "retract", 1)
    t = one(
        [pub, ret],
        [
            receipt(pub, "delivered", at(4), external_id="1_9"),
            receipt(ret, "deleted", at(6), external_id="1_9"),
        ],
    )
    assert (t["state"], t["live_version"], t["external_id"]) == ("retracted", None, "1_9")
    # Nothing was there to take back: the target is clean all the same.
    assert (
        one([ret], [receipt(ret, "skipped", at(6), reason="no live post to delete")])["state"] == "retracted"
    )
    # A retraction that arrives without its command is still recognised by its outcome.
    assert (
        one([pub], [receipt(pub, "delivered", at(4)), receipt(ret, "deleted", at(6))])["state"] == "retracted"
    )


def test_a_superseded_publication_is_skipped() -> None:
    c = command("fanpage:a")
    assert one([c], [receipt(c, "skipped", at(4), reason="version 2 is already live")])["state"] == "skipped"


def test_article_events_counts_titles_and_filters() -> None:
    cmds = [command("fanpage:a"), command("fanpage:b"), command("zalo:g", Channel.ZALO, title="Tiêu đề")]
    recs = [routed({"fanpage": 3, "zalo": 1}), receipt(cmds[0], "delivered", at(5), external_id="x")]
    view = fold(cmds, recs).article(URI)
    assert view is not None
    assert view["state"] == "routed" and view["version"] == 1 and view["title"] == "Tiêu đề"
    fp = view["channels"]["fanpage"]
    assert fp["expected"] == 3 and fp["states"] == {"delivered": 1, "pending": 1} and fp["settled"] == 1
    assert view["totals"] == {"delivered": 1, "pending": 2}
    narrowed = fold(cmds, recs).article(URI, channel="fanpage", state="pending")
    assert narrowed is not None and list(narrowed["channels"]) == ["fanpage"]
    assert [t["target"] for t in narrowed["channels"]["fanpage"]["targets"]] == ["fanpage:b"]
    assert narrowed["channels"]["fanpage"]["states"] == {"delivered": 1, "pending": 1}  # counts: every target


def test_article_level_outcomes_without_targets() -> None:
    view = fold([], [routed({}, at(1), outcome="held")]).article(URI)
    assert view is not None and view["state"] == "held" and view["channels"] == {}
    dl = Receipt(uri=URI, stage="intake", outcome="dead_lettered", at=at(2), reason="not JSON").to_dict()
    view = fold([], [routed({}, at(1), outcome="held"), dl]).article(URI)
    assert view is not None and view["state"] == "dead_lettered"
    assert [e["outcome"] for e in view["events"]] == ["held", "dead_lettered"]
    assert fold([], []).article(URI) is None


def test_times_in_other_offsets_are_compared_as_instants() -> None:
    c = command("fanpage:a")
    late_local = "2026-11-26T08:00:09.000+07:00"  # 01:00:09Z, after 01:00:05Z
    t = one([c], [receipt(c, "retrying", at(5)), {**receipt(c, "unknown", at(0)), "at": late_local}])
    assert t["state"] == "unknown" and t["updated_at"] == at(9)


def test_bad_records_are_refused_with_the_reason() -> None:
    view = StatusFold()
    with pytest.raises(InvalidContent):
        view.add_command({"uri": URI})
    with pytest.raises(InvalidContent):
        view.add_receipt({"uri": URI, "stage": "delivery"})
    with pytest.raises(InvalidContent):
        view.add_receipt({**receipt(command("fanpage:a"), "delivered", at(1)), "outcome": "routed"})


def test_the_store_is_bounded_by_targets_and_drops_the_oldest_articles() -> None:
    view = StatusFold(max_targets=10)
    for i in range(5):
        for j in range(3):
            view.add_command(command(f"fanpage:{j}", uri=f"urn:a:{i}"))
        view.evict()
    assert len(view) <= 3 and "urn:a:4" in view and "urn:a:0" not in view
    assert [a["uri"] for a in view.recent(2)][0] == "urn:a:4"


# -- order does not matter ----------------------------------------------------------------------


def _facts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    a1, b1 = command("fanpage:a"), command("fanpage:b")
    a2 = command("fanpage:a", version=2, action=Action.UPDATE, published=at(20))
    z1 = command("zalo:g", Channel.ZALO)
    zr = command("zalo:g", Channel.ZALO, action=Action.RETRACT)
    cmds = [a1, b1, a2, z1, zr]
    recs = [
        routed({"fanpage": 2, "zalo": 1}),
        routed({"fanpage": 1}, at(20), 2),
        receipt(a1, "retrying", at(2), reason="r"),
        receipt(a1, "delivered", at(4), external_id="p1"),
        receipt(a1, "delivered", at(7), external_id="p1"),  # re-acknowledged after a replay
        receipt(b1, "unknown", at(3), reason="timeout"),
        receipt(b1, "retrying", at(4), reason="x"),
        receipt(a2, "updated", at(25), external_id="p1"),
        receipt(z1, "delivered", at(5), external_id="m1"),
        receipt(zr, "deleted", at(40), external_id="m1"),
    ]
    return cmds, recs


@settings(max_examples=60, deadline=None)
@given(st.randoms(use_true_random=False), st.integers(0, 3))
def test_the_view_depends_on_the_set_of_facts_not_their_order(rnd: Any, dups: int) -> None:
    cmds, recs = _facts()
    expected = fold(cmds, recs).article(URI)
    items: list[tuple[str, dict[str, Any]]] = [("c", c) for c in cmds] + [("r", r) for r in recs]
    items += [rnd.choice(items) for _ in range(dups)]  # replays repeat records
    rnd.shuffle(items)
    view = StatusFold()
    for kind, raw in items:
        (view.add_command if kind == "c" else view.add_receipt)(raw)
    assert view.article(URI) == expected
    assert expected is not None
    states = {(ch, t["target"]): t["state"] for ch, e in expected["channels"].items() for t in e["targets"]}
    assert states == {
        ("fanpage", "fanpage:a"): "delivered",
        ("fanpage", "fanpage:b"): "retrying",
        ("zalo", "zalo:g"): "retracted",
    }
    assert set(states.values()) <= set(STATES)


# -- the emergency watch ------------------------------------------------------------------------


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_emergencies_not_yet_effective_are_counted_with_the_age_of_the_oldest() -> None:
    e1 = command("zone:1", Channel.LOUDSPEAKER, priority=Priority.EMERGENCY, published=at(0))
    e2 = command("zone:2", Channel.LOUDSPEAKER, priority=Priority.EMERGENCY, published=at(10))
    normal = command("zone:3", Channel.LOUDSPEAKER, published=at(0))
    view = fold([e1, e2, normal], [receipt(e2, "retrying", at(12))])
    assert view.emergencies(epoch(at(50))) == {"loudspeaker": (2, 50.0)}
    view.add_receipt(receipt(e1, "delivered", at(51)))
    assert view.emergencies(epoch(at(55))) == {"loudspeaker": (1, 45.0)}
    view.add_receipt(receipt(e2, "failed", at(56)))  # still not there: still counted
    assert view.emergencies(epoch(at(57))) == {"loudspeaker": (1, 47.0)}
    assert view.emergencies(epoch(at(57)), horizon_s=30) == {}  # too old to watch


def test_emergency_lane_records_expand_to_zones_and_settle_with_the_pushers_receipts() -> None:
    record = {
        "schema_version": 1,
        "emergency_id": "VN-1",
        "action": "start",
        "status": "Actual",
        "exercise": False,
        "zones": ["zone:1", "zone:2"],
        "headline": "Bão số 5",
        "published_at": "2026-11-26T08:00:00.000+07:00",
        "issued_at": at(1),
    }
    view = StatusFold()
    uri = view.add_emergency(record)
    assert uri == "urn:lantoa:cap:VN-1"
    assert view.emergencies(epoch(at(30))) == {"emergency": (2, 30.0)}
    for zone in ("zone:1", "zone:2"):
        view.add_receipt(
            Receipt(
                uri=uri,
                stage="delivery",
                outcome="delivered",
                at=at(5),
                version=1,
                channel="emergency",
                target=zone,
                command_id=emergency_command_id("VN-1", zone, "start"),
            ).to_dict()
        )
    assert view.emergencies(epoch(at(30))) == {}
    article = view.article(uri)
    assert article is not None and article["title"] == "Bão số 5"
    assert article["channels"]["emergency"]["states"] == {"delivered": 2}
    cancel = {**record, "action": "cancel", "zones": ["zone:1"], "issued_at": at(40), "published_at": at(40)}
    view.add_emergency(cancel)
    assert view.emergencies(epoch(at(45))) == {"emergency": (1, 5.0)}  # stopping the sirens is urgent too
    assert target_of(view.article(uri) or {}, "emergency", "zone:1")["action"] == "retract"


# -- HTTP ---------------------------------------------------------------------------------------


async def test_http_status_endpoint_decodes_uris_and_refuses_bad_queries() -> None:
    slashed = "urn:lantoa:article:a/b c"
    view = StatusView(clock=lambda: epoch(at(30)))
    view.caught_up = True
    view.fold.add_command(command("fanpage:a", uri=slashed))
    async with TestClient(TestServer(make_app(view, insecure=True))) as client:
        resp = await client.get(f"/articles/{quote(slashed, safe='')}/status")
        assert resp.status == 200
        body = await resp.json()
        assert body["uri"] == slashed and body["view"] == {"caught_up": True, "as_of": at(30)}
        assert body["channels"]["fanpage"]["targets"][0]["state"] == "pending"
        resp = await client.get(f"/articles/{quote(slashed, safe='')}/status?state=bogus")
        assert resp.status == 400
        resp = await client.get("/articles/urn%3Anope/status")
        assert resp.status == 404 and (await resp.json())["error"] == "unknown article"
        resp = await client.get("/articles?limit=5")
        assert [a["uri"] for a in (await resp.json())["articles"]] == [slashed]
        resp = await client.get("/healthz")
        assert (await resp.json())["articles"] == 1
