"""Topic provisioning generated from the descriptors in schemas/topics (``lantoa topics apply``).

Idempotent: creates what is missing, raises partition counts that configuration raised, and sets
topic configs that differ. It never lowers partitions (Kafka cannot) and never deletes topics. It
refuses (GrowRequired, before changing anything) to raise a channel's command, retry or ledger
topics: ``lantoa topics grow CHANNEL N`` raises them together and moves the ledger.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from kafka import KafkaAdminClient
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic

from infra.kafka import clients
from infra.kafka.grow import current_partitions, families
from schemas.settings import Settings
from schemas.topics import Topic, descriptors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Change:
    topic: str
    what: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.what}"


def desired(settings: Settings) -> dict[str, tuple[int, dict[str, str]]]:
    """Physical topic name → (partitions, configs) as configuration and descriptors ask."""
    out: dict[str, tuple[int, dict[str, str]]] = {}
    for topic, desc in descriptors().items():
        out[settings.topic(topic)] = (settings.partitions(topic), desc.topic_config())
    return out


def admin_client(settings: Settings) -> KafkaAdminClient:
    return clients.admin(settings.kafka, client_id=f"{settings.client_id}-admin", request_timeout_ms=30000)


def _current_configs(admin: KafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    if not names:
        return {}
    resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
    raw: Any = admin.describe_configs(resources, config_filter="modified")
    out: dict[str, dict[str, str]] = {n: {} for n in names}
    # kafka-python 3 returns {resource_type: {name: {key: value}}}; accept value objects too.
    for by_name in raw.values() if isinstance(raw, dict) else []:
        for name, configs in by_name.items():
            if name in out:
                out[name] = {
                    k: str(v.get("value") if isinstance(v, dict) else getattr(v, "value", v))
                    for k, v in configs.items()
                }
    return out


class GrowRequired(RuntimeError):
    """``lantoa topics apply`` would raise a topic of a co-partitioned family (a channel's command,
    retry or ledger topics; cms.articles, embargo releases and article state): that must go
    through ``lantoa topics grow`` (infra/kafka/grow.py). Nothing was changed."""


def refuse_channel_growth(settings: Settings, grow: dict[str, int]) -> None:
    """Raise GrowRequired if ``grow`` (physical name → count) touches a family's topics."""
    wanted = {}
    for fam in families():
        names = {settings.topic(t) for t in fam.topics}
        if names & set(grow):
            wanted[fam] = max(settings.partitions(t) for t in fam.topics)
    if wanted:
        raise GrowRequired(
            "; ".join(
                f"the {', '.join(t.value for t in f.topics)} topics grow together and their state moves with them: "
                f"stop the {f.processes} and run `lantoa topics grow {f.name} {n}`"
                for f, n in wanted.items()
            )
            + " (nothing was changed)"
        )


def apply_topics(
    settings: Settings, admin: KafkaAdminClient | None = None, dry_run: bool = False
) -> list[Change]:
    """Bring the cluster's topics in line with the descriptors; return what changed."""
    own = admin is None
    client = admin or admin_client(settings)
    try:
        want = desired(settings)
        names = sorted(want)
        existing = set(client.list_topics())
        changes: list[Change] = []
        present = [n for n in names if n in existing]
        partitions = current_partitions(client, present)
        grow = {n: want[n][0] for n in present if partitions.get(n, 0) < want[n][0]}
        refuse_channel_growth(settings, grow)
        to_create = [n for n in names if n not in existing]
        if to_create:
            changes += [Change(n, f"create ({want[n][0]} partitions, {want[n][1]})") for n in to_create]
            if not dry_run:
                client.create_topics(
                    [
                        NewTopic(n, want[n][0], settings.replication_factor, topic_configs=want[n][1])
                        for n in to_create
                    ],
                    raise_errors=True,
                )
        for n, count in grow.items():
            changes.append(
                Change(
                    n,
                    f"partitions {partitions.get(n)} -> {count} (keys move: order holds only for new records)",
                )
            )
        for n in present:
            if partitions.get(n, 0) > want[n][0]:
                log.warning(
                    "%s has %d partitions, more than the %d configured; Kafka cannot shrink it",
                    n,
                    partitions[n],
                    want[n][0],
                )
        if grow and not dry_run:
            client.create_partitions(grow)
        current = _current_configs(client, present)
        alter: list[ConfigResource] = []
        for n in present:
            diff = {k: v for k, v in want[n][1].items() if current.get(n, {}).get(k) != v}
            if diff:
                changes.append(Change(n, f"config {diff}"))
                alter.append(ConfigResource(ConfigResourceType.TOPIC, n, configs=diff))
        if alter and not dry_run:
            client.alter_configs(alter, incremental=True)
        return changes
    finally:
        if own:
            client.close()


def topics_exist(settings: Settings, topics: list[Topic], admin: KafkaAdminClient) -> bool:
    existing = set(admin.list_topics())
    return all(settings.topic(t) in existing for t in topics)
