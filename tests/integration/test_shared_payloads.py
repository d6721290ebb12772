"""Shared payloads on the real broker: stored once, resolved by reference, refused when not proven.

The writer stores payloads on distribution.payloads through an outbox; the reader resolves
references by seeking to their records, checks length and hash, and caches. A reference that is
forged (hash), points past the end of its partition, names a partition that does not exist, or
names a record deleted by retention (here: the admin API's DeleteRecords, which moves the log
start as retention does) is refused with the reason. The delivery runtime delivers commands that
carry a reference with the stored payload and dead-letters the ones whose reference is refused.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any, ClassVar

import orjson
import pytest
from kafka import TopicPartition

from consumers.delivery.base import Effect, Prior
from consumers.delivery.runtime import DeliveryRuntime
from infra.kafka import clients
from infra.kafka.outbox import Outbox
from infra.kafka.payloads import PayloadReader, PayloadRef, PayloadWriter
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from schemas import contracts
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.topics import Channel, Topic
from streams.processor import CommandWriter


@pytest.fixture
def settings(kafka_bootstrap: str) -> Settings:
    prefix = f"sp{uuid.uuid4().hex[:6]}."
    s = Settings.from_env(
        {
            "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_SHARED_PAYLOAD_MIN_BYTES": "0",
        }
    )
    apply_topics(s)
    return s


def reader(settings: Settings, **options: Any) -> PayloadReader:
    return PayloadReader(settings.kafka, settings.topic(Topic.PAYLOADS), "test-payloads", **options)


async def test_payloads_are_stored_once_resolved_and_refused_unless_proven(settings: Settings) -> None:
    outbox = Outbox(settings.kafka, "test-payloads")
    await outbox.start()
    try:
        writer = PayloadWriter(outbox, settings.topic(Topic.PAYLOADS))
        blobs = [encode({"title": f"Bản tin {i}", "text": "Thông báo " * 200}) for i in range(3)]
        refs = await writer.put(blobs)
    finally:
        await outbox.stop()
    assert [r.size for r in refs] == [len(b) for b in blobs]
    assert len({(r.partition, r.offset) for r in refs}) == 3

    payloads = reader(settings, missing_wait_s=0.5)
    try:
        found, failed = await payloads.resolve(refs * 5)
        assert failed == {}
        assert [found[r.sha256]["title"] for r in refs] == ["Bản tin 0", "Bản tin 1", "Bản tin 2"]
        assert payloads.fetched == 3  # one read per stored payload, however many references
        await payloads.resolve(refs)
        assert payloads.fetched == 3  # cached

        first = refs[0]
        forged = PayloadRef(first.partition, first.offset, "0" * 64, first.size)
        ahead = PayloadRef(first.partition, first.offset + 1000, "1" * 64, 10)
        nowhere = PayloadRef(99, 0, "2" * 64, 10)
        found, failed = await payloads.resolve([forged, ahead, nowhere])
        assert found == {}
        assert "does not match its reference" in failed[forged]
        assert "not found" in failed[ahead] and f"@{ahead.offset}" in failed[ahead]
        assert "names partition 99" in failed[nowhere]
    finally:
        await payloads.stop()

    # Retention: the records before an offset are deleted (the log start moves, as retention does).
    admin = clients.admin(settings.kafka)
    try:
        gone = refs[0]
        admin.delete_records(
            {TopicPartition(settings.topic(Topic.PAYLOADS), gone.partition): gone.offset + 1}
        )
    finally:
        admin.close()
    fresh = reader(settings)
    try:
        found, failed = await fresh.resolve([gone])
        assert found == {} and "is gone" in failed[gone], failed
    finally:
        await fresh.stop()


class RecordingAdapter:
    channel: ClassVar[Channel] = Channel.FANPAGE

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        self.seen.append((command.target, command.payload))
        return Effect("delivered", f"{command.target}#1")

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        return None


def commands(uri: str, targets: list[str], payload: dict[str, Any]) -> list[Command]:
    return [
        Command(
            IdempotencyKey(uri, 1, Channel.FANPAGE, t, Action.PUBLISH),
            Priority.NORMAL,
            "2026-11-26T01:00:00Z",
            payload,
            published_at="2026-11-26T01:00:00Z",
        )
        for t in targets
    ]


async def test_the_runtime_delivers_from_a_reference_and_dead_letters_a_refused_one(
    settings: Settings,
) -> None:
    uri = f"urn:lantoa:article:shared-{uuid.uuid4().hex[:6]}"
    payload = {"message": "Thông báo lịch tiêm chủng " * 40, "link": "https://tin.example/a"}
    targets = [f"fanpage:ok-{i}" for i in range(40)]
    outbox = Outbox(settings.kafka, "test-payloads")
    await outbox.start()
    try:
        writer = CommandWriter(settings, PayloadWriter(outbox, settings.topic(Topic.PAYLOADS)))
        records = await writer.records(commands(uri, targets, payload))
        docs = [orjson.loads(r.value or b"") for r in records]
        assert all("payload" not in d and d["payload_ref"]["bytes"] == len(encode(payload)) for d in docs)
        for d in docs:
            contracts.check("command", d)
        # Two forged ones: the right place with another hash, and a place past the end.
        ref = docs[0]["payload_ref"]
        bad = [
            {**docs[0], "payload_ref": {**ref, "sha256": "f" * 64}},
            {**docs[1], "payload_ref": {**ref, "offset": ref["offset"] + 10_000}},
        ]
        bad[0]["target"] = bad[0]["idempotency_key"]["target"] = "fanpage:forged-hash"
        bad[1]["target"] = bad[1]["idempotency_key"]["target"] = "fanpage:forged-offset"
        for d in bad:
            d["command_id"] = IdempotencyKey(
                uri, 1, Channel.FANPAGE, d["target"], Action.PUBLISH
            ).command_id()
        await outbox.send_all(records)
    finally:
        await outbox.stop()
    producer = clients.producer(settings.kafka, acks="all")
    for d in bad:
        producer.send(settings.topic(Topic.FANPAGE_COMMANDS), key=d["target"].encode(), value=encode(d))
    producer.flush()
    producer.close()

    adapter = RecordingAdapter()
    runtime = DeliveryRuntime(settings, adapter)  # type: ignore[arg-type]
    runtime.payloads.missing_wait_s = 0.5
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    dead = TopicTail(settings.kafka, settings.topic(Topic.DEADLETTER))
    try:
        for _ in range(600):
            await asyncio.sleep(0.1)
            await asyncio.to_thread(dead.poll)
            if len(adapter.seen) >= len(targets) and len(dead.records) >= 2:
                break
            assert not task.done(), task
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    assert sorted(t for t, _ in adapter.seen) == sorted(targets)
    assert all(p == payload for _, p in adapter.seen)
    assert runtime.payloads.fetched == 1
    reasons = {r.key.decode(): dict(r.headers)["dlq_reason"].decode() for r in dead.records}
    dead.close()
    assert "does not match its reference" in reasons["fanpage:forged-hash"]
    assert "not found" in reasons["fanpage:forged-offset"]
