"""The fault queue of an emulator: what a test or a drill asks the next requests to meet.

Faults are a queue. Each API request is matched against it in order (method, path regex, target
= page id or group id); the first fault that matches and wins its probability roll fires, and a
fault with a ``count`` is removed after firing that many times (``count: null`` = until removed).
Kinds (``FAULT_KINDS``):

- ``rate_limit``: answer the vendor's rate-limit error (``code`` picks which one).
- ``server_error``: answer the vendor's transient server error (``code`` / ``http_status``).
- ``error``: answer an arbitrary vendor error (``code``, optional ``subcode``, ``http_status``,
  ``message``), e.g. Graph 368 or Zalo -237.
- ``expire_token``: expire the token the request carries, then answer the expiry error.
- ``slow``: wait ``delay_s`` (default 2 s), then handle the request normally.
- ``timeout``: with ``effect_first`` (default) handle the request (the effect happens), then hold
  the reply ``delay_s`` (default 30 s) so the client times out not knowing the outcome; without
  it, wait first and handle after (the effect lands after the client gave up: aiohttp does not
  cancel a handler whose client went away).
- ``drop_before_effect``: abort the connection without a reply and without an effect.
- ``drop_after_effect``: perform and record the effect, then abort the connection without a
  reply: the "outcome unknown" case.

Delays are cut short by the emulator's ``stop()``, so a test that tears down never waits for a
30 s fault.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["DEFAULT_DELAY_S", "FAULT_KINDS", "Clock", "Fault", "FaultEngine"]

FAULT_KINDS = frozenset(
    {
        "rate_limit",
        "server_error",
        "error",
        "expire_token",
        "slow",
        "timeout",
        "drop_before_effect",
        "drop_after_effect",
    }
)
DEFAULT_DELAY_S = {"slow": 2.0, "timeout": 30.0}

Clock = Callable[[], float]


@dataclass
class Fault:
    """One queued fault. ``None`` in a match field matches anything."""

    kind: str
    method: str | None = None
    path: str | None = None
    target: str | None = None
    count: int | None = 1
    probability: float = 1.0
    code: int | None = None
    subcode: int | None = None
    http_status: int | None = None
    message: str | None = None
    delay_s: float | None = None
    regain_minutes: int | None = None
    effect_first: bool = True
    id: int = 0
    fired: int = 0

    _FIELDS: ClassVar[tuple[str, ...]] = (
        "kind",
        "method",
        "path",
        "target",
        "count",
        "probability",
        "code",
        "subcode",
        "http_status",
        "message",
        "delay_s",
        "regain_minutes",
        "effect_first",
    )

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {sorted(FAULT_KINDS)}")
        if self.count is not None and self.count < 1:
            raise ValueError("count must be >= 1 or null (until removed)")
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError("probability must be within [0, 1]")
        if self.method is not None:
            self.method = self.method.upper()
        if self.path is not None:
            re.compile(self.path)

    @property
    def delay(self) -> float:
        return self.delay_s if self.delay_s is not None else DEFAULT_DELAY_S.get(self.kind, 0.0)

    def matches(self, method: str, path: str, target: str | None) -> bool:
        return (
            (self.method is None or self.method == method.upper())
            and (self.path is None or re.search(self.path, path) is not None)
            and (self.target is None or self.target == target)
        )

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> Fault:
        if not isinstance(data, dict) or "kind" not in data:
            raise ValueError("a fault is a JSON object with at least 'kind'")
        unknown = set(data) - set(cls._FIELDS) - {"id", "fired"}
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**{k: v for k, v in data.items() if k in cls._FIELDS})


class FaultEngine:
    """The fault queue of one emulator (see the module docstring for the semantics)."""

    def __init__(self, rng: random.Random, clock: Clock) -> None:
        self._rng = rng
        self._clock = clock
        self._queue: list[Fault] = []
        self._next_id = 1
        self.fired: list[dict[str, Any]] = []

    def add(self, kind: str, **fields: Any) -> Fault:
        """Queue a fault: ``faults.add("rate_limit", path="/feed$", count=2, code=32)``."""
        return self.add_fault(Fault(kind, **fields))

    def add_fault(self, fault: Fault) -> Fault:
        fault.id = self._next_id
        self._next_id += 1
        self._queue.append(fault)
        return fault

    def remove(self, fault_id: int) -> bool:
        before = len(self._queue)
        self._queue = [f for f in self._queue if f.id != fault_id]
        return len(self._queue) != before

    def clear(self) -> int:
        n = len(self._queue)
        self._queue.clear()
        return n

    def reset(self) -> None:
        self.clear()
        self.fired.clear()

    def list(self) -> list[Fault]:
        return list(self._queue)

    def take(self, method: str, path: str, target: str | None) -> Fault | None:
        """The fault this request meets, if any; counts it as fired."""
        for fault in self._queue:
            if not fault.matches(method, path, target):
                continue
            if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                continue
            fault.fired += 1
            if fault.count is not None and fault.fired >= fault.count:
                self._queue.remove(fault)
            self.fired.append(
                {
                    "fault_id": fault.id,
                    "kind": fault.kind,
                    "method": method,
                    "path": path,
                    "target": target,
                    "time": self._clock(),
                }
            )
            return fault
        return None
