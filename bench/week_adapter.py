"""``lantoa adapter loudspeaker`` on a clock the bench moves: one day ahead on every SIGUSR1.

bench/rss.py ``loudspeaker_week`` runs seven national days through this process within minutes:
the delivery runtime (ledger ``at`` times, the horizon sweep) and the loudspeaker adapter (which day's
windows a bulletin goes into, when it expires) both read ``clock``, and each command's publication
time is moved by the same offset (``Shifted``: the CMS publishes on the real clock), so day k's
bulletins are published, placed and expire on day k. Everything else is the real process: the same
bootstrap (consumers/delivery/process.py), registry follower, runtime, adapter and play reporter.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar

from consumers.bootstrap import policy_from
from consumers.delivery.base import Effect, Prior
from consumers.delivery.process import TargetLookup, run_until_signalled
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from consumers.loudspeaker.adapter import LoudspeakerAdapter, from_settings
from consumers.loudspeaker.plays import PlayReporter
from schemas.models import Command
from schemas.settings import Settings
from schemas.topics import Channel

DAY_S = 86400.0
log = logging.getLogger("bench.week_adapter")


class Shifted:
    """The loudspeaker adapter, with each command's publication time moved by the clock's offset."""

    channel: ClassVar[Channel] = Channel.LOUDSPEAKER
    min_interval_s: ClassVar[float] = 0.0

    def __init__(self, inner: LoudspeakerAdapter, offset: Callable[[], float]) -> None:
        self.inner, self.offset = inner, offset

    def _shift(self, command: Command) -> Command:
        if not command.published_at:
            return command
        moved = datetime.fromisoformat(command.published_at) + timedelta(seconds=self.offset())
        return dataclasses.replace(command, published_at=moved.isoformat())

    async def start(self) -> None:
        await self.inner.start()

    async def close(self) -> None:
        await self.inner.close()

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        return await self.inner.deliver(self._shift(command), prior)

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        return await self.inner.reconcile(self._shift(command), prior)

    def live_until(self, detail: dict[str, Any]) -> float | None:
        return self.inner.live_until(detail)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env(os.environ)
    offset = [0.0]

    def next_day(signum: int, frame: object) -> None:
        offset[0] += DAY_S

    def clock() -> float:
        return time.time() + offset[0]

    signal.signal(signal.SIGUSR1, next_day)

    def where_memory_is(signum: int, frame: object) -> None:
        """SIGUSR2, when run with PYTHONTRACEMALLOC: the 40 source lines holding the most memory,
        written to LANTOA_BENCH_TRACEMALLOC (how the week's memory was found, bench/RESULTS.md)."""
        import tracemalloc

        out = os.environ.get("LANTOA_BENCH_TRACEMALLOC")
        if not out or not tracemalloc.is_tracing():
            return
        stats = tracemalloc.take_snapshot().statistics("lineno")
        with open(out, "w") as fh:
            fh.write(f"total {sum(s.size for s in stats) / 1e6:.1f} MB traced\n")
            for stat in stats[:40]:
                fh.write(f"{stat.size / 1e6:8.2f} MB {stat.count:9,} {stat.traceback}\n")

    signal.signal(signal.SIGUSR2, where_memory_is)

    async def body(stop: asyncio.Event, targets: TargetLookup) -> None:
        adapter = Shifted(from_settings(settings, targets, clock=clock), lambda: offset[0])
        config = RuntimeConfig(min_interval_s=adapter.min_interval_s, policy=policy_from(settings))
        await asyncio.gather(
            DeliveryRuntime(settings, adapter, config, clock=clock).run(stop),
            PlayReporter.from_settings(settings).run(stop),
        )

    run_until_signalled(settings, "loudspeaker adapter (bench week)", body, log)


if __name__ == "__main__":
    main()
