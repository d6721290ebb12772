"""The publish client a CMS embeds: validated ninjs in, CloudEvents-framed records to cms.articles.

kafka-python, idempotent producer (acks=all), key = article uri so that every revision of an
article lands on one partition, in order.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kafka import KafkaProducer

from infra.kafka import clients
from producers.audit import AuditLog
from schemas.access import check_actor, cli_actor
from schemas.article import Article, article_from_ninjs
from schemas.audit import ACTOR_HEADER, AuditAction, AuditRecord
from schemas.codec import encode
from schemas.errors import InvalidContent
from schemas.models import utc_now_iso
from schemas.ninjs_validation import validate_bytes
from schemas.settings import Settings
from schemas.text import identifier
from schemas.topics import Topic
from streams.articles.intake import MAX_EVENT_BYTES, RETRACTION_SCHEMA

NINJS_SCHEMA_URI = "http://www.iptc.org/std/ninjs/ninjs-schema_{version}.json"


@dataclass(frozen=True)
class Prepared:
    """A document checked and framed, ready to send."""

    article: Article
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Sent:
    uri: str
    version: int | None
    ce_id: str
    ce_type: str
    partition: int
    offset: int


def prepare(
    raw: bytes,
    ninjs_version: str | None = None,
    source: str = "urn:lantoa:cms",
    now: datetime | None = None,
    event_id: str | None = None,
    actor: str | None = None,
) -> Prepared:
    """Validate (same reasons as ``lantoa validate``, plus Lantoa's uri/version rules) and frame.

    Raises InvalidContent; nothing is sent for an invalid document.
    """
    if len(raw) > MAX_EVENT_BYTES:  # the stream worker would dead-letter it: refused before sending
        raise InvalidContent(f"document of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit")
    doc, version = validate_bytes(raw, ninjs_version)
    article = article_from_ninjs(doc, version)
    if article.retracting:
        ce_type = "article.retracted"
    else:
        ce_type = "article.published" if article.version == 1 else "article.updated"
    headers = {
        "ce_specversion": "1.0",
        "ce_id": event_id or str(uuid.uuid4()),
        "ce_source": source,
        "ce_type": ce_type,
        "ce_time": utc_now_iso(now),
        "ce_dataschema": NINJS_SCHEMA_URI.format(version=version),
        "ce_subject": article.uri,
        "content-type": "application/json",
    }
    if actor:
        headers[ACTOR_HEADER] = check_actor(actor)
    return Prepared(article, article.uri.encode(), raw, [(k, v.encode()) for k, v in headers.items()])


def retraction(
    uri: str,
    reason: str | None = None,
    version: int | None = None,
    source: str = "urn:lantoa:cms",
    now: datetime | None = None,
    actor: str | None = None,
) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """Key, value and headers of an article.retracted event without a document.

    The uri is sent in NFC, the form articles are kept under (schemas/text.py ``identifier``), so
    the key hashes to the partition where the article's state is."""
    uri = identifier(uri)
    if not uri:
        raise InvalidContent("uri is empty")
    body: dict[str, Any] = {"uri": uri}
    if reason:
        body["reason"] = reason
    if version is not None:
        body["version"] = str(version)
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": source,
        "ce_type": "article.retracted",
        "ce_time": utc_now_iso(now or datetime.now(UTC)),
        "ce_dataschema": RETRACTION_SCHEMA,
        "ce_subject": uri,
        "content-type": "application/json",
    }
    if actor:
        headers[ACTOR_HEADER] = check_actor(actor)
    return uri.encode(), encode(body), [(k, v.encode()) for k, v in headers.items()]


class PublishClient:
    """Embed in a CMS: ``publish(bytes)`` and ``retract(uri)``; raises InvalidContent on bad input.

    Kafka errors (broker unreachable, timeouts) raise kafka.errors.KafkaError subclasses: the
    caller should retry; the stream app drops a version it has already accepted, so a retry
    after an unclear failure cannot post twice.
    """

    def __init__(
        self, settings: Settings, producer: KafkaProducer | None = None, *, actor: str | None = None
    ) -> None:
        """``actor``: who publishes (ce_actor and the audit trail; default LANTOA_ACTOR, else
        cli:<login>@<host>); a CMS passes each editor's name to ``publish``/``retract`` instead."""
        self.settings = settings
        self.actor = check_actor(actor) if actor else cli_actor(settings.actor)
        self._producer = producer or clients.producer(
            settings.kafka,
            client_id=f"{settings.client_id}-cms",
            acks="all",
            enable_idempotence=True,
            linger_ms=5,
            max_request_size=4 * 1024 * 1024,
        )
        self._topic = settings.topic(Topic.CMS_ARTICLES)
        self._audit = AuditLog(settings, self._producer)

    def publish(
        self,
        raw: bytes,
        ninjs_version: str | None = None,
        timeout_s: float = 30.0,
        *,
        actor: str | None = None,
    ) -> Sent:
        who = actor or self.actor
        p = prepare(raw, ninjs_version, self.settings.source, actor=who)
        hdr = dict(p.headers)
        action = AuditAction.RETRACT if p.article.retracting else AuditAction.PUBLISH
        detail = {"version": p.article.version, "ce_id": hdr["ce_id"].decode()}
        sent = self._producer.send(self._topic, key=p.key, value=p.value, headers=p.headers)
        # In the same produce request as the event (one round trip, not two); both acknowledged
        # before success is reported. The record names the attempt: if the event's send fails the
        # client raises, and the CMS's retry (same version) is recorded again.
        audited = self._audit.send(AuditRecord(who, action, p.article.uri, "publish-client", detail))
        meta = sent.get(timeout=timeout_s)
        audited.get(timeout=timeout_s)
        return Sent(
            p.article.uri,
            p.article.version,
            hdr["ce_id"].decode(),
            hdr["ce_type"].decode(),
            meta.partition,
            meta.offset,
        )

    def retract(
        self,
        uri: str,
        reason: str | None = None,
        version: int | None = None,
        timeout_s: float = 30.0,
        *,
        actor: str | None = None,
    ) -> Sent:
        who = actor or self.actor
        key, value, headers = retraction(uri, reason, version, self.settings.source, actor=who)
        hdr = dict(headers)
        detail: dict[str, Any] = {"version": version, "ce_id": hdr["ce_id"].decode()}
        if reason:
            detail["reason"] = reason[:500]
        sent = self._producer.send(self._topic, key=key, value=value, headers=headers)
        audited = self._audit.send(
            AuditRecord(who, AuditAction.RETRACT, key.decode(), "publish-client", detail)
        )
        meta = sent.get(timeout=timeout_s)
        audited.get(timeout=timeout_s)
        return Sent(
            key.decode(), version, hdr["ce_id"].decode(), "article.retracted", meta.partition, meta.offset
        )

    def send_raw(
        self,
        key: bytes | None,
        value: bytes | None,
        headers: list[tuple[str, bytes]],
        timeout_s: float = 30.0,
    ) -> None:
        """Send bytes as they are (tests, replays): no validation."""
        self._producer.send(self._topic, key=key, value=value, headers=headers).get(timeout=timeout_s)

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def __enter__(self) -> PublishClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
