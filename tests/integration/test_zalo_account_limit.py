"""Zalo's per-Official-Account limit holds with two adapter processes (two runtimes, one group).

Zalo commands are keyed by the OA (schemas.topics.command_key), so they all sit in one partition
and one runtime at a time holds the OA's whole budget: the emulator's per-second counter never
refuses a call (-32) and never sees more than its 20 calls in a sliding second, however the
partitions are shared. Before, commands keyed by group spread over both processes and each paced
itself to ~16/s: ~33 calls/s against the OA's 20.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from pathlib import Path

import orjson

from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from consumers.zalo.adapter import ZaloAdapter
from consumers.zalo.tokens import TokenPair, TokenStore
from infra.kafka import clients
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.emulators.zalo import ZaloEmulator
from schemas.models import Action, Command, IdempotencyKey, Priority, Target
from schemas.secrets import SecretFile, write_secret
from schemas.settings import Settings
from schemas.topics import Channel, Topic
from streams.articles.fanout import command_records

GROUPS = [f"g-{i:03d}" for i in range(24)]
PER_GROUP = 8


async def test_two_adapter_processes_on_one_oa_never_exceed_its_rate(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"za{uuid.uuid4().hex[:6]}."
    settings = Settings.from_env({"LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap, "LANTOA_TOPIC_PREFIX": prefix})
    apply_topics(settings)
    emu = ZaloEmulator(groups=GROUPS, access_token="acc-0", refresh_token="ref-0")
    base = await emu.start()
    write_secret(tmp_path / "secret.json", {"secret_key": "lantoa-demo-secret"})
    store = TokenStore(tmp_path / "zalo-tokens.json")
    store.save(TokenPair("acc-0", "ref-0", 4102444800.0))
    targets = {f"zalo:{g}": Target(f"zalo:{g}", Channel.ZALO, g, config={"group_id": g}) for g in GROUPS}
    commands = [
        Command(
            IdempotencyKey(f"urn:z:{i}", 1, Channel.ZALO, t, Action.PUBLISH),
            Priority.NORMAL,
            "2026-11-26T01:00:00Z",
            {"text": f"Tin {i}."},
        )
        for i in range(PER_GROUP)
        for t in targets
    ]
    producer = clients.producer(settings.kafka, acks="all")
    try:
        for rec in command_records(commands, settings):
            producer.send(rec.topic, key=rec.key, value=rec.value)
        producer.flush()
    finally:
        producer.close()

    def adapter() -> ZaloAdapter:  # a process of its own: its own pacer, token store and session
        return ZaloAdapter(
            base,
            base,
            "lantoa-demo-app",
            SecretFile(tmp_path / "secret.json"),
            TokenStore(tmp_path / "zalo-tokens.json"),
            targets.get,
            timeout_s=5.0,
        )

    runtimes = [DeliveryRuntime(settings, adapter(), RuntimeConfig(max_batch=50)) for _ in range(2)]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(rt.run(stop)) for rt in runtimes]
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    try:
        deadline = asyncio.get_running_loop().time() + 120
        while True:
            await asyncio.to_thread(receipts.poll)
            delivered = {
                r["command_id"]
                for r in (orjson.loads(x.value) for x in receipts.records)
                if r.get("outcome") == "delivered"
            }
            if len(delivered) >= len(commands):
                break
            for t in tasks:
                if t.done():
                    t.result()
            assert asyncio.get_running_loop().time() < deadline, (
                f"{len(delivered)} of {len(commands)} delivered"
            )
            await asyncio.sleep(0.5)
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        receipts.close()
        await emu.stop()
    per_group = Counter(m.recipient for m in emu.messages(None))
    assert per_group == {g: PER_GROUP for g in GROUPS}  # every message once, across the rebalance
    assert emu.rate_limited == 0  # the OA never answered -32
    assert 0 < emu.peak_calls_per_s <= emu.rate_limit_per_s
