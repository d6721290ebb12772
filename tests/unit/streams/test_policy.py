"""Ordering, embargo and retraction decisions, without Kafka."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from helpers import article_doc, ce_headers, encode_doc

from streams.articles.intake import parse_article_event
from streams.articles.policy import Kind, decide, due_for_release, publish_now

NOW = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
URI = "urn:lantoa:article:policy"


def ev(version: int, **fields: Any):  # type: ignore[no-untyped-def]
    doc = article_doc(URI, version, **fields)
    retract = fields.get("pubStatus") in ("withheld", "canceled")
    return parse_article_event(
        URI.encode(), encode_doc(doc), ce_headers("article.retracted" if retract else "article.published")
    )


def retraction(version: int | None = None):  # type: ignore[no-untyped-def]
    body = {"uri": URI, **({"version": str(version)} if version else {})}
    return parse_article_event(
        URI.encode(),
        encode_doc(body),
        ce_headers("article.retracted", ce_dataschema="urn:lantoa:schema:retraction:1"),
    )


def run(events: list[Any], now: datetime = NOW) -> tuple[list[Kind], dict[str, Any] | None]:
    state: dict[str, Any] | None = None
    kinds = []
    for e in events:
        d = decide(state, e, now)
        kinds.append(d.kind)
        if d.new_state is not None:
            state = d.new_state
    return kinds, state


def test_publish_then_update_then_stale_and_duplicate() -> None:
    kinds, state = run([ev(1), ev(2), ev(1), ev(2)])
    assert kinds == [Kind.PUBLISH, Kind.UPDATE, Kind.DROP_STALE, Kind.DROP_DUPLICATE]
    assert state is not None and state["version"] == 2 and state["live"]["version"] == 2


def test_version_one_after_two_is_dropped_with_reason() -> None:
    state = decide(None, ev(2), NOW).new_state
    d = decide(state, ev(1), NOW)
    assert d.kind is Kind.DROP_STALE and d.reason == "version 1 is older than version 2 already accepted"


def test_embargo_holds_until_time_then_releases() -> None:
    until = (NOW + timedelta(minutes=5)).isoformat()
    d = decide(None, ev(1, embargoedUntil=until), NOW)
    assert d.kind is Kind.HOLD and d.new_state is not None
    assert due_for_release(d.new_state, NOW) is None
    assert due_for_release(d.new_state, NOW + timedelta(minutes=5)) == 1
    released = publish_now(d.new_state, ev(1, embargoedUntil=until))
    assert (
        released.kind is Kind.PUBLISH
        and released.new_state is not None
        and released.new_state["held"] is None
    )


def test_past_embargo_publishes_at_once() -> None:
    kinds, _ = run([ev(1, embargoedUntil=(NOW - timedelta(seconds=1)).isoformat())])
    assert kinds == [Kind.PUBLISH]


def test_retraction_before_release_cancels_silently() -> None:
    until = (NOW + timedelta(hours=1)).isoformat()
    kinds, state = run([ev(1, embargoedUntil=until), retraction()])
    assert kinds == [Kind.HOLD, Kind.CANCEL_EMBARGO]
    assert state is not None and state["held"] is None and state["live"] is None
    assert due_for_release(state, NOW + timedelta(hours=2)) is None


def test_retraction_of_live_article_and_its_repeat() -> None:
    kinds, state = run([ev(1), retraction(), retraction()])
    assert kinds == [Kind.PUBLISH, Kind.RETRACT, Kind.DROP_DUPLICATE]
    assert state is not None and state["retracted"]["version"] == 1


def test_withheld_document_retracts_and_unknown_retraction_is_reported() -> None:
    kinds, _ = run([ev(1), ev(2, pubStatus="withheld")])
    assert kinds == [Kind.PUBLISH, Kind.RETRACT]
    assert decide(None, retraction(), NOW).kind is Kind.RETRACT_UNKNOWN


def test_update_remembers_previous_routing_for_targets_no_longer_addressed() -> None:
    s1 = decide(None, ev(1, places=[{"name": "HN", "uri": "urn:lantoa:place:province:1"}]), NOW).new_state
    d = decide(s1, ev(2, places=[{"name": "HT", "uri": "urn:lantoa:place:province:42"}]), NOW)
    assert (
        d.kind is Kind.UPDATE
        and d.previous_live is not None
        and d.previous_live["places"] == [["province", 1]]
    )
