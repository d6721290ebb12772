"""Retry policy: short retries in process (jittered backoff, injectable clock), long waits in tiers.

Pure apart from the injected ``sleep``: tests drive it with a fake clock.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from schemas.topics import RETRY_TIERS


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry before a command is dead-lettered.

    ``in_process`` attempts happen inside one delivery (for blips); after that the command goes
    to a delayed retry topic, counting one attempt per trip; after ``max_attempts`` trips it is
    dead-lettered with the last reason (DlqLimit).
    """

    in_process: int = 3
    base_s: float = 0.2
    cap_s: float = 5.0
    max_attempts: int = 8
    tiers: tuple[tuple[str, float], ...] = tuple(RETRY_TIERS.items())

    def backoff(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Full-jitter exponential backoff for in-process attempt ``attempt`` (1-based)."""
        ceiling = min(self.cap_s, self.base_s * (2 ** max(0, attempt - 1)))
        return float(ceiling * rng())

    def tier_for(self, attempt: int, retry_after: float | None) -> tuple[str, float]:
        """The retry tier for trip ``attempt`` (1-based): grows with attempts, honours retry_after."""
        wanted = max(retry_after or 0.0, self.tiers[min(attempt, len(self.tiers)) - 1][1])
        for name, delay in self.tiers:
            if delay >= wanted:
                return name, delay
        return self.tiers[-1]

    def exhausted(self, attempt: int) -> bool:
        return attempt >= self.max_attempts


Sleep = Callable[[float], Awaitable[None]]
