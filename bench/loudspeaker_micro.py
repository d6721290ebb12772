"""Loudspeaker adapter micro-benchmark: deliveries/s and platform calls per delivery.

    python -m bench.loudspeaker_micro [--zones M] [--bulletins N] [--late K] [--json]

No Kafka: the adapter runs in this process (as ``lantoa adapter loudspeaker`` builds it, minus
the runtime), the platform emulator in a process of its own on a manual clock that this bench
moves together with the adapter's. The ledger is a dict of the live entries the runtime would
write (each effect's detail), so priors and restarts behave as with the runtime.

Phases, each timed on its own (espeak-ng renders are done before the clock starts):

1. ``morning``: at 04:00 (before the first window) N bulletins, each to every one of M zones,
   bulletin after bulletin, up to 64 zones at a time and each zone's commands in order (as the
   runtime runs a batch).
2. ``restart``: a new adapter (empty memory, state from the ledger) delivers one more bulletin
   to every zone at 04:30.
3. ``after_window``: at 08:00 (the morning window has aired) K more bulletins per zone, then the
   retraction of the first bulletin (it aired: a correction is planned).

Per phase: deliveries/s (wall), CPU ms of this process per delivery (adapter + client), and the
platform calls per delivery by kind, read from the emulator's request statistics.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.common import ROOT

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
DAY = date(2026, 9, 17)  # a Thursday: both default windows
TOKEN = "micro-bench-token"
CONCURRENCY = 64


def at(hh: int, mm: int = 0) -> float:
    return datetime(DAY.year, DAY.month, DAY.day, hh, mm, tzinfo=HCM).timestamp()


class Ledger:
    """(uri, zone) → the live entry the runtime writes after an effect."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], dict[str, Any]] = {}

    async def entries(self, zone_id: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        return [v for (_, z), v in self.live.items() if z == zone_id]


class Emulator:
    """The loudspeaker emulator as a process on a manual clock."""

    def __init__(self, workdir: Path) -> None:
        self.state = workdir / "emu.json"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "infra.local.emulators.loudspeaker",
                "--manual-clock",
                "--no-access-log",
                "--token",
                TOKEN,
                "--state-file",
                str(self.state),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while not self.state.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the loudspeaker emulator did not start")
            time.sleep(0.05)
        self.base_url = str(json.loads(self.state.read_text())["loudspeaker"]["base_url"])

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            self.base_url + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=60) as resp:
            return json.loads(resp.read())

    def calls(self) -> collections.Counter[str]:
        """Requests so far by kind: GET schedule 200/404, PUT schedule, GET plays, other."""
        out: collections.Counter[str] = collections.Counter()
        for key, outcomes in self.control("GET", "/_control/stats")["requests"].items():
            method, _, path = key.partition(" ")
            kind = (
                "PUT schedule"
                if method == "PUT" and "/schedules/" in path
                else "GET schedule"
                if method == "GET" and "/schedules/" in path
                else "GET plays"
                if path.endswith("/plays")
                else f"{method} other"
            )
            for outcome, n in outcomes.items():
                out[
                    f"{kind} {'404' if outcome == 'error:not_found' else 'ok' if outcome == 'ok' else outcome}"
                ] += n
        return out

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


async def _run(zones: int, bulletins: int, late: int) -> list[dict[str, Any]]:
    from consumers.delivery.base import Prior
    from consumers.loudspeaker.adapter import LoudspeakerAdapter
    from consumers.loudspeaker.audio import AudioRenderer
    from consumers.loudspeaker.platform import PlatformClient
    from infra.local.emulators.common import ManualClock
    from schemas.models import Action, Command, IdempotencyKey, Priority, Target
    from schemas.topics import Channel

    workdir = Path(tempfile.mkdtemp(prefix="lantoa-ls-micro-"))
    emu = Emulator(workdir)
    clock = ManualClock(at(4))
    targets = {
        f"zone:{c}": Target(f"zone:{c}", Channel.LOUDSPEAKER, f"Xã {c}", province_code=1, ward_code=c)
        for c in range(1, zones + 1)
    }
    ledger = Ledger()
    renderer = AudioRenderer(workdir / "audio", "https://tin.example.vn/audio")
    adapters: list[LoudspeakerAdapter] = []

    async def new_adapter() -> LoudspeakerAdapter:
        a = LoudspeakerAdapter(
            PlatformClient(emu.base_url, lambda: TOKEN, timeout_s=30),
            renderer,
            targets.get,
            source=ledger,
            clock=clock,
        )
        await a.start()
        adapters.append(a)
        return a

    def text(i: int) -> str:
        return (
            f"Tin số {i}: Ủy ban nhân dân xã thông báo lịch tiêm chủng mở rộng cho trẻ em vào sáng thứ Bảy."
        )

    def cmd(i: int, zone: str, action: Action = Action.PUBLISH) -> Command:
        uri = f"urn:lantoa:micro:{i:04d}"
        when = datetime.fromtimestamp(at(4) + i, ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")
        payload: dict[str, Any] = {"title": f"Tin số {i}", "text": text(i), "language": "vi"}
        if action is Action.RETRACT:
            payload = {"reason": "thông tin chưa chính xác"}
        return Command(
            IdempotencyKey(uri, 1, Channel.LOUDSPEAKER, zone, action),
            Priority.NORMAL,
            when,
            payload,
            published_at=when,
        )

    async def deliver(adapter: LoudspeakerAdapter, commands: list[Command]) -> int:
        """Like one runtime batch: per zone in order, zones concurrently (at most CONCURRENCY)."""
        by_zone: dict[str, list[Command]] = collections.defaultdict(list)
        for c in commands:
            by_zone[c.target].append(c)
        sem = asyncio.Semaphore(CONCURRENCY)

        async def one_zone(items: list[Command]) -> None:
            async with sem:
                for c in items:
                    live = ledger.live.get((c.key.uri, c.target))
                    prior = Prior(detail=live["detail"]) if live else Prior()
                    effect = await adapter.deliver(c, prior)
                    ledger.live[(c.key.uri, c.target)] = {"detail": effect.detail}

        await asyncio.gather(*(one_zone(v) for v in by_zone.values()))
        return len(commands)

    results: list[dict[str, Any]] = []

    async def phase(name: str, adapter: LoudspeakerAdapter, commands: list[Command]) -> None:
        before, cpu0, t0 = emu.calls(), time.process_time(), time.perf_counter()
        n = await deliver(adapter, commands)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        calls = emu.calls() - before
        total = sum(calls.values())
        results.append(
            {
                "phase": name,
                "deliveries": n,
                "deliveries_s": round(n / wall, 1),
                "cpu_ms_per_delivery": round(1000 * cpu / n, 2),
                "calls_per_delivery": round(total / n, 3),
                "calls": {k: round(v / n, 3) for k, v in sorted(calls.items())},
            }
        )

    try:
        emu.control("POST", "/_control/clock", {"set": at(4)})
        for i in range(bulletins + late + 1):  # render every text before timing anything
            await renderer.render(text(i))
        zone_ids = list(targets)
        a = await new_adapter()
        await phase("morning", a, [cmd(i, z) for i in range(bulletins) for z in zone_ids])
        clock.set(at(4, 30))
        emu.control("POST", "/_control/clock", {"set": at(4, 30)})
        b = await new_adapter()
        await phase("restart", b, [cmd(bulletins, z) for z in zone_ids])
        clock.set(at(8))
        emu.control("POST", "/_control/clock", {"set": at(8)})
        late_cmds = [cmd(bulletins + 1 + i, z) for i in range(late) for z in zone_ids]
        await phase("after_window", b, late_cmds + [cmd(0, z, Action.RETRACT) for z in zone_ids])
        docs = emu.control("GET", "/_control/schedules")["schedules"]
        slots = sum(len((d.get("schedule") or {}).get("slots") or []) for d in docs)
        results.append(
            {
                "phase": "end",
                "schedules": len(docs),
                "slots": slots,
                "conflicts": sum(x.conflicts for x in adapters),
            }
        )
    finally:
        for x in adapters:
            await x.close()
        emu.close()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.loudspeaker_micro")
    parser.add_argument("--zones", type=int, default=200)
    parser.add_argument("--bulletins", type=int, default=10)
    parser.add_argument("--late", type=int, default=3)
    ns = parser.parse_args(argv)
    os.environ.setdefault("PYTHONHASHSEED", "0")
    for row in asyncio.run(_run(ns.zones, ns.bulletins, ns.late)):
        print(json.dumps(row, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
