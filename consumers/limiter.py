"""Per-target pacing fed by the platform's own usage signals: pause the target, not the partition."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TargetLimiter:
    """Pauses and spacing per target (page, OA, zone), on an injectable clock.

    - ``pause(target, seconds)``: after a rate-limit code, an expired token, a quota error;
    - ``note_usage(target, percent)``: the platform's usage headers; >= slow_at spaces calls,
      >= hold_at holds non-urgent work for ``hold_s``;
    - ``min_interval_s``: a fixed floor between calls to one target (the platform's rate).
    """

    clock: Callable[[], float]
    min_interval_s: float = 0.0
    slow_at: float = 80.0
    hold_at: float = 95.0
    hold_s: float = 60.0
    _paused_until: dict[str, float] = field(default_factory=dict)
    _next_call: dict[str, float] = field(default_factory=dict)
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

    def spacing(self, target: str) -> float:
        """Seconds to wait before the next call to this target, then book the slot."""
        now = self.clock()
        slot = max(now, self._next_call.get(target, 0.0))
        self._next_call[target] = slot + self.min_interval_s
        return slot - now

    def note_usage(self, target: str, percent: float | None) -> None:
        if percent is None:
            return
        if percent >= self.hold_at:
            self.pause(target, self.hold_s, "usage")
        elif percent >= self.slow_at:
            now = self.clock()
            self._next_call[target] = max(self._next_call.get(target, now), now + max(self.min_interval_s, 1.0) * 4)

    def paused_targets(self) -> int:
        now = self.clock()
        return sum(1 for until in self._paused_until.values() if until > now)
