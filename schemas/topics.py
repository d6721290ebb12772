"""Logical topic names and the per-topic descriptors kept beside them.

Logical names are what the code speaks; physical names come from configuration
(`Settings.topic`). Each topic has one YAML descriptor in ``schemas/topics/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Any

import yaml


class Channel(StrEnum):
    """A delivery channel: one command topic and one consumer group each."""

    LOUDSPEAKER = "loudspeaker"
    FANPAGE = "fanpage"
    ZALO = "zalo"
    ARCHIVE = "archive"


class Topic(StrEnum):
    """Logical topic names (the physical name may carry a prefix or an override)."""

    CMS_ARTICLES = "cms.articles"
    ALERTS_CAP = "alerts.cap"
    ENGAGEMENT_INBOUND = "engagement.inbound"
    ENGAGEMENT_QUESTIONS = "engagement.questions"
    TARGETS = "distribution.targets"
    LOUDSPEAKER_COMMANDS = "distribution.loudspeaker.commands"
    FANPAGE_COMMANDS = "distribution.fanpage.commands"
    ZALO_COMMANDS = "distribution.zalo.commands"
    ARCHIVE_COMMANDS = "distribution.archive.commands"
    RECEIPTS = "distribution.receipts"
    DEADLETTER = "distribution.deadletter"
    EMBARGO_RELEASES = "streams.embargo.releases"
    ARTICLE_STATE = "streams.article.state"
    EMERGENCY_COMMANDS = "distribution.emergency.commands"
    POISON = "distribution.poison"
    PAYLOADS = "distribution.payloads"
    AUDIT = "audit.actions"
    ALERTS_PENDING = "alerts.pending"
    LOUDSPEAKER_LEDGER = "distribution.loudspeaker.ledger"
    LOUDSPEAKER_RETRY_10S = "distribution.loudspeaker.retry.10s"
    LOUDSPEAKER_RETRY_1M = "distribution.loudspeaker.retry.1m"
    LOUDSPEAKER_RETRY_10M = "distribution.loudspeaker.retry.10m"
    FANPAGE_LEDGER = "distribution.fanpage.ledger"
    FANPAGE_RETRY_10S = "distribution.fanpage.retry.10s"
    FANPAGE_RETRY_1M = "distribution.fanpage.retry.1m"
    FANPAGE_RETRY_10M = "distribution.fanpage.retry.10m"
    ZALO_LEDGER = "distribution.zalo.ledger"
    ZALO_RETRY_10S = "distribution.zalo.retry.10s"
    ZALO_RETRY_1M = "distribution.zalo.retry.1m"
    ZALO_RETRY_10M = "distribution.zalo.retry.10m"
    ARCHIVE_LEDGER = "distribution.archive.ledger"
    ARCHIVE_RETRY_10S = "distribution.archive.retry.10s"
    ARCHIVE_RETRY_1M = "distribution.archive.retry.1m"
    ARCHIVE_RETRY_10M = "distribution.archive.retry.10m"

    @staticmethod
    def commands(channel: Channel) -> Topic:
        """The command topic of a channel."""
        return Topic(f"distribution.{channel.value}.commands")

    @staticmethod
    def ledger(channel: Channel) -> Topic:
        """The idempotency ledger of a channel (compacted)."""
        return Topic(f"distribution.{channel.value}.ledger")

    @staticmethod
    def retry(channel: Channel, tier: str) -> Topic:
        """A delayed-retry tier of a channel: tier is one of RETRY_TIERS."""
        return Topic(f"distribution.{channel.value}.retry.{tier}")


# The record key of every Zalo command: Zalo's limits (calls per second, the daily quota) belong to
# the Official Account, and one deployment delivers through one OA (LANTOA_ZALO_APP_ID, one token
# pair), so all its commands share one key, hence one partition, hence one adapter process holding
# the OA's whole budget however many processes run. Order per target holds a fortiori.
ZALO_ACCOUNT_KEY = "zalo-oa"


def command_key(channel: Channel, target: str) -> bytes:
    """The record key of a command (and of its retries): what its partition is hashed from.

    The target id (order per target), except Zalo: the Official Account (ZALO_ACCOUNT_KEY). The
    ledger entries of a command live in the partition this key hashes to (``lantoa topics grow``
    moves them there when the count or this rule changes)."""
    if channel is Channel.ZALO:
        return ZALO_ACCOUNT_KEY.encode()
    return target.encode()


# Delayed-retry tiers and their delays in seconds, shortest first.
RETRY_TIERS: dict[str, float] = {"10s": 10.0, "1m": 60.0, "10m": 600.0}


@dataclass(frozen=True)
class Example:
    """One example record: headers, key and value as they travel on the topic."""

    key: str | None
    value: Any
    headers: dict[str, str] = field(default_factory=dict)
    description: str = ""


@dataclass(frozen=True)
class TopicDescriptor:
    """Everything one needs to know about a topic, from its YAML descriptor."""

    topic: Topic
    description: str
    key: str
    partitions: int
    cleanup_policy: str
    retention_ms: int | None
    schema: str
    schema_version: int
    compatibility: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]
    headers: tuple[str, ...]
    extra_config: dict[str, str]
    examples: tuple[Example, ...]

    def topic_config(self) -> dict[str, str]:
        """The broker-side topic configuration this descriptor asks for."""
        config = {"cleanup.policy": self.cleanup_policy}
        if self.retention_ms is not None:
            config["retention.ms"] = str(self.retention_ms)
        config.update(self.extra_config)
        return config


def _descriptor_from_mapping(raw: dict[str, Any]) -> TopicDescriptor:
    schema = raw["schema"]
    examples = tuple(
        Example(
            key=ex.get("key"),
            value=ex["value"],
            headers={str(k): str(v) for k, v in (ex.get("headers") or {}).items()},
            description=ex.get("description", ""),
        )
        for ex in raw.get("examples") or ()
    )
    retention = raw.get("retention_ms")
    return TopicDescriptor(
        topic=Topic(raw["topic"]),
        description=raw["description"].strip(),
        key=raw["key"],
        partitions=int(raw["partitions"]),
        cleanup_policy=raw["cleanup_policy"],
        retention_ms=None if retention is None else int(retention),
        schema=schema["name"],
        schema_version=int(schema["version"]),
        compatibility=schema.get("compatibility", "backward"),
        producers=tuple(raw.get("producers") or ()),
        consumers=tuple(raw.get("consumers") or ()),
        headers=tuple(raw.get("headers") or ()),
        extra_config={str(k): str(v) for k, v in (raw.get("config") or {}).items()},
        examples=examples,
    )


@cache
def descriptors() -> dict[Topic, TopicDescriptor]:
    """All topic descriptors shipped in ``schemas/topics/``, by logical topic."""
    found: dict[Topic, TopicDescriptor] = {}
    for entry in sorted(resources.files("schemas").joinpath("topics").iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        desc = _descriptor_from_mapping(yaml.safe_load(entry.read_text(encoding="utf-8")))
        if desc.topic in found:
            raise ValueError(f"two descriptors for topic {desc.topic}")
        found[desc.topic] = desc
    missing = set(Topic) - set(found)
    if missing:
        raise ValueError(f"topics without a descriptor: {sorted(missing)}")
    return found
