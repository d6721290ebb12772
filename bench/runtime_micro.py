"""Micro-benchmark of the shared delivery runtime (consumers/delivery/runtime.py), in process.

    python -m bench.runtime_micro [--commands 3000] [--pages 100] [--zalo-messages 300] [--stall-ms 150]

Needs a broker: LANTOA_KAFKA_BOOTSTRAP (or ``python -m infra.local.testenv -- python -m bench.runtime_micro``).
Starts the platform emulators (infra/local/stack.py ``Emulators``) itself. Prints JSON lines
{"name", "value", "unit"}:

- ``contract_check_valid_us`` / ``contract_check_invalid_us``: schemas/contracts.py ``check`` per
  command (valid / invalid), best of 5 rounds;
- ``fanpage_deliveries_per_s``: the fanpage adapter alone against the Graph emulator, N commands
  over M pages, batches of 500, concurrency 64 (time from the first batch to the N-th effect);
  ``fanpage_ledger_sends_per_command``: awaited Outbox.send_all calls per command;
  ``fanpage_send_all_ms_mean``: mean wait of one of those calls;
- ``zalo_*``: the Zalo adapter (one OA, its own pacing) with K commands (``--zalo-parts`` messages each) over G groups, with a task
  that blocks the event loop for ``--stall-ms`` every second (like CPU-bound work under load
  does); ``zalo_rate_limited_calls`` counts the emulator's -32 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from consumers.fanpage.adapter import FanpageAdapter
from consumers.zalo.adapter import ZaloAdapter
from consumers.zalo.tokens import TokenStore
from infra.kafka import clients
from infra.kafka.loop import Batch, Handled
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators
from schemas import contracts
from schemas.codec import encode
from schemas.errors import InvalidContent
from schemas.models import Action, Command, IdempotencyKey, Priority, Target
from schemas.registry import build_targets, load_config
from schemas.secrets import SecretFile
from schemas.settings import Settings
from schemas.topics import Channel, Topic


def emit(name: str, value: float, unit: str) -> None:
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit}), flush=True)


def make_command(uri: str, channel: Channel, target: str, parts: int = 1) -> Command:
    text = f"Tin {uri}: thông báo của Ủy ban nhân dân phường về lịch tiêm chủng."
    if parts > 1:  # long enough for ``parts`` Zalo messages of at most 2,000 characters
        text += " " + " ".join(f"Câu thứ {i} nói về việc sơ tán dân." for i in range(55 * (parts - 1)))
    payload: dict[str, Any] = (
        {"message": text, "link": "https://tin.example.vn/a/x"}
        if channel is Channel.FANPAGE
        else {"text": text}
    )
    return Command(
        IdempotencyKey(uri, 1, channel, target, Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        payload,
        published_at="2026-11-26T01:00:00Z",
    )


def bench_contracts() -> None:
    valid = make_command("urn:lantoa:micro:1", Channel.FANPAGE, "fanpage:p1").to_dict()
    invalid = {**valid, "version": 0}
    for name, value in (("contract_check_valid_us", valid), ("contract_check_invalid_us", invalid)):
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(500):
                try:
                    contracts.check("command", value)
                except InvalidContent:
                    pass
            best = min(best, (time.perf_counter() - t0) / 500)
        emit(name, best * 1e6, "us")


class Timed(DeliveryRuntime):
    """The runtime with a clock on its first batch and on its awaited Kafka sends."""

    first_batch: float | None = None
    sends = 0
    send_s = 0.0

    async def handle(self, batch: Batch) -> Handled:
        if self.first_batch is None:
            self.first_batch = time.perf_counter()
        return await super().handle(batch)


def count_sends(rt: Timed) -> None:
    original = rt.outbox.send_all

    async def send_all(records: Any) -> None:
        t0 = time.perf_counter()
        await original(records)
        rt.sends += 1
        rt.send_s += time.perf_counter() - t0

    rt.outbox.send_all = send_all  # type: ignore[method-assign]


async def produce(settings: Settings, channel: Channel, commands: list[Command]) -> None:
    producer = clients.aio_producer(settings.kafka, acks="all", linger_ms=20)
    await producer.start()
    try:
        topic = settings.topic(Topic.commands(channel))
        futs = [await producer.send(topic, encode(c.to_dict()), key=c.target.encode()) for c in commands]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def run_runtime(rt: Timed, n: int, timeout: float, stall_ms: float = 0.0) -> float:
    stop = asyncio.Event()
    task = asyncio.create_task(rt.run(stop))

    async def staller() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            time.sleep(stall_ms / 1000)  # noqa: ASYNC251 (blocks the loop on purpose)

    stall = asyncio.create_task(staller()) if stall_ms > 0 else None
    deadline = time.perf_counter() + timeout
    try:
        while rt.delivered < n:
            if task.done():
                task.result()
            if time.perf_counter() > deadline:
                raise SystemExit(f"{rt.channel.value}: only {rt.delivered}/{n} delivered in {timeout:.0f}s")
            await asyncio.sleep(0.01)
        end = time.perf_counter()
    finally:
        stop.set()
        if stall:
            stall.cancel()
        await asyncio.wait_for(task, 60)
    assert rt.first_batch is not None
    return end - rt.first_batch


async def bench_fanpage(
    settings: Settings, emus: Emulators, targets: dict[str, Target], n: int, pages: int
) -> None:
    ids = [f"fanpage:p{i}" for i in range(pages)]
    commands = [
        make_command(f"urn:lantoa:micro:{i // pages:05d}", Channel.FANPAGE, ids[i % pages]) for i in range(n)
    ]
    await produce(settings, Channel.FANPAGE, commands)
    adapter = FanpageAdapter(
        emus.graph_url,
        settings.graph_api_version,
        SecretFile(Path(emus.env["LANTOA_FANPAGE_TOKENS_FILE"])),
        targets.get,
        app_secret=SecretFile(Path(emus.env["LANTOA_FANPAGE_APP_SECRET_FILE"])),
    )
    rt = Timed(settings, adapter, RuntimeConfig(max_batch=500, concurrency=64))
    count_sends(rt)
    elapsed = await run_runtime(rt, n, 600)
    emit("fanpage_deliveries_per_s", n / elapsed, "deliveries/s")
    emit("fanpage_ledger_sends_per_command", rt.sends / n, "sends")
    emit("fanpage_send_all_ms_mean", 1000 * rt.send_s / max(1, rt.sends), "ms")


async def bench_zalo(
    settings: Settings,
    emus: Emulators,
    targets: dict[str, Target],
    n: int,
    groups: int,
    stall_ms: float,
    parts: int,
) -> None:
    before = emus.control("zalo", "GET", "/_control/stats")["outcomes"].get("error:-32", 0)
    ids = [f"zalo:g{i}" for i in range(groups)]
    commands = [
        make_command(f"urn:lantoa:micro:{i // groups:05d}", Channel.ZALO, ids[i % groups], parts)
        for i in range(n)
    ]
    await produce(settings, Channel.ZALO, commands)
    adapter = ZaloAdapter(
        emus.zalo_url,
        emus.env["LANTOA_ZALO_OAUTH_URL"],
        emus.env["LANTOA_ZALO_APP_ID"],
        SecretFile(Path(emus.env["LANTOA_ZALO_SECRET_FILE"])),
        TokenStore(Path(emus.env["LANTOA_ZALO_TOKEN_FILE"])),
        targets.get,
    )
    rt = Timed(
        settings,
        adapter,
        RuntimeConfig(max_batch=500, concurrency=64, min_interval_s=ZaloAdapter.min_interval_s),
    )
    count_sends(rt)
    elapsed = await run_runtime(rt, n, 900, stall_ms)
    after = emus.control("zalo", "GET", "/_control/stats")["outcomes"].get("error:-32", 0)
    emit("zalo_deliveries_per_s", n / elapsed, "deliveries/s")
    emit("zalo_rate_limited_calls", after - before, "calls")
    emit("zalo_calls_per_s", (n * parts) / elapsed, "calls/s")
    emit("zalo_stall_ms_per_s", stall_ms, "ms")


def targets_toml(path: Path, pages: int, groups: int) -> None:
    lines = ['[[archive]]\nid = "archive:main"\nname = "A"\nbucket = "b"\n']
    for i in range(pages):
        lines.append(
            f'[[fanpage]]\nid = "fanpage:p{i}"\nname = "Trang {i}"\npage_id = "{200000000000000 + i}"\n'
        )
    for i in range(groups):
        lines.append(f'[[zalo]]\nid = "zalo:g{i}"\nname = "Nhóm {i}"\ngroup_id = "g-{i:018d}"\n')
    path.write_text("\n".join(lines))


async def main(args: argparse.Namespace) -> None:
    bench_contracts()
    if args.contracts_only:
        return
    bootstrap = os.environ.get("LANTOA_KAFKA_BOOTSTRAP")
    if not bootstrap:
        raise SystemExit("set LANTOA_KAFKA_BOOTSTRAP (or run under python -m infra.local.testenv)")
    with tempfile.TemporaryDirectory(prefix="runtime-micro-") as tmp:
        tmpdir = Path(tmp)
        tfile = tmpdir / "targets.toml"
        targets_toml(tfile, args.pages, args.groups)
        emus = Emulators(tmpdir / "emu", tfile)
        try:
            settings = Settings.from_env(
                {
                    "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
                    "LANTOA_TOPIC_PREFIX": f"rm{uuid.uuid4().hex[:6]}.",
                    "LANTOA_TARGETS_FILE": str(tfile),
                    **emus.env,
                }
            )
            apply_topics(settings)
            targets = {t.id: t for t in build_targets(load_config(tfile))}
            if args.commands:
                await bench_fanpage(settings, emus, targets, args.commands, args.pages)
            if args.zalo_messages:
                await bench_zalo(
                    settings, emus, targets, args.zalo_messages, args.groups, args.stall_ms, args.zalo_parts
                )
        finally:
            emus.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--commands", type=int, default=3000)
    p.add_argument("--pages", type=int, default=100)
    p.add_argument("--zalo-messages", type=int, default=300)
    p.add_argument("--groups", type=int, default=30)
    p.add_argument("--stall-ms", type=float, default=150.0)
    p.add_argument("--zalo-parts", type=int, default=1, help="Zalo messages per command (long texts)")
    p.add_argument("--contracts-only", action="store_true")
    asyncio.run(main(p.parse_args()))
