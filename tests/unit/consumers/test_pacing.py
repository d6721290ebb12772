"""Pacing decided when a call goes out, not booked ahead: robust to a stalled event loop.

A virtual clock; every sleep wakes up late by a random stall (the loop was busy). The calls that
go out must still respect the window (at most ``max_calls`` in any ``window_s``) and the spacing,
where slots booked ahead would all fall due together after the stall.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.delivery.limiter import TargetLimiter
from consumers.zalo.adapter import ZaloAdapter


class Virtual:
    def __init__(self, seed: int, max_stall: float) -> None:
        self.now = 1000.0
        self.rng = random.Random(seed)
        self.max_stall = max_stall

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds + self.rng.uniform(0.0, self.max_stall)
        await asyncio.sleep(0)


def worst_window(times: list[float], window: float) -> int:
    worst, j = 0, 0
    for i, t in enumerate(times):
        while times[j] <= t - window:
            j += 1
        worst = max(worst, i - j + 1)
    return worst


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), stall=st.sampled_from([0.0, 0.05, 0.3, 1.5]), tasks=st.integers(1, 40))
def test_calls_respect_window_and_spacing_whatever_the_stalls(seed: int, stall: float, tasks: int) -> None:
    clock = Virtual(seed, stall)
    z = ZaloAdapter
    lim = TargetLimiter(
        clock=clock, min_interval_s=z.call_interval_s, max_calls=z.calls_per_window, window_s=z.window_s
    )
    sent: list[float] = []

    async def worker() -> None:
        for _ in range(4):
            await lim.turn("zalo-oa:1", clock.sleep)
            sent.append(clock.now)
            if clock.rng.random() < 0.3:  # a stall between two calls of one task
                clock.now += clock.rng.uniform(0.0, stall)
            await asyncio.sleep(0)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(tasks)))

    asyncio.run(main())
    assert len(sent) == 4 * tasks
    assert worst_window(sent, z.window_s) <= z.calls_per_window
    assert worst_window(sent, 1.0) < 20  # Zalo's own limit: 20 in any second
    assert all(b - a >= z.call_interval_s - 1e-9 for a, b in zip(sent, sent[1:], strict=False))


def test_booking_is_gone_a_late_wake_up_does_not_release_a_burst() -> None:
    clock = Virtual(1, 0.0)
    lim = TargetLimiter(clock=clock, min_interval_s=0.1)
    lim.record("t")
    assert abs(lim.delay("t") - 0.1) < 1e-9
    clock.now += 5.0  # the loop was stuck for 5 s
    assert lim.delay("t") == 0.0
    lim.record("t")
    assert abs(lim.delay("t") - 0.1) < 1e-9  # the next one still waits its interval after the real last call


async def test_every_zalo_api_call_waits_its_turn_on_the_oa_pacer(tmp_path: Any) -> None:
    clock = Virtual(2, 0.0)
    adapter = ZaloAdapter(
        "http://zalo.invalid",
        "http://oauth.invalid",
        "app",
        None,
        None,
        lambda _t: None,  # type: ignore[arg-type]
        pace_clock=clock,
        sleep=clock.sleep,
    )
    assert ZaloAdapter.min_interval_s == 0.0  # the runtime does not pace deliveries: calls are paced here
    scope = adapter.rate_scope("zalo:g1")
    assert scope == adapter.rate_scope("zalo:g2")  # one OA, one pacer for all its groups
    for _ in range(40):
        await adapter.pacer.turn(scope, clock.sleep)
    sent = list(adapter.pacer._sent[scope])
    assert len(sent) == ZaloAdapter.calls_per_window
    assert (
        clock.now - 1000.0
        >= (40 - ZaloAdapter.calls_per_window) / ZaloAdapter.calls_per_window * ZaloAdapter.window_s
    )
