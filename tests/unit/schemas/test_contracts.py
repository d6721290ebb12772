"""Every topic has a descriptor, and every example in every descriptor passes its schema."""

from __future__ import annotations

import pytest

from schemas import contracts
from schemas.errors import InvalidContent
from schemas.models import Action, Command, IdempotencyKey
from schemas.ninjs_validation import validate_document
from schemas.settings import Settings
from schemas.topics import Channel, Topic, descriptors
from streams.articles.intake import cloud_event

EXAMPLES = [(d.topic, i, ex) for d in descriptors().values() for i, ex in enumerate(d.examples)]


def test_every_topic_has_a_descriptor_with_sane_config() -> None:
    found = descriptors()
    assert set(found) == set(Topic)
    for desc in found.values():
        assert desc.partitions >= 1
        assert desc.cleanup_policy in ("delete", "compact")
        assert desc.producers and desc.consumers, desc.topic
    # co-partitioning the stream worker's article state relies on
    assert found[Topic.EMBARGO_RELEASES].partitions == found[Topic.CMS_ARTICLES].partitions
    assert found[Topic.ARTICLE_STATE].partitions == found[Topic.CMS_ARTICLES].partitions
    assert found[Topic.ARTICLE_STATE].cleanup_policy == "compact"
    assert found[Topic.TARGETS].cleanup_policy == "compact"


@pytest.mark.parametrize(
    ("topic", "index", "example"), EXAMPLES, ids=[f"{t.value}-{i}" for t, i, _ in EXAMPLES]
)
def test_example_matches_its_schema(topic: Topic, index: int, example: object) -> None:
    desc = descriptors()[topic]
    value = example.value  # type: ignore[attr-defined]
    headers = example.headers  # type: ignore[attr-defined]
    if desc.schema == "ninjs":
        ce = cloud_event(headers)
        if ce.type == "article.retracted" and ce.dataschema.startswith("urn:lantoa:schema:retraction"):
            contracts.check("retraction", value)
        else:
            validate_document(value)
    elif desc.schema == "deadletter":
        contracts.check("deadletter", headers)
    else:
        contracts.check(desc.schema, value)
    if desc.schema == "command":
        ik = value["idempotency_key"]
        key = IdempotencyKey(
            ik["uri"], ik["version"], Channel(ik["channel"]), ik["target"], Action(ik["action"])
        )
        assert value["command_id"] == key.command_id()
        assert Command.from_dict(value).to_dict() == value
        assert example.key == value["target"]  # type: ignore[attr-defined]


def test_examples_exist_for_each_data_topic() -> None:
    # retry tiers carry commands unchanged: the command topics' examples cover them
    without = [
        t
        for t, d in descriptors().items()
        if not d.examples and t is not Topic.ALERTS_CAP and ".retry." not in t.value
    ]
    assert without == []


def test_contract_check_gives_a_path_and_reason() -> None:
    with pytest.raises(InvalidContent) as caught:
        contracts.check("target", {"schema_version": 1, "id": "zone:1", "channel": "radio", "name": "x"})
    assert caught.value.reason.startswith("$.channel:")


def test_physical_names_and_partitions_come_from_settings() -> None:
    s = Settings.from_env(
        {
            "LANTOA_TOPIC_PREFIX": "staging.",
            "LANTOA_TOPIC_OVERRIDES": "cms.articles=newsroom.out",
            "LANTOA_PARTITIONS": "distribution.loudspeaker.commands=48",
        }
    )
    assert s.topic(Topic.CMS_ARTICLES) == "newsroom.out"
    assert s.topic(Topic.RECEIPTS) == "staging.distribution.receipts"
    assert s.partitions(Topic.LOUDSPEAKER_COMMANDS) == 48
    assert s.partitions(Topic.FANPAGE_COMMANDS) == descriptors()[Topic.FANPAGE_COMMANDS].partitions
    with pytest.raises(ValueError):
        Settings.from_env({"LANTOA_TOPIC_OVERRIDES": "no.such.topic=x"})


def test_command_ids_differ_by_every_part_of_the_key() -> None:
    base = IdempotencyKey("urn:a", 1, Channel.ZALO, "zalo:g", Action.PUBLISH)
    variants = [
        IdempotencyKey("urn:b", 1, Channel.ZALO, "zalo:g", Action.PUBLISH),
        IdempotencyKey("urn:a", 2, Channel.ZALO, "zalo:g", Action.PUBLISH),
        IdempotencyKey("urn:a", 1, Channel.FANPAGE, "zalo:g", Action.PUBLISH),
        IdempotencyKey("urn:a", 1, Channel.ZALO, "zalo:h", Action.PUBLISH),
        IdempotencyKey("urn:a", 1, Channel.ZALO, "zalo:g", Action.RETRACT),
    ]
    assert len({base.command_id(), *(v.command_id() for v in variants)}) == 6
