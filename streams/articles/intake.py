"""Intake: raw Kafka record → ArticleEvent, or InvalidContent with the reason. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas import contracts
from schemas.article import Article, article_from_ninjs, check_uri, parse_time, parse_version
from schemas.audit import ACTOR_HEADER, UNATTRIBUTED
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.ninjs_validation import DEFAULT_VERSION, validate_document, version_from_schema_uri
from schemas.text import bounded, identifier, nfc, visible

CE_TYPES = ("article.published", "article.updated", "article.retracted")
RETRACTION_SCHEMA = "urn:lantoa:schema:retraction:1"
# Bigger than any real article; the topic's max.message.bytes is larger still, so an oversized
# record can reach us and be dead-lettered with this reason instead of failing at the producer.
MAX_EVENT_BYTES = 1_048_576
# ce_id travels in every command of the event (event_id, 3,321 times for a national article)
# and in its receipts; the headers are outside MAX_EVENT_BYTES, so without this a 4 MB id
# (the topic takes 4 MiB records) would be copied into gigabytes of commands. Real ids are uuids.
MAX_EVENT_ID_CHARS = 256


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The CloudEvents attributes of an article event (Kafka binary binding)."""

    id: str
    source: str
    type: str
    time: str
    dataschema: str
    actor: str = UNATTRIBUTED  # ce_actor: who published or retracted it (schemas/audit.py)


@dataclass(frozen=True, slots=True)
class ArticleEvent:
    """A decoded, validated article event: a new version, or a retraction."""

    uri: str
    version: int | None
    retract: bool
    ce: CloudEvent
    article: Article | None = None
    reason: str | None = None


def cloud_event(headers: dict[str, str]) -> CloudEvent:
    """The ce_* headers, checked against schemas/json/cloudevents-headers.v1.json."""
    missing = [
        h
        for h in ("ce_specversion", "ce_id", "ce_source", "ce_type", "ce_time", "ce_dataschema")
        if not headers.get(h)
    ]
    if missing:
        raise InvalidContent(f"missing CloudEvents header {missing[0]}")
    contracts.check(
        "cloudevents-headers",
        {k: v for k, v in headers.items() if k.startswith("ce_") or k == "content-type"},
    )
    if len(headers["ce_id"]) > MAX_EVENT_ID_CHARS:
        raise InvalidContent(
            f"ce_id of {len(headers['ce_id']):,} characters exceeds the {MAX_EVENT_ID_CHARS}-character limit"
        )
    parse_time(headers["ce_time"], "ce_time")  # it becomes the commands' published_at: the latency clock
    return CloudEvent(
        headers["ce_id"],
        headers["ce_source"],
        headers["ce_type"],
        headers["ce_time"],
        headers["ce_dataschema"],
        headers.get(ACTOR_HEADER) or UNATTRIBUTED,  # its pattern was checked with the others
    )


def parse_article_event(key: bytes | None, value: bytes | None, headers: dict[str, str]) -> ArticleEvent:
    """Decode and validate one cms.articles record. Raises InvalidContent (→ dead letter)."""
    if value is not None and len(value) > MAX_EVENT_BYTES:
        raise InvalidContent(f"payload of {len(value)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    ce = cloud_event(headers)
    doc: Any = decode(value)
    if not isinstance(doc, dict):
        raise InvalidContent(f"top level is {type(doc).__name__}, expected an object")
    key_text = nfc(key.decode("utf-8", errors="replace")) if key else None

    if ce.dataschema == RETRACTION_SCHEMA:
        if ce.type != "article.retracted":
            raise InvalidContent(
                f"ce_dataschema {RETRACTION_SCHEMA} is only for article.retracted, not {ce.type}"
            )
        contracts.check("retraction", doc)
        uri = identifier(
            str(doc["uri"])
        )  # articles are kept under their NFC uri: an NFD retraction names the same one
        check_uri(uri)  # an invisible character is not refused here: see article_from_ninjs
        _check_key(key_text, uri)
        version = parse_version(doc["version"]) if doc.get("version") else None
        reason = doc.get("reason")
        return ArticleEvent(
            uri=uri,
            version=version,
            retract=True,
            ce=ce,
            reason=visible(reason) if isinstance(reason, str) else None,
        )

    ninjs_version = version_from_schema_uri(ce.dataschema)
    if ninjs_version is None:
        raise InvalidContent(f"ce_dataschema {ce.dataschema!r} names no ninjs version")
    declared = doc.get("$schema")
    if isinstance(declared, str) and version_from_schema_uri(declared) not in (None, ninjs_version):
        raise InvalidContent(f"document $schema {declared!r} disagrees with ce_dataschema {ce.dataschema!r}")
    validate_document(doc, ninjs_version or DEFAULT_VERSION)
    article = article_from_ninjs(doc, ninjs_version)
    _check_key(key_text, article.uri)
    retract = ce.type == "article.retracted" or article.retracting
    return ArticleEvent(uri=article.uri, version=article.version, retract=retract, ce=ce, article=article)


# How much of a key and a uri a refusal quotes: enough to tell them apart, never the whole of an
# 800 kB key (the reason travels in a receipt and a dead-letter header).
QUOTED_ID_CHARS = 200


def _check_key(key: str | None, uri: str) -> None:
    # The key decides the partition, and so the order of revisions: it must be the uri (both
    # read as identifiers, NFC: the stream worker forwards an NFD-keyed record to the partition
    # of the NFC key, streams/steps.py).
    if key != uri:
        shown_key = None if key is None else bounded(key, QUOTED_ID_CHARS)
        raise InvalidContent(
            f"record key {shown_key!r} is not the article uri {bounded(uri, QUOTED_ID_CHARS)!r}"
        )
