"""``lantoa adapter loudspeaker`` on a clock the bench moves: one day ahead on every SIGUSR1.

bench/rss.py ``loudspeaker_week`` runs seven national days through this process within minutes:
the delivery runtime (ledger ``at`` times, the horizon sweep) and the loudspeaker adapter (which day's
windows a bulletin goes into) both read ``clock``. Everything else is the real process: the same
bootstrap (consumers/process.py), registry follower, runtime, adapter and play reporter.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

from consumers.loudspeaker.adapter import from_settings
from consumers.loudspeaker.plays import PlayReporter
from consumers.process import TargetLookup, run_until_signalled
from consumers.registry import policy_from
from consumers.runtime import DeliveryRuntime, RuntimeConfig
from schemas.settings import Settings

DAY_S = 86400.0
log = logging.getLogger("bench.week_adapter")


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env(os.environ)
    offset = [0.0]

    def next_day(signum: int, frame: object) -> None:
        offset[0] += DAY_S

    def clock() -> float:
        return time.time() + offset[0]

    signal.signal(signal.SIGUSR1, next_day)

    async def body(stop: asyncio.Event, targets: TargetLookup) -> None:
        adapter = from_settings(settings, targets, clock=clock)
        config = RuntimeConfig(min_interval_s=float(getattr(adapter, "min_interval_s", 0.0)), policy=policy_from(settings))
        await asyncio.gather(DeliveryRuntime(settings, adapter, config, clock=clock).run(stop),
                             PlayReporter.from_settings(settings).run(stop))

    run_until_signalled(settings, "loudspeaker adapter (bench week)", body, log)


if __name__ == "__main__":
    main()
