"""The targets registry from configuration, and loading it into the compacted targets topic."""

from __future__ import annotations

from kafka import KafkaProducer

from infra.kafka import clients
from schemas import contracts
from schemas.codec import encode
from schemas.models import Target
from schemas.registry import Registry, build_targets, load_config, targets_file
from schemas.settings import Settings
from schemas.topics import Topic


def configured_targets(settings: Settings) -> list[Target]:
    """Every target the configuration defines, each checked against the target schema."""
    targets = build_targets(load_config(targets_file(settings)))
    for t in targets:
        contracts.check("target", t.to_dict())
    return targets


def local_registry(settings: Settings) -> Registry:
    """The registry as configuration defines it (dry runs; no broker)."""
    return Registry.of(configured_targets(settings))


def load_targets(
    settings: Settings, producer: KafkaProducer | None = None, remove: list[str] | None = None
) -> int:
    """Write every configured target (and tombstones for ``remove``) to the targets topic."""
    targets = configured_targets(settings)
    own = producer is None
    prod = producer or clients.producer(
        settings.kafka, client_id=f"{settings.client_id}-targets", acks="all", linger_ms=20
    )
    try:
        topic = settings.topic(Topic.TARGETS)
        futures = [prod.send(topic, key=t.id.encode(), value=encode(t.to_dict())) for t in targets]
        futures += [prod.send(topic, key=tid.encode(), value=None) for tid in remove or ()]
        prod.flush()
        for f in futures:
            f.get(timeout=30)
        return len(futures)
    finally:
        if own:
            prod.close()
