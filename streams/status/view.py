"""The status view: the status fold behind a lock, shared by the follower that writes it
(``streams.status.web.StatusFollower``), the JSON and HTML handlers and the metrics scrape
thread that read it."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from schemas import metrics
from schemas.cap_feed import (
    FEED_ID,
    atom_feed,
    checked_entry,
    in_force,
    in_force_only,
    merge_alert,
    merge_cancel,
)
from schemas.emergency import ALERT_URI_PREFIX, EMERGENCY_CHANNEL
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
        # The public CAP feed (issue 16): the alerts in force, from the archive's commands: the
        # newest entry per chain uri, the CAP XML per identifier, the chains cancelled.
        self.feed: dict[str, dict[str, Any]] = {}
        self.feed_xml: dict[str, bytes] = {}
        self.cancelled: dict[str, int] = {}
        self.feed_changed: datetime | None = None

    def note_archive(self, raw: Mapping[str, Any]) -> None:
        """One archive command: an alert's version enters the feed, its Cancel takes it out (an
        exercise never does either). The caller holds the lock. Raises InvalidContent for a
        malformed alert entry (the follower skips and counts it)."""
        uri = raw.get("uri")
        if not isinstance(uri, str) or not uri.startswith(ALERT_URI_PREFIX) or raw.get("test"):
            return
        version = int(raw["version"])
        self.feed_changed = datetime.fromtimestamp(self.clock(), UTC)
        if raw.get("action") == "retract":
            merge_cancel(self.feed, self.cancelled, uri, version)
        else:
            payload = raw.get("payload")
            if not isinstance(payload, Mapping) or "alert" not in payload:
                return
            entry = checked_entry(payload["alert"], uri, version)
            xml = payload.get("cap_xml")
            if merge_alert(self.feed, self.cancelled, entry) and isinstance(xml, str):
                self.feed_xml[entry["identifier"]] = xml.encode("utf-8", "surrogatepass")
        self.feed = in_force_only(self.feed, datetime.fromtimestamp(self.clock(), UTC))
        kept = {e["identifier"] for e in self.feed.values()}
        self.feed_xml = {i: x for i, x in self.feed_xml.items() if i in kept}

    def feed_atom(self) -> bytes:
        """The Atom feed of the alerts in force now; the caller holds the lock. Links are
        relative to /alerts/feed.atom: each alert's CAP XML here, its page where it was published."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        return atom_feed(
            self.feed.values(),
            feed_id=FEED_ID,
            self_href="feed.atom",
            cap_href=lambda e: f"./{quote(e['identifier'], safe='')}/cap.xml",
            page_href=lambda e: e.get("link"),
            now=now,
            updated=self.feed_changed,
        )

    def cap_xml(self, identifier: str) -> bytes | None:
        """The CAP XML of an alert in force, as received; the caller holds the lock."""
        now = datetime.fromtimestamp(self.clock(), UTC)
        if not any(e["identifier"] == identifier and in_force(e, now) for e in self.feed.values()):
            return None
        return self.feed_xml.get(identifier)

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
