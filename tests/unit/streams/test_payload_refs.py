"""Shared payloads without Kafka: which payloads are stored once, and the commands that reference them.

streams/articles/fanout.py picks the payloads whose inline copies would cost at least
LANTOA_SHARED_PAYLOAD_MIN_BYTES more than one stored copy; streams/processor.py CommandWriter
stores them (here: a fake writer) and encodes the commands with a ``payload_ref``, which the
command schema accepts in place of ``payload``.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from infra.kafka.payloads import PayloadRef, digest
from schemas import contracts
from schemas.codec import encode
from schemas.errors import InvalidContent
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.topics import Channel
from streams.articles.fanout import MAX_REF_TITLE_CHARS, command_records, shared_payloads
from streams.processor import CommandWriter


def zone_commands(n: int, payload: dict[str, Any], uri: str = "urn:lantoa:article:a") -> list[Command]:
    return [
        Command(
            IdempotencyKey(uri, 1, Channel.LOUDSPEAKER, f"zone:{i}", Action.PUBLISH),
            Priority.NORMAL,
            "2026-11-26T01:00:00Z",
            payload,
        )
        for i in range(n)
    ]


BULLETIN = {"title": "Thông báo tiêm chủng", "text": "Ủy ban nhân dân xã thông báo. " * 300, "language": "vi"}


def test_a_payload_is_shared_when_its_copies_would_cost_the_threshold() -> None:
    size = len(encode(BULLETIN))
    cmds = zone_commands(3, BULLETIN)
    assert list(shared_payloads(cmds, 2 * size).values()) == [encode(BULLETIN)]  # two copies saved
    assert shared_payloads(cmds, 2 * size + 1) == {}
    assert shared_payloads(zone_commands(1, BULLETIN), 0) == {}  # one user: nothing to share
    assert shared_payloads(cmds, -1) == {}  # sharing off
    # Equal content in distinct objects (retractions built per target) is not taken for one payload.
    per_target = [replace(c, payload=dict(BULLETIN)) for c in cmds]
    assert shared_payloads(per_target, 0) == {}


class FakeWriter:
    def __init__(self) -> None:
        self.stored: list[bytes] = []

    async def put(self, blobs: list[bytes]) -> list[PayloadRef]:
        start = len(self.stored)
        self.stored.extend(blobs)
        return [PayloadRef(1, start + i, digest(b), len(b)) for i, b in enumerate(blobs)]


async def test_the_writer_stores_a_national_bulletin_once_and_every_command_references_it() -> None:
    settings = Settings()
    small = {"reason": "gỡ bài"}
    cmds = zone_commands(3321, BULLETIN) + zone_commands(2, small, uri="urn:lantoa:article:b")
    writer = FakeWriter()
    records = await CommandWriter(settings, writer).records(cmds)  # type: ignore[arg-type]
    assert writer.stored == [encode(BULLETIN)]
    docs = [orjson.loads(r.value or b"") for r in records]
    refs = [d["payload_ref"] for d in docs[:3321]]
    assert all("payload" not in d for d in docs[:3321])
    assert {orjson.dumps(r) for r in refs} == {
        orjson.dumps(
            {
                "partition": 1,
                "offset": 0,
                "sha256": digest(encode(BULLETIN)),
                "bytes": len(encode(BULLETIN)),
                "title": BULLETIN["title"],
            }
        )
    }
    assert [d["payload"] for d in docs[3321:]] == [small, small]  # small: inline, no round trip
    for d in (docs[0], docs[-1]):
        contracts.check("command", d)
    inline = command_records(cmds, settings)
    assert sum(len(r.value or b"") for r in records) * 10 < sum(len(r.value or b"") for r in inline)
    # Without a writer (tools, tests) every payload travels inline, exactly as to_dict has it.
    plain = await CommandWriter(settings, None).records(cmds[:2])
    assert [orjson.loads(r.value or b"") for r in plain] == [c.to_dict() for c in cmds[:2]]


async def test_a_long_title_beside_the_reference_is_bounded() -> None:
    payload = {**BULLETIN, "title": "Tiêu đề " * 200}
    records = await CommandWriter(Settings(), FakeWriter()).records(zone_commands(50, payload))  # type: ignore[arg-type]
    ref = orjson.loads(records[0].value or b"")["payload_ref"]
    assert len(ref["title"]) <= MAX_REF_TITLE_CHARS
    contracts.check("command", orjson.loads(records[0].value or b""))


def command_doc(**change: Any) -> dict[str, Any]:
    doc = zone_commands(1, BULLETIN)[0].to_dict()
    doc.update(change)
    return doc


def test_a_command_carries_exactly_one_of_payload_and_payload_ref() -> None:
    ref = {"partition": 0, "offset": 5, "sha256": "a" * 64, "bytes": 10}
    both = command_doc(payload_ref=ref)
    contracts.check("command", both)
    with pytest.raises(InvalidContent, match="exactly one of payload and payload_ref"):
        Command.from_dict(both)
    neither = command_doc()
    del neither["payload"]
    with pytest.raises(InvalidContent, match="neither payload nor payload_ref"):
        Command.from_dict(neither)
    unresolved = {**neither, "payload_ref": ref}
    contracts.check("command", unresolved)
    with pytest.raises(InvalidContent, match="not resolved"):
        Command.from_dict(unresolved)


@pytest.mark.parametrize(
    ("ref", "why"),
    [
        ({"partition": -1, "offset": 0, "sha256": "a" * 64, "bytes": 1}, "minimum"),
        ({"partition": 0, "offset": 0, "sha256": "A" * 64, "bytes": 1}, "does not match"),
        ({"partition": 0, "offset": 0, "sha256": "a" * 64}, "bytes"),
        (
            {"partition": 0, "offset": 0, "sha256": "a" * 64, "bytes": 1, "payload": {}},
            "Additional properties",
        ),
    ],
)
def test_the_schema_refuses_a_malformed_reference(ref: dict[str, Any], why: str) -> None:
    doc = command_doc(payload_ref=ref)
    del doc["payload"]
    with pytest.raises(InvalidContent, match=why):
        contracts.check("command", doc)


@pytest.mark.parametrize(
    "raw",
    [
        {"partition": True, "offset": 0, "sha256": "a" * 64, "bytes": 1},
        {"partition": 0, "offset": 2**63, "sha256": "a" * 64, "bytes": 1},
        {"partition": 0, "offset": 0, "sha256": "g" * 64, "bytes": 1},
        {"partition": 0, "offset": 0, "sha256": "a" * 63, "bytes": 1},
        {"partition": 0, "offset": "0", "sha256": "a" * 64, "bytes": 1},
        {"offset": 0, "sha256": "a" * 64, "bytes": 1},
        ["not", "a", "mapping"],
    ],
)
def test_a_reference_is_read_only_when_it_is_one(raw: Any) -> None:
    with pytest.raises(InvalidContent, match="payload_ref"):
        PayloadRef.from_dict(raw)


def test_a_reference_round_trips() -> None:
    ref = PayloadRef(2, 40512, "b" * 64, 11873)
    assert PayloadRef.from_dict({**ref.to_dict(), "title": "x"}) == ref
