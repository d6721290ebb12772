"""The spine against the real broker: CMS events → stream app → per-channel commands.

Expected target sets are computed here from the official commune list and infra/targets.toml
with deliberately simple code, independent of streams.routing.
"""

from __future__ import annotations

import time
import tomllib
import uuid
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest
from helpers import ROOT, article_doc, ce_headers, encode_doc, sample_paths, with_payloads
from vietnam_provinces import Ward

from producers.cli import deadletters as dl
from schemas import contracts
from schemas.codec import headers_to_dict
from schemas.topics import Channel, Topic, command_key

CHANNEL_TOPICS = {c: Topic.commands(c) for c in Channel}
TARGETS = tomllib.loads((ROOT / "infra" / "targets.toml").read_text())
HA_NOI_WARD = 4  # Phường Ba Đình


def expected_targets(provinces: set[int], subjects: set[str]) -> dict[str, set[str]]:
    zones = {f"zone:{w.code}" for w in Ward.iter_all() if not provinces or int(w.province_code) in provinces}
    out = {"loudspeaker": zones}
    for channel in ("fanpage", "zalo"):
        out[channel] = {
            e["id"]
            for e in TARGETS.get(channel, [])
            if e.get("active", True)
            and not e.get("test", False)  # test pages and groups get exercises, never articles
            and (not e.get("provinces") or not provinces or provinces & set(e["provinces"]))
            and (not e.get("subjects") or subjects & set(e["subjects"]))
        }
    out["archive"] = {e["id"] for e in TARGETS["archive"]}
    return out


def commands_for(
    pipeline: Any, uri: str, version: int | None = None, action: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for channel, topic in CHANNEL_TOPICS.items():
        reader = pipeline.reader(topic)
        reader.poll()
        for rec in reader.records:
            cmd = orjson.loads(rec.value)
            if (
                cmd["uri"] == uri
                and (version is None or cmd["version"] == version)
                and (action is None or cmd["action"] == action)
            ):
                assert rec.key == command_key(channel, cmd["target"])  # the target id; Zalo: the OA
                found[channel.value].append(cmd)
    return found


def receipts_for(pipeline: Any, uri: str) -> list[dict[str, Any]]:
    return [orjson.loads(r.value) for r in pipeline.reader(Topic.RECEIPTS).records if r.key == uri.encode()]


def wait_receipt(pipeline: Any, uri: str, outcome: str, timeout: float = 90.0) -> dict[str, Any]:
    reader = pipeline.reader(Topic.RECEIPTS)
    reader.wait_for(
        lambda recs: any(r.key == uri.encode() and orjson.loads(r.value)["outcome"] == outcome for r in recs),
        timeout,
        f"receipt {outcome} for {uri}",
    )
    return next(r for r in receipts_for(pipeline, uri) if r["outcome"] == outcome)


def wait_commands(pipeline: Any, counts: dict[str, int]) -> None:
    for channel, topic in CHANNEL_TOPICS.items():
        need = counts.get(channel.value, 0)
        if need:
            pipeline.reader(topic).wait_for(
                lambda recs, n=need: len(recs) >= n, 90, f"{need} {channel.value} commands"
            )


def publish(pipeline: Any, doc: dict[str, Any]) -> None:
    pipeline.client.publish(encode_doc(doc))


def test_samples_reach_the_expected_targets(pipeline: Any) -> None:
    docs = [orjson.loads(p.read_bytes()) for p in sample_paths()]
    for path in sample_paths():
        pipeline.client.publish(path.read_bytes())
    expected = {}
    totals: Counter[str] = Counter()
    for doc in docs:
        provinces = {
            int(p["uri"].rsplit(":", 1)[1])
            for p in doc.get("places", [])
            if p["uri"].startswith("urn:lantoa:place:province:")
        }
        subjects = {s["uri"] for s in doc.get("subjects", [])}
        expected[doc["uri"]] = expected_targets(provinces, subjects)
        for channel, ids in expected[doc["uri"]].items():
            totals[channel] += len(ids)
    assert totals["loudspeaker"] == 126 + 4 * 3321
    for doc in docs:
        wait_receipt(pipeline, doc["uri"], "routed")
    wait_commands(pipeline, totals)
    for doc in docs:
        got = commands_for(pipeline, doc["uri"])
        for channel, ids in expected[doc["uri"]].items():
            targets = [c["target"] for c in got.get(channel, [])]
            assert len(targets) == len(set(targets)), f"duplicate {channel} commands for {doc['uri']}"
            assert set(targets) == ids, f"{doc['uri']} {channel}"
        receipt = wait_receipt(pipeline, doc["uri"], "routed")
        contracts.check("receipt", receipt)
        assert receipt["counts"] == {ch: len(ids) for ch, ids in expected[doc["uri"]].items()}
    one = commands_for(pipeline, docs[0]["uri"])["fanpage"][0]
    contracts.check("command", one)
    [one] = with_payloads(pipeline.settings, [one])
    assert one["action"] == "publish" and one["payload"]["message"].startswith("Chuyển đổi số")
    assert one["published_at"] and one["event_id"]


def test_duplicate_publish_makes_no_new_commands(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:dup-{uuid.uuid4().hex[:6]}"
    doc = article_doc(uri, 1, places=[{"name": "Ba Đình", "uri": f"urn:lantoa:place:ward:{HA_NOI_WARD}"}])
    publish(pipeline, doc)
    wait_receipt(pipeline, uri, "routed")
    publish(pipeline, doc)
    wait_receipt(pipeline, uri, "dropped_duplicate")
    pipeline.reader(Topic.LOUDSPEAKER_COMMANDS).settle(1.0)
    got = commands_for(pipeline, uri)
    assert [c["target"] for c in got["loudspeaker"]] == [f"zone:{HA_NOI_WARD}"]
    assert len(got["archive"]) == 1


def test_older_version_after_newer_is_dropped(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:order-{uuid.uuid4().hex[:6]}"
    places = [{"name": "Ba Đình", "uri": f"urn:lantoa:place:ward:{HA_NOI_WARD}"}]
    publish(pipeline, article_doc(uri, 2, places=places))
    publish(pipeline, article_doc(uri, 1, places=places))
    stale = wait_receipt(pipeline, uri, "dropped_stale")
    assert stale["version"] == 1 and "older than version 2" in stale["reason"]
    assert {c["version"] for cs in commands_for(pipeline, uri).values() for c in cs} == {2}


def test_invalid_payload_is_dead_lettered_and_the_stream_goes_on(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:bad-{uuid.uuid4().hex[:6]}"
    pipeline.client.send_raw(
        uri.encode(), b"\xff not json", [(k, v.encode()) for k, v in ce_headers().items()]
    )
    pipeline.client.send_raw(
        uri.encode(),
        encode_doc(article_doc(uri, 1, headlines="plain string")),
        [(k, v.encode()) for k, v in ce_headers().items()],
    )
    dlq = pipeline.reader(Topic.DEADLETTER)
    dlq.wait_for(lambda recs: sum(r.key == uri.encode() for r in recs) >= 2, 60, "two dead letters")
    letters = [r for r in dlq.records if r.key == uri.encode()]
    first, second = (headers_to_dict(r.headers) for r in letters[:2])
    contracts.check("deadletter", first)
    assert first["dlq_topic"] == pipeline.settings.topic(Topic.CMS_ARTICLES)
    assert first["dlq_reason"].startswith("not valid UTF-8") and first["dlq_stage"] == "validate"
    assert letters[0].value == b"\xff not json"  # the original bytes, unchanged
    assert second["dlq_reason"].startswith("$.headlines")
    assert wait_receipt(pipeline, uri, "dead_lettered")["reason"]
    good = f"urn:lantoa:article:after-bad-{uuid.uuid4().hex[:6]}"
    publish(
        pipeline,
        article_doc(good, 1, places=[{"name": "Ba Đình", "uri": f"urn:lantoa:place:ward:{HA_NOI_WARD}"}]),
    )
    wait_receipt(pipeline, good, "routed")
    assert pipeline.alive()


def test_embargo_holds_then_releases(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:embargo-{uuid.uuid4().hex[:6]}"
    until = datetime.now(UTC) + timedelta(seconds=4)
    publish(
        pipeline,
        article_doc(
            uri,
            1,
            embargoedUntil=until.isoformat(),
            places=[{"name": "Ba Đình", "uri": f"urn:lantoa:place:ward:{HA_NOI_WARD}"}],
        ),
    )
    wait_receipt(pipeline, uri, "held")
    assert commands_for(pipeline, uri) == {}
    wait_receipt(pipeline, uri, "released", timeout=60)
    wait_receipt(pipeline, uri, "routed")
    pipeline.reader(Topic.ARCHIVE_COMMANDS).wait_for(
        lambda recs: any(orjson.loads(r.value)["uri"] == uri for r in recs), 30
    )
    cmd = commands_for(pipeline, uri)["archive"][0]
    assert datetime.fromisoformat(cmd["issued_at"].replace("Z", "+00:00")) >= until


def test_retraction_before_release_cancels_silently(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:embargo-cancel-{uuid.uuid4().hex[:6]}"
    until = datetime.now(UTC) + timedelta(seconds=3)
    publish(pipeline, article_doc(uri, 1, embargoedUntil=until.isoformat()))
    wait_receipt(pipeline, uri, "held")
    pipeline.client.retract(uri, "sai thông tin")
    wait_receipt(pipeline, uri, "embargo_cancelled")
    # well past the embargo: nothing may have been released
    marker = f"urn:lantoa:article:marker-{uuid.uuid4().hex[:6]}"
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 2.0)
    publish(
        pipeline,
        article_doc(marker, 1, places=[{"name": "Ba Đình", "uri": f"urn:lantoa:place:ward:{HA_NOI_WARD}"}]),
    )
    wait_receipt(pipeline, marker, "routed")
    assert commands_for(pipeline, uri) == {}
    assert not any(r["outcome"] == "released" for r in receipts_for(pipeline, uri))


def test_retraction_sends_retract_commands_everywhere_it_went(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:retract-{uuid.uuid4().hex[:6]}"
    publish(
        pipeline, article_doc(uri, 1, places=[{"name": "Hà Tĩnh", "uri": "urn:lantoa:place:province:42"}])
    )
    wait_receipt(pipeline, uri, "routed")
    pipeline.client.retract(uri, "đính chính")
    receipt = wait_receipt(pipeline, uri, "retracted")
    expected = expected_targets({42}, set())
    assert receipt["counts"] == {ch: len(ids) for ch, ids in expected.items()}
    for channel, topic in CHANNEL_TOPICS.items():
        pipeline.reader(topic).wait_for(
            lambda recs, ch=channel.value: (
                len(
                    [
                        1
                        for r in recs
                        if orjson.loads(r.value)["uri"] == uri
                        and orjson.loads(r.value)["action"] == "retract"
                    ]
                )
                >= len(expected[ch])
            ),
            60,
            f"retract commands on {channel.value}",
        )
    got = commands_for(pipeline, uri, action="retract")
    for channel, ids in expected.items():
        assert {c["target"] for c in got.get(channel, [])} == ids
        sent = with_payloads(pipeline.settings, got.get(channel, []))
        assert all(c["version"] == 1 and c["payload"]["reason"] == "đính chính" for c in sent)


def test_deadletters_list_show_and_a_replay_refused_while_still_invalid(pipeline: Any) -> None:
    uri = f"urn:lantoa:article:replay-{uuid.uuid4().hex[:6]}"
    pipeline.client.send_raw(uri.encode(), b"{not json", [(k, v.encode()) for k, v in ce_headers().items()])
    dlq = pipeline.reader(Topic.DEADLETTER)
    dlq.wait_for(lambda recs: any(r.key == uri.encode() for r in recs), 60, "the dead letter")
    letters = dl.select(dl.read_all(pipeline.settings), reason="not JSON")
    mine = [d for d in letters if d.key == uri.encode()]
    assert len(mine) == 1 and mine[0].meta["dlq_attempts"] == "1"
    assert "not JSON" in dl.render_list(mine) and uri in dl.render_one(mine[0])
    # Replay validates again as if the record were new (tests/integration/test_deadletters_replay.py).
    [decision] = dl.replay(pipeline.settings, mine, progress=False)
    assert decision.topic is None and not decision.sent and "not JSON" in (decision.reason or "")


def test_cap_alerts_take_their_lane(pipeline: Any) -> None:
    from producers.cap_ingest import AlertProducer, check
    from producers.targets import local_registry

    typhoon = (ROOT.parent / "shared" / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_bytes()
    registry = local_registry(pipeline.settings)
    producer = AlertProducer(pipeline.settings)
    try:
        producer.send(check(typhoon, registry))
        exercise = typhoon.replace(b"<status>Actual</status>", b"<status>Exercise</status>").replace(
            b"BAO05-01</identifier>", b"BAO05-EX</identifier>"
        )
        producer.send(check(exercise, registry))
        minor = (
            typhoon.replace(b"<urgency>Immediate</urgency>", b"<urgency>Future</urgency>")
            .replace(b"<severity>Extreme</severity>", b"<severity>Moderate</severity>")
            .replace(b"BAO05-01</identifier>", b"BAO05-MINOR</identifier>")
        )
        producer.send(check(minor, registry))
    finally:
        producer.close()
    lane = pipeline.reader(Topic.EMERGENCY_COMMANDS)
    lane.wait_for(lambda recs: len({r.key for r in recs}) >= 2, 60, "two emergency commands")
    by_id = {r.key.decode(): orjson.loads(r.value) for r in lane.records}
    actual = by_id["VN-NCHMF-2026-0917-BAO05-01"]
    contracts.check("emergency", actual)
    wards = {f"zone:{w.code}" for w in Ward.iter_all() if int(w.province_code) in (42, 44)}
    assert actual["action"] == "start" and not actual["exercise"] and set(actual["zones"]) == wards
    assert "sơ tán" in actual["text"] and actual["expires_at"].startswith("2026-09-18")
    drill = by_id["VN-NCHMF-2026-0917-BAO05-EX"]
    assert drill["exercise"] and drill["zones"] and not set(drill["zones"]) & wards  # test zones only
    loud = pipeline.reader(Topic.LOUDSPEAKER_COMMANDS)
    loud.wait_for(
        lambda recs: sum(orjson.loads(r.value)["uri"].endswith("BAO05-MINOR") for r in recs) >= 147,
        60,
        "priority bulletins for the minor alert",
    )
    minor_cmds = [
        orjson.loads(r.value) for r in loud.records if orjson.loads(r.value)["uri"].endswith("BAO05-MINOR")
    ]
    assert {c["target"] for c in minor_cmds} == wards and {c["priority"] for c in minor_cmds} == {"priority"}
