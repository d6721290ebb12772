"""Intake: CloudEvents headers, decoding, ninjs validation, NFC and the Lantoa rules."""

from __future__ import annotations

import unicodedata

import orjson
import pytest
from helpers import article_doc, ce_headers, encode_doc, sample_paths

from schemas.errors import InvalidContent
from streams.articles.intake import parse_article_event

URI = "urn:lantoa:article:intake"


def test_samples_parse() -> None:
    for path in sample_paths():
        doc = orjson.loads(path.read_bytes())
        ev = parse_article_event(doc["uri"].encode(), path.read_bytes(), ce_headers())
        assert ev.article is not None and ev.version == 1 and not ev.retract and ev.article.headline


@pytest.mark.parametrize(
    ("key", "value", "headers", "reason"),
    [
        (URI, b"", ce_headers(), "empty payload"),
        (URI, b"\xff\xfe{", ce_headers(), "not valid UTF-8"),
        (URI, b"<html>", ce_headers(), "not JSON"),
        (URI, b"[1]", ce_headers(), "top level is list"),
        (URI, encode_doc(article_doc(URI)), {}, "missing CloudEvents header ce_specversion"),
        (URI, encode_doc(article_doc(URI)), ce_headers(ce_type="article.deleted"), "$.ce_type"),
        (URI, encode_doc(article_doc(URI, headlines="x")), ce_headers(), "$.headlines"),
        (
            "urn:other",
            encode_doc(article_doc(URI)),
            ce_headers(),
            "record key 'urn:other' is not the article uri",
        ),
        (
            URI,
            encode_doc(article_doc(URI, version="v2")),
            ce_headers(),
            "version must be a positive integer string",
        ),
        (
            URI,
            encode_doc({k: v for k, v in article_doc(URI).items() if k != "version"}),
            ce_headers(),
            "version is missing",
        ),
        (URI, b'{"uri": "' + b"x" * 1_100_000 + b'"}', ce_headers(), "exceeds"),
    ],
)
def test_invalid_records_give_a_reason(key: str, value: bytes, headers: dict[str, str], reason: str) -> None:
    with pytest.raises(InvalidContent) as caught:
        parse_article_event(key.encode(), value, headers)
    assert reason in caught.value.reason


def test_text_is_nfc_and_whitespace_squashed() -> None:
    decomposed = unicodedata.normalize("NFD", "Thông  báo   khẩn")
    doc = article_doc(URI, headlines=[{"role": "main", "value": decomposed}])
    ev = parse_article_event(URI.encode(), encode_doc(doc), ce_headers())
    assert ev.article is not None and ev.article.headline == "Thông báo khẩn"
    assert unicodedata.is_normalized("NFC", ev.article.document["headlines"][0]["value"])


def test_ninjs_2_documents_are_read() -> None:
    doc = {
        "uri": URI,
        "version": "3",
        "type": "text",
        "headlines": [{"value": "Tin 2.0"}],
        "bodies": [{"value": "<p>Một</p><script>x()</script><p>Hai</p>", "contenttype": "text/html"}],
        "pubstatus": "usable",
        "places": [{"name": "Hà Tĩnh", "uri": "urn:lantoa:place:province:42"}],
    }
    ev = parse_article_event(URI.encode(), encode_doc(doc), ce_headers(version="2.0"))
    art = ev.article
    assert art is not None and art.version == 3 and art.headline == "Tin 2.0"
    assert art.body == "Một\n\nHai" and art.places[0].code == 42


def test_dataschema_and_document_schema_must_agree() -> None:
    doc = {**article_doc(URI), "$schema": "http://www.iptc.org/std/ninjs/ninjs-schema_3.0.json"}
    with pytest.raises(InvalidContent, match="disagrees"):
        parse_article_event(URI.encode(), encode_doc(doc), ce_headers(version="3.1"))
