"""`lantoa deadletters replay` decisions, without Kafka: where each dead letter may go, whether it is
still valid there, and with which headers. The allow-list is tested for every topic in and out."""

from __future__ import annotations

import orjson
import pytest
from helpers import SHARED, article_doc, ce_headers, encode_doc

from producers.cli import deadletters as dl
from producers.cli.main import main
from schemas.deadletter import dead_letter_headers
from schemas.settings import Settings
from schemas.topics import RETRY_TIERS, Channel, Topic, descriptors

SETTINGS = Settings.from_env({"LANTOA_TOPIC_PREFIX": "r."})
CAP = (SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_bytes()
URI = "urn:lantoa:article:replay-unit"


def example(topic: Topic) -> tuple[bytes, bytes]:
    ex = descriptors()[topic].examples[0]
    return (ex.key or "").encode(), orjson.dumps(ex.value)


def letter(
    origin: Topic | str,
    key: bytes,
    value: bytes | None,
    headers: list[tuple[str, bytes]] | None = None,
    offset: int = 5,
) -> dl.DeadLetter:
    topic = SETTINGS.topic(origin) if isinstance(origin, Topic) else origin
    dlh = dead_letter_headers(
        headers or [],
        topic=topic,
        partition=1,
        offset=offset,
        reason="was bad",
        stage="decode",
        now_iso="2026-11-26T01:00:00.000Z",
    )
    return dl.DeadLetter(0, offset, 0, key, value, dlh)


def article_letter(**extra: str) -> dl.DeadLetter:
    headers = [(k, v.encode()) for k, v in ce_headers(**extra).items()]
    return letter(Topic.CMS_ARTICLES, URI.encode(), encode_doc(article_doc(URI)), headers)


def decide(d: dl.DeadLetter) -> dl.Decision:
    return dl.decide(dl.replay_targets(SETTINGS), d)


def test_the_allow_list_is_the_input_and_command_topics_only() -> None:
    allowed = set(dl.replay_targets(SETTINGS))
    expected = {
        SETTINGS.topic(t)
        for t in (Topic.CMS_ARTICLES, Topic.ALERTS_CAP, Topic.ENGAGEMENT_INBOUND, Topic.EMERGENCY_COMMANDS)
    }
    expected |= {SETTINGS.topic(Topic.commands(ch)) for ch in Channel}
    assert allowed == expected
    for t in Topic:
        assert (SETTINGS.topic(t) in allowed) == (SETTINGS.topic(t) in expected)
    assert all(SETTINGS.topic(Topic.retry(ch, tier)) not in allowed for ch in Channel for tier in RETRY_TIERS)
    assert "cms.articles" not in allowed  # physical names: the prefix counts


@pytest.mark.parametrize(
    "origin",
    [
        Topic.RECEIPTS,
        Topic.DEADLETTER,
        Topic.ARTICLE_STATE,
        Topic.EMBARGO_RELEASES,
        Topic.FANPAGE_LEDGER,
        Topic.FANPAGE_RETRY_10S,
        Topic.TARGETS,
        Topic.ENGAGEMENT_QUESTIONS,
    ],
)
def test_a_dead_letter_from_any_other_topic_is_refused(origin: Topic) -> None:
    x = decide(letter(origin, URI.encode(), encode_doc(article_doc(URI))))
    assert x.topic is None and "not one replay may write" in (x.reason or "")
    assert "refused" in x.line()


def test_no_origin_or_an_unprefixed_name_is_refused() -> None:
    bare = dl.DeadLetter(0, 1, 0, URI.encode(), encode_doc(article_doc(URI)), [])
    assert decide(bare).topic is None and "none" in (decide(bare).reason or "")
    assert decide(letter("cms.articles", URI.encode(), encode_doc(article_doc(URI)))).topic is None


def test_a_valid_article_goes_back_to_its_input_topic_without_internal_headers() -> None:
    x = decide(article_letter())
    assert x.topic == SETTINGS.topic(Topic.CMS_ARTICLES) and x.reason is None
    names = [k for k, _ in x.headers]
    assert "ce_id" in names and not any(k.startswith(("dlq_", "retry_")) or k == "replay" for k in names)
    assert x.line(dry_run=True).endswith(f"would send to {x.topic}")


@pytest.mark.parametrize(
    ("value", "headers", "why"),
    [
        (b"{not json", None, "not JSON"),
        (encode_doc(article_doc(URI, headlines="plain")), None, "$.headlines"),
        (encode_doc(article_doc("urn:lantoa:article:other")), None, "is not the article uri"),
        (encode_doc(article_doc(URI)), {"ce_type": ""}, "missing CloudEvents header ce_type"),
        (None, None, "empty payload"),
    ],
)
def test_an_invalid_article_is_refused_with_the_intake_reason(
    value: bytes | None, headers: dict[str, str] | None, why: str
) -> None:
    hdrs = [(k, v.encode()) for k, v in {**ce_headers(), **(headers or {})}.items()]
    x = decide(letter(Topic.CMS_ARTICLES, URI.encode(), value, hdrs))
    assert x.topic is None and why in (x.reason or "") and "invalid for" in (x.reason or "")


def test_cap_alerts_go_through_the_cap_parser() -> None:
    ok = decide(letter(Topic.ALERTS_CAP, b"alert", CAP))
    assert ok.topic == SETTINGS.topic(Topic.ALERTS_CAP)
    bad = decide(letter(Topic.ALERTS_CAP, b"alert", CAP.replace(b"<status>", b"<statusx>", 1)))
    assert bad.topic is None and "invalid for" in (bad.reason or "")
    assert decide(letter(Topic.ALERTS_CAP, b"alert", encode_doc(article_doc(URI)))).topic is None


def test_engagement_events_go_through_their_schema() -> None:
    key, value = example(Topic.ENGAGEMENT_INBOUND)
    assert decide(letter(Topic.ENGAGEMENT_INBOUND, key, value)).topic == SETTINGS.topic(
        Topic.ENGAGEMENT_INBOUND
    )
    broken = orjson.dumps({**orjson.loads(value), "platform": 7})
    assert decide(letter(Topic.ENGAGEMENT_INBOUND, key, broken)).topic is None


def test_emergency_commands_go_through_their_contract() -> None:
    key, value = example(Topic.EMERGENCY_COMMANDS)
    x = decide(letter(Topic.EMERGENCY_COMMANDS, key, value))
    assert x.topic == SETTINGS.topic(Topic.EMERGENCY_COMMANDS) and ("replay", b"0:5") in x.headers
    no_zones = orjson.dumps({k: v for k, v in orjson.loads(value).items() if k != "zones"})
    assert decide(letter(Topic.EMERGENCY_COMMANDS, key, no_zones)).topic is None


def test_a_command_goes_back_with_its_dlq_headers_and_the_one_replay_marker() -> None:
    key, value = example(Topic.FANPAGE_COMMANDS)
    forged = [("replay", b"forged"), ("retry_attempt", b"7"), ("retry_due_at", b"1e400")]
    x = decide(letter(Topic.FANPAGE_COMMANDS, key, value, forged, offset=9))
    assert x.topic == SETTINGS.topic(Topic.FANPAGE_COMMANDS)
    headers = dict(x.headers)
    assert [v for k, v in x.headers if k == "replay"] == [b"0:9"]
    assert not any(k.startswith("retry_") for k in headers)
    assert (
        headers["dlq_topic"] == SETTINGS.topic(Topic.FANPAGE_COMMANDS).encode()
        and headers["dlq_attempts"] == b"1"
    )


def test_a_command_must_match_its_topic_and_contract() -> None:
    key, value = example(Topic.FANPAGE_COMMANDS)
    wrong = decide(letter(Topic.ZALO_COMMANDS, key, value))
    assert wrong.topic is None and "a fanpage command cannot go to" in (wrong.reason or "")
    broken = orjson.dumps({**orjson.loads(value), "priority": "whenever"})
    assert decide(letter(Topic.FANPAGE_COMMANDS, key, broken)).topic is None
    assert decide(letter(Topic.FANPAGE_COMMANDS, key, b"[]")).topic is None


def test_a_command_with_a_payload_reference_goes_back_as_it_is() -> None:
    # The adapter resolves the reference again (and dead-letters it anew, with the reason, when the
    # stored payload has expired meanwhile); replay checks the command and the reference's form.
    key, value = example(Topic.LOUDSPEAKER_COMMANDS)
    doc = orjson.loads(value)
    del doc["payload"]
    doc["payload_ref"] = {"partition": 1, "offset": 7, "sha256": "e" * 64, "bytes": 120, "title": "Thông báo"}
    x = decide(letter(Topic.LOUDSPEAKER_COMMANDS, key, orjson.dumps(doc)))
    assert x.topic == SETTINGS.topic(Topic.LOUDSPEAKER_COMMANDS), x.reason
    both = orjson.dumps({**doc, "payload": {"text": "x"}})
    refused = decide(letter(Topic.LOUDSPEAKER_COMMANDS, key, both))
    assert refused.topic is None and "exactly one of payload and payload_ref" in (refused.reason or "")
    bad_ref = orjson.dumps({**doc, "payload_ref": {**doc["payload_ref"], "sha256": "short"}})
    assert decide(letter(Topic.LOUDSPEAKER_COMMANDS, key, bad_ref)).topic is None


def test_a_dry_run_sends_nothing_and_shows_the_same_decisions() -> None:
    letters = [
        article_letter(),
        letter(Topic.RECEIPTS, URI.encode(), b"{}"),
        letter(Topic.CMS_ARTICLES, URI.encode(), b"x"),
    ]
    # No broker is reachable on this bootstrap: a dry run that tried to connect would fail.
    offline = Settings.from_env({"LANTOA_TOPIC_PREFIX": "r.", "LANTOA_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    decisions = dl.replay(offline, letters, dry_run=True, progress=False)
    assert [x.topic for x in decisions] == [SETTINGS.topic(Topic.CMS_ARTICLES), None, None]
    assert decisions == [decide(d) for d in letters]
    assert not any(x.sent for x in decisions)
    assert [x.to_dict()["ref"] for x in decisions] == ["0:5", "0:5", "0:5"]


def test_nothing_to_send_opens_no_producer() -> None:
    offline = Settings.from_env({"LANTOA_TOPIC_PREFIX": "r.", "LANTOA_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    decisions = dl.replay(offline, [letter(Topic.RECEIPTS, URI.encode(), b"{}")], progress=False)
    assert len(decisions) == 1 and decisions[0].topic is None and not decisions[0].sent


def test_the_cli_prints_one_line_per_record_and_fails_when_any_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    letters = [article_letter(), letter(Topic.RECEIPTS, URI.encode(), b"{}", offset=6)]
    monkeypatch.setenv("LANTOA_TOPIC_PREFIX", "r.")
    monkeypatch.setattr(dl, "read_all", lambda settings: letters)
    assert main(["deadletters", "replay", "--all", "--dry-run"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].endswith(f"0:5  would send to {SETTINGS.topic(Topic.CMS_ARTICLES)}")
    assert out[1].startswith("     0:6  refused: origin topic 'r.distribution.receipts'")
    assert out[2] == "would replay 1 of 2 dead letter(s)"
    assert main(["deadletters", "replay", "0:5", "--dry-run", "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == [
        {"ref": "0:5", "topic": SETTINGS.topic(Topic.CMS_ARTICLES), "sent": False, "reason": None}
    ]
