"""Internal headers at the edge and `lantoa deadletters replay`, on the real broker with a running
stream worker:

- forged dlq_* / retry_* / replay headers on an input record never reach its dead letter, and a
  valid record carrying them is processed as if they were not there;
- replay refuses a dead letter whose origin is not an input or command topic (a forged
  dlq_topic=distribution.receipts), refuses one that is invalid now, and sends a valid one back
  to its origin, where the worker routes it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import orjson
from helpers import article_doc, ce_headers, encode_doc

from infra.kafka import clients
from producers.cli import deadletters as dl
from schemas.codec import headers_to_dict
from schemas.deadletter import dead_letter_headers
from schemas.topics import Topic

WARD = [{"name": "Ba Đình", "uri": "urn:lantoa:place:ward:4"}]


def ce(**extra: str) -> list[tuple[str, bytes]]:
    return [(k, v.encode()) for k, v in ce_headers(**extra).items()]


def wait_receipt(pipeline: Any, uri: str, outcome: str, timeout: float = 90.0) -> None:
    pipeline.reader(Topic.RECEIPTS).wait_for(
        lambda recs: any(r.key == uri.encode() and orjson.loads(r.value)["outcome"] == outcome for r in recs),
        timeout,
        f"receipt {outcome} for {uri}",
    )


def forged(pipeline: Any) -> list[tuple[str, bytes]]:
    return [
        ("dlq_topic", pipeline.settings.topic(Topic.RECEIPTS).encode()),
        ("dlq_partition", b"0"),
        ("dlq_offset", b"0"),
        ("dlq_attempts", b"abc"),
        ("dlq_first_seen", b"2001-01-01T00:00:00Z"),
        ("retry_due_at", b"1e400"),
        ("retry_attempt", b"x"),
        ("replay", b"forged"),
    ]


def test_forged_internal_headers_are_stripped_at_the_edge(pipeline: Any) -> None:
    bad = f"urn:lantoa:article:forged-bad-{uuid.uuid4().hex[:6]}"
    good = f"urn:lantoa:article:forged-good-{uuid.uuid4().hex[:6]}"
    pipeline.client.send_raw(bad.encode(), b"{not json", ce() + forged(pipeline))
    pipeline.client.send_raw(
        good.encode(), encode_doc(article_doc(good, 1, places=WARD)), ce() + forged(pipeline)
    )
    dlq = pipeline.reader(Topic.DEADLETTER)
    dlq.wait_for(lambda recs: any(r.key == bad.encode() for r in recs), 60, "the dead letter")
    letter = headers_to_dict(next(r for r in dlq.records if r.key == bad.encode()).headers)
    assert letter["dlq_topic"] == pipeline.settings.topic(Topic.CMS_ARTICLES)
    assert letter["dlq_attempts"] == "1" and letter["dlq_first_seen"] != "2001-01-01T00:00:00Z"
    assert not any(k.startswith("retry_") or k == "replay" for k in letter)
    wait_receipt(pipeline, good, "routed")
    assert not any(r.key == good.encode() for r in dlq.records)
    assert pipeline.alive()


def put_dead_letters(pipeline: Any, letters: list[tuple[str, bytes, bytes, list[tuple[str, bytes]]]]) -> None:
    """Dead letters as Lantoa writes them (dead_letter_headers), straight onto the dead-letter topic."""
    producer = clients.producer(pipeline.settings.kafka, acks="all")
    try:
        for origin, key, value, headers in letters:
            dlh = dead_letter_headers(
                headers,
                topic=origin,
                partition=0,
                offset=1,
                reason="was bad then",
                stage="validate",
                now_iso="2026-11-26T01:00:00.000Z",
            )
            producer.send(pipeline.settings.topic(Topic.DEADLETTER), key=key, value=value, headers=dlh)
        producer.flush()
    finally:
        producer.close()


def test_replay_refuses_forged_origins_and_invalid_records_and_sends_valid_ones_home(pipeline: Any) -> None:
    tag = uuid.uuid4().hex[:6]
    forged_uri, valid_uri, edited_uri = (
        f"urn:lantoa:article:replay-{n}-{tag}" for n in ("forged", "valid", "edited")
    )
    articles = pipeline.settings.topic(Topic.CMS_ARTICLES)
    receipts = pipeline.settings.topic(Topic.RECEIPTS)
    put_dead_letters(
        pipeline,
        [
            (receipts, forged_uri.encode(), encode_doc(article_doc(forged_uri, 1, places=WARD)), ce()),
            (articles, valid_uri.encode(), encode_doc(article_doc(valid_uri, 1, places=WARD)), ce()),
            (articles, edited_uri.encode(), encode_doc(article_doc(edited_uri, 1, headlines="edited")), ce()),
        ],
    )
    keys = {forged_uri.encode(), valid_uri.encode(), edited_uri.encode()}
    pipeline.reader(Topic.DEADLETTER).wait_for(
        lambda recs: keys <= {r.key for r in recs}, 60, "the three dead letters"
    )
    mine = {d.key: d for d in dl.read_all(pipeline.settings) if d.key in keys}

    dry = {
        x.letter.key: x
        for x in dl.replay(pipeline.settings, list(mine.values()), dry_run=True, progress=False)
    }
    decisions = {
        x.letter.key: x
        for x in dl.replay(pipeline.settings, list(mine.values()), progress=False, actor="ops-on-call")
    }
    assert {k: (x.topic, x.reason) for k, x in dry.items()} == {
        k: (x.topic, x.reason) for k, x in decisions.items()
    }

    refused = decisions[forged_uri.encode()]
    assert refused.topic is None and not refused.sent and receipts in (refused.reason or "")
    invalid = decisions[edited_uri.encode()]
    assert invalid.topic is None and "$.headlines" in (invalid.reason or "")
    sent = decisions[valid_uri.encode()]
    assert sent.topic == articles and sent.sent and sent.reason is None

    wait_receipt(pipeline, valid_uri, "routed")
    inputs = pipeline.reader(Topic.CMS_ARTICLES)
    inputs.wait_for(lambda recs: any(r.key == valid_uri.encode() for r in recs), 30, "the replayed article")
    back = [r for r in inputs.records if r.key == valid_uri.encode()]
    assert len(back) == 1 and not any(k.startswith("dlq_") for k, _ in back[0].headers)
    assert dict(back[0].headers)["ce_replayer"] == b"ops-on-call"  # who replayed it, beside who published
    trail = pipeline.reader(Topic.AUDIT)
    trail.wait_for(
        lambda recs: any(r.key == valid_uri.encode() for r in recs), 30, "the replay's audit record"
    )
    replayed = [orjson.loads(r.value) for r in trail.records if r.key == valid_uri.encode()]
    assert [(r["action"], r["actor"]) for r in replayed] == [("replay", "ops-on-call")]
    time.sleep(2.0)  # what a wrong send would have produced by now
    inputs.poll()
    assert not any(r.key in (forged_uri.encode(), edited_uri.encode()) for r in inputs.records)
    rec_reader = pipeline.reader(Topic.RECEIPTS)
    rec_reader.poll()
    assert not any(r.key == forged_uri.encode() for r in rec_reader.records)
    assert pipeline.alive()
