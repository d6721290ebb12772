"""The status view: the status fold behind a lock, shared by the follower that writes it
(``streams.status.web.StatusFollower``), the JSON and HTML handlers and the metrics scrape
thread that read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from schemas import metrics
from schemas.emergency import EMERGENCY_CHANNEL
from schemas.pending import PendingAlert
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
        # The two-person rule's alerts (alerts.pending, latest per CAP identifier, without the XML).
        self.approvals: dict[str, PendingAlert] = {}

    def note_approval(self, identifier: str, raw: dict[str, Any] | None) -> None:
        """One alerts.pending record (None: a tombstone); the caller holds the lock."""
        if raw is None:
            self.approvals.pop(identifier, None)
            return
        entry = PendingAlert.from_dict(raw)  # checked against its contract
        self.approvals[entry.identifier] = replace(entry, raw=b"")

    def approval_list(self) -> list[dict[str, Any]]:
        """Every known alert of the rule, oldest submission first, its state as of now: pending,
        approved, or expired (a pending one past its wait). The caller holds the lock."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        return [e.summary(now) for e in sorted(self.approvals.values(), key=lambda e: e.submitted_at)]

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
