"""Text hygiene in the stream: NFC identifiers at intake, invisible controls out of every payload,
bounded reasons in receipts and dead letters."""

from __future__ import annotations

import dataclasses
import unicodedata
from datetime import UTC, datetime, timezone
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from helpers import article_doc, ce_headers, encode_doc

from infra.kafka.partitioning import partition_for
from producers.client import prepare, retraction
from schemas.article import article_from_ninjs
from schemas.codec import headers_to_dict
from schemas.deadletter import dead_letter_headers
from schemas.errors import InvalidContent
from schemas.headers import MAX_REASON_HEADER_CHARS, MAX_TRACEBACK_HEADER_CHARS
from schemas.models import MAX_RECEIPT_REASON_CHARS, Receipt
from schemas.settings import Settings
from schemas.text import INVISIBLE
from schemas.topics import Channel
from streams.articles.intake import QUOTED_ID_CHARS, RETRACTION_SCHEMA, parse_article_event
from streams.articles.policy import Kind, decide
from streams.articles.render import render_all, retract_payload, shown
from streams.steps import MAX_RECEIPT_KEY_CHARS, StreamSteps, key_partition_bytes

NFC_URI = "urn:lantoa:article:tin-hà-nội-lũ-lụt"
NFD_URI = unicodedata.normalize("NFD", NFC_URI)
NOW = datetime(2026, 11, 26, 2, 0, tzinfo=UTC)
SPOOF = "\u202eTin\u202c giả\u200b \u2066mạo\u2069\ufeff\u200f"


def retraction_record(uri: str, key: str | None = None) -> tuple[bytes, bytes, dict[str, str]]:
    _, value, headers = retraction(NFC_URI)
    body = {**orjson.loads(value), "uri": uri}
    return (key or uri).encode(), orjson.dumps(body), headers_to_dict(headers)


# -- NFC identifiers -----------------------------------------------------------------------------


def test_the_forms_differ_so_these_tests_mean_something() -> None:
    assert NFC_URI != NFD_URI and NFC_URI.encode() != NFD_URI.encode()


def test_an_nfd_retraction_names_the_nfc_article_and_retracts_it() -> None:
    published = parse_article_event(NFC_URI.encode(), encode_doc(article_doc(NFC_URI)), ce_headers())
    state = decide(None, published, NOW).new_state
    ev = parse_article_event(*retraction_record(NFD_URI))
    assert ev.retract and ev.uri == NFC_URI
    decision = decide(state, ev, NOW)
    assert decision.kind is Kind.RETRACT and decision.retract_live is not None


def test_an_nfd_article_is_kept_under_its_nfc_uri() -> None:
    ev = parse_article_event(NFD_URI.encode(), encode_doc(article_doc(NFD_URI)), ce_headers())
    assert ev.uri == NFC_URI and ev.article is not None and ev.article.uri == NFC_URI


def test_the_cli_and_the_client_send_a_retraction_in_nfc() -> None:
    key, value, headers = retraction(f"  {NFD_URI} ")
    assert key == NFC_URI.encode() and orjson.loads(value)["uri"] == NFC_URI
    assert dict(headers)["ce_subject"] == NFC_URI.encode()
    assert prepare(encode_doc(article_doc(NFD_URI))).key == NFC_URI.encode()


def test_a_key_that_is_not_the_uri_is_still_refused() -> None:
    with pytest.raises(InvalidContent, match="is not the article uri"):
        parse_article_event(*retraction_record(NFD_URI, key="urn:lantoa:article:other"))


def test_an_nfd_key_is_placed_where_its_nfc_form_lives() -> None:
    assert key_partition_bytes(NFD_URI.encode()) == NFC_URI.encode()
    assert key_partition_bytes(b"\xff\xfenot utf-8") == b"\xff\xfenot utf-8"
    for count in (2, 3, 6, 12):
        if partition_for(NFD_URI.encode(), count) == partition_for(NFC_URI.encode(), count):
            continue
        steps = StreamSteps(Settings.from_env({}), None, lambda: None, lambda: NOW)  # type: ignore[arg-type, return-value]
        steps.partitions = count
        rec = SimpleNamespace(
            topic="cms.articles",
            key=NFD_URI.encode(),
            value=b"{}",
            headers=[],
            partition=partition_for(NFD_URI.encode(), count),
            offset=7,
        )
        forward = steps.misplaced(rec)
        assert forward is not None and forward.partition == partition_for(NFC_URI.encode(), count)
        assert forward.key == NFD_URI.encode()  # moved, not rewritten: intake reads it as NFC
        assert steps.misplaced(SimpleNamespace(**{**vars(rec), "partition": forward.partition})) is None
        return
    pytest.fail("the NFC and NFD forms share a partition at every count tried")


# -- invisible controls out of every payload ------------------------------------------------------


def test_the_article_normaliser_drops_invisible_controls_html_entities_included() -> None:
    doc = article_doc(
        NFC_URI,
        headlines=[{"role": "main", "value": SPOOF}],
        descriptions=[
            {"role": "summary", "contentType": "text/html", "value": "<p>&#x202E;Tóm&#8203; tắt&#xFEFF;</p>"}
        ],
        bodies=[{"role": "main", "contentType": "text/plain", "value": "Nội\u2067 dung\u2069"}],
    )
    art = article_from_ninjs(doc, "3.1")
    assert (art.headline, art.summary, art.body) == ("Tin giả mạo", "Tóm tắt", "Nội dung")


def _all_strings(value: Any) -> str:
    return orjson.dumps(value).decode()


def test_the_renderers_guard_every_channel_even_against_an_article_built_by_hand() -> None:
    art = article_from_ninjs(article_doc(NFC_URI), "3.1")
    forged = dataclasses.replace(
        art, headline=SPOOF, summary="Tóm\u200b tắt\u202e"
    )  # the normaliser bypassed
    payloads = render_all(forged, "https://tin.lantoa.example.vn", list(Channel))
    for channel in (Channel.LOUDSPEAKER, Channel.FANPAGE, Channel.ZALO):
        assert not INVISIBLE.search(_all_strings(payloads[channel])), channel
    assert "Tin giả mạo" in payloads[Channel.FANPAGE]["message"]
    assert payloads[Channel.ARCHIVE]["document"] is forged.document  # the record as published, kept whole
    assert shown(Channel.ZALO, {"text": "a\u202eb"}) == {"text": "ab"}


def test_a_retraction_reason_reaches_no_channel_with_controls() -> None:
    assert retract_payload("Gỡ\u202e bài\u200b") == {"reason": "Gỡ bài"}
    ev = parse_article_event(*retraction_record(NFC_URI))
    key, value, headers = retraction(NFC_URI, reason="đính\u2066 chính\u2069")
    assert parse_article_event(key, value, headers_to_dict(headers)).reason == "đính chính"
    assert ev.reason is None


# -- bounded reasons --------------------------------------------------------------------------------


def test_a_receipt_reason_is_bounded_at_its_limit_and_past_it() -> None:
    at = Receipt(
        uri=NFC_URI,
        stage="intake",
        outcome="dead_lettered",
        at="2026-11-26T02:00:00.000Z",
        reason="r" * MAX_RECEIPT_REASON_CHARS,
    )
    assert at.to_dict()["reason"] == "r" * MAX_RECEIPT_REASON_CHARS
    past = dataclasses.replace(at, reason="r" * (MAX_RECEIPT_REASON_CHARS + 1))
    assert len(past.to_dict()["reason"]) == MAX_RECEIPT_REASON_CHARS


def test_dead_letter_headers_are_bounded() -> None:
    headers = dict(
        dead_letter_headers(
            [],
            topic="cms.articles",
            partition=0,
            offset=1,
            reason="x" * 900_000,
            stage="validate",
            now_iso="2026-11-26T02:00:00.000Z",
            traceback_last="t" * 10_000,
            channel="c" * 10_000,
        )
    )
    assert len(headers["dlq_reason"].decode()) == MAX_REASON_HEADER_CHARS
    assert len(headers["dlq_traceback_last"].decode()) == MAX_TRACEBACK_HEADER_CHARS
    assert len(headers["dlq_channel"].decode()) <= 200
    exact = dict(
        dead_letter_headers(
            [],
            topic="t",
            partition=0,
            offset=1,
            reason="y" * MAX_REASON_HEADER_CHARS,
            stage="s",
            now_iso="2026-11-26T02:00:00.000Z",
        )
    )
    assert exact["dlq_reason"] == b"y" * MAX_REASON_HEADER_CHARS


def test_an_800_kb_key_makes_a_small_receipt_and_dead_letter() -> None:
    key = b"urn:lantoa:" + b"k" * 800_000
    value = encode_doc(article_doc("urn:lantoa:article:short"))
    with pytest.raises(InvalidContent) as caught:
        parse_article_event(key, value, ce_headers())
    assert len(caught.value.reason) < 3 * QUOTED_ID_CHARS + 100

    steps = StreamSteps(Settings.from_env({}), None, lambda: None, lambda: NOW)  # type: ignore[arg-type, return-value]
    rec = SimpleNamespace(topic="cms.articles", key=key, value=value, headers=[], partition=0, offset=3)
    out = steps.dead_letter(rec, "x" * 900_000, "validate", key.decode(), "2026-11-26T02:00:00.000Z")
    dead, receipt = out
    assert dead.key == key and dead.value == value  # the dead letter keeps the record byte for byte
    assert sum(len(v) for _, v in dead.headers) < 10_000
    assert len(receipt.value) < MAX_RECEIPT_KEY_CHARS + MAX_RECEIPT_REASON_CHARS * 4 + 1000
    assert len(receipt.key.decode()) <= MAX_RECEIPT_KEY_CHARS
    assert RETRACTION_SCHEMA  # imported for the retraction helpers above


@pytest.mark.parametrize("ch", ["\u202e", "\u200b", "\u2066", "\ufeff", "\x1b"])
def test_a_uri_with_an_invisible_character_is_refused_before_anything_is_published(ch: str) -> None:
    uri = f"urn:lantoa:article:tin{ch}-giả"
    with pytest.raises(InvalidContent, match=f"uri contains the invisible character U\\+{ord(ch):04X}"):
        parse_article_event(uri.encode(), encode_doc(article_doc(uri)), ce_headers())
    with pytest.raises(InvalidContent, match="invisible character"):
        prepare(encode_doc(article_doc(uri)))
    # A withdrawal is not refused for it: one accepted before this rule must still retract.
    assert parse_article_event(*retraction_record(uri)).uri == uri
    withheld = parse_article_event(
        uri.encode(), encode_doc(article_doc(uri, pubStatus="withheld")), ce_headers()
    )
    assert withheld.retract and withheld.uri == uri
    assert retraction(uri)[0] == uri.encode()


def test_the_contracts_document_the_bounds() -> None:
    from schemas import contracts

    receipt = Receipt(
        uri=NFC_URI,
        stage="intake",
        outcome="dead_lettered",
        at="2026-11-26T02:00:00.000Z",
        reason="r" * 900_000,
    ).to_dict()
    contracts.check("receipt", receipt)
    with pytest.raises(InvalidContent):
        contracts.check("receipt", {**receipt, "reason": "r" * (MAX_RECEIPT_REASON_CHARS + 1)})
    headers = {
        k: v.decode()
        for k, v in dead_letter_headers(
            [],
            topic="t",
            partition=0,
            offset=1,
            reason="x" * 900_000,
            stage="s",
            now_iso="2026-11-26T02:00:00.000Z",
        )
    }
    contracts.check("deadletter", headers)
    with pytest.raises(InvalidContent):
        contracts.check("deadletter", {**headers, "dlq_reason": "x" * (MAX_REASON_HEADER_CHARS + 1)})
