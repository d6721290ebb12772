"""The status view: the status fold behind a lock, shared by the follower that writes it
(``streams.status.web.StatusFollower``), the JSON and HTML handlers and the metrics scrape
thread that read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from schemas import metrics
from schemas.emergency import EMERGENCY_CHANNEL
from schemas.topics import Channel
from streams.status.model import StatusFold

EMERGENCY_HORIZON_S = 6 * 3600.0
WATCHED_CHANNELS = tuple(c.value for c in Channel) + (EMERGENCY_CHANNEL,)


class StatusView:
    """The fold behind a lock: the follower writes, HTTP handlers and the scrape thread read."""

    def __init__(self, max_targets: int | None = None, clock: Callable[[], float] = time.time) -> None:
        self.fold = StatusFold(max_targets) if max_targets else StatusFold()
        self.lock = threading.Lock()
        self.clock = clock
        self.caught_up = False
        self.skipped = 0

    def meta(self) -> dict[str, Any]:
        now = datetime.fromtimestamp(self.clock(), UTC)
        return {
            "caught_up": self.caught_up,
            "as_of": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    def emergency_samples(self, which: int) -> list[metrics.Sample]:
        with self.lock:
            found = self.fold.emergencies(self.clock(), EMERGENCY_HORIZON_S)
        return [((ch,), float(found.get(ch, (0, 0.0))[which])) for ch in WATCHED_CHANNELS]
