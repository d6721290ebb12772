"""Per-target pacing fed by the platform's own usage signals: pause the target, not the partition."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class TargetLimiter:
    """Pauses and pacing per target (page, OA, zone), on an injectable clock.

    - ``pause(target, seconds)``: after a rate-limit code, an expired token, a quota error;
    - ``note_usage(target, percent)``: the platform's usage headers; >= slow_at spaces calls,
      >= hold_at holds non-urgent work for ``hold_s``;
    - ``min_interval_s``: a floor between two calls to one target;
    - ``max_calls`` per ``window_s``: a sliding window like the platform's own (0: none).

    Pacing is decided when a call is let through (``turn``), from the times calls actually went
    out, never by booking slots ahead: slots booked ahead all fall due together after the event
    loop stalls, and the burst breaks the platform's per-second limit (Zalo -32, a 5 s pause).
    """

    clock: Callable[[], float]
    min_interval_s: float = 0.0
    max_calls: int = 0
    window_s: float = 1.0
    slow_at: float = 80.0
    hold_at: float = 95.0
    hold_s: float = 60.0
    _paused_until: dict[str, float] = field(default_factory=dict)
    _not_before: dict[str, float] = field(default_factory=dict)
    _sent: dict[str, deque[float]] = field(default_factory=dict)
    _locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    _reason: dict[str, str] = field(default_factory=dict)

    def pause(self, target: str, seconds: float, reason: str = "") -> float:
        until = self.clock() + max(0.0, seconds)
        if until > self._paused_until.get(target, 0.0):
            self._paused_until[target] = until
            self._reason[target] = reason
        return self._paused_until[target]

    def paused_for(self, target: str, urgent: bool = False) -> float:
        """Seconds this target must still wait (0 when free). Urgent work ignores usage holds."""
        until = self._paused_until.get(target, 0.0)
        if urgent and self._reason.get(target) == "usage":
            return 0.0
        left = until - self.clock()
        if left <= 0:
            self._paused_until.pop(target, None)
            self._reason.pop(target, None)
            return 0.0
        return left

    def reason(self, target: str) -> str:
        return self._reason.get(target, "")

    def delay(self, target: str) -> float:
        """Seconds from now until a call to this target may go (pure: books nothing)."""
        now = self.clock()
        sent = self._sent.get(target)
        ready = self._not_before.get(target, 0.0)
        if sent:
            ready = max(ready, sent[-1] + self.min_interval_s)
            while sent and sent[0] <= now - self.window_s:
                sent.popleft()
            if self.max_calls and len(sent) >= self.max_calls:
                ready = max(ready, sent[-self.max_calls] + self.window_s)
        return max(0.0, ready - now)

    def record(self, target: str) -> None:
        """A call to this target goes out now."""
        keep = max(self.max_calls, 1)
        sent = self._sent.setdefault(target, deque(maxlen=keep))
        sent.append(self.clock())

    async def turn(self, target: str, sleep: Callable[[float], Awaitable[None]]) -> float:
        """Wait until a call to this target may go, record it, and return the seconds waited.

        Callers queue per target (FIFO); after every sleep the delay is computed again from the
        clock, so a late wake-up (a stalled loop) never lets a burst through."""
        lock = self._locks.setdefault(target, asyncio.Lock())
        waited = 0.0
        async with lock:
            while (gap := self.delay(target)) > 0:
                await sleep(gap)
                waited += gap
            self.record(target)
        return waited

    def note_usage(self, target: str, percent: float | None) -> None:
        if percent is None:
            return
        if percent >= self.hold_at:
            self.pause(target, self.hold_s, "usage")
        elif percent >= self.slow_at:
            now = self.clock()
            self._not_before[target] = max(
                self._not_before.get(target, now), now + max(self.min_interval_s, 1.0) * 4
            )

    def paused_targets(self) -> int:
        now = self.clock()
        return sum(1 for until in self._paused_until.values() if until > now)
