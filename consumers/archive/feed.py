"""The public CAP feed in the archive bucket: ``<prefix>alerts/feed.atom`` over ``alerts/active.json``.

``active.json`` holds the alerts in force (by chain uri, the newest version of each) and the chains
cancelled (so that a late or replayed older version never comes back). Every change is a
conditional write of it (If-None-Match / If-Match, read again on a race), then ``feed.atom`` is
rendered from what was written (schemas/cap_feed.py). Links are relative to the feed, so the
bucket can be served under any name: ``../articles/<h>/v<N>/cap.xml`` and ``…/index.html``.

Expiry: ``refresh`` drops the expired entries and writes both objects again when their bytes
change; the adapter calls it on a timer (``ArchiveAdapter.feed_refresh_s``), which also repairs a
feed written from an older state by a concurrent writer (the feed itself is unconditional).
Called from worker threads (the adapter's ``asyncio.to_thread``); pure S3 calls, no state here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any, Final

import orjson

from consumers.archive.store import Race, S3ObjectStore, blob
from consumers.delivery.errors import TransientDeliveryError
from schemas.cap_feed import (
    ATOM_TYPE,
    FEED_ID,
    atom_feed,
    checked_entry,
    in_force_only,
    merge_alert,
    merge_cancel,
    next_expiry,
)

log = logging.getLogger(__name__)

_TRIES: Final = 5


class AlertFeed:
    def __init__(self, store: S3ObjectStore, prefix: str, clock: Callable[[], datetime]) -> None:
        self.store, self.clock = store, clock
        self.active_key = f"{prefix}alerts/active.json"
        self.feed_key = f"{prefix}alerts/feed.atom"

    # -- changes -------------------------------------------------------------------------------

    def add(self, entry: dict[str, Any], uri: str, version: int, relative_dir: str, has_cap: bool) -> None:
        """The alert ``version`` of chain ``uri`` archived under ``<prefix><relative_dir>`` is in force
        (unless its chain is cancelled or a newer version is listed)."""
        checked = checked_entry(entry, uri, version)
        checked["page_href"] = f"../{relative_dir}index.html"
        checked["cap_href"] = f"../{relative_dir}cap.xml" if has_cap else checked["page_href"]
        self._change(lambda state: merge_alert(state["entries"], state["cancelled"], checked))

    def remove(self, uri: str, version: int) -> None:
        """The chain ``uri`` is cancelled at ``version``: out of the feed, and kept out."""
        self._change(lambda state: merge_cancel(state["entries"], state["cancelled"], uri, version))

    def refresh(self) -> datetime | None:
        """Drop expired entries, write the feed again if it changed; the next expiry, if any."""
        state = self._change(lambda state: None, create=False)
        return next_expiry(state["entries"].values(), self.clock())

    # -- helpers -------------------------------------------------------------------------------

    def _read(self) -> tuple[dict[str, Any], bytes, str | None]:
        got = self.store.get(self.active_key)
        if got is None:
            return {"schema_version": 1, "entries": {}, "cancelled": {}, "updated": None}, b"", None
        raw, etag = got
        try:
            state = orjson.loads(raw)
            if not isinstance(state.get("entries"), dict) or not isinstance(state.get("cancelled"), dict):
                raise ValueError("entries/cancelled")
        except (orjson.JSONDecodeError, ValueError, AttributeError) as exc:
            log.error("archive: %s unreadable (%s); starting it again", self.active_key, exc)
            return {"schema_version": 1, "entries": {}, "cancelled": {}, "updated": None}, raw, etag
        return state, raw, etag

    def _change(self, change: Callable[[dict[str, Any]], object], create: bool = True) -> dict[str, Any]:
        for _ in range(_TRIES):
            state, raw, etag = self._read()
            if etag is None and not create:
                return state  # no alert was ever archived here: no feed to keep
            now = self.clock()
            before = orjson.dumps({**state, "updated": None}, option=orjson.OPT_SORT_KEYS)
            change(state)
            state["entries"] = in_force_only(state["entries"], now)
            if orjson.dumps({**state, "updated": None}, option=orjson.OPT_SORT_KEYS) != before or not raw:
                state["updated"] = now.isoformat()
                try:
                    self.store.put(
                        self.active_key,
                        blob(
                            "active.json",
                            orjson.dumps(state, option=orjson.OPT_SORT_KEYS),
                            "application/json; charset=utf-8",
                        ),
                        create=etag is None,
                        if_match=etag,
                    )
                except Race:
                    continue
            self._write_feed(state, now)
            return state
        raise TransientDeliveryError(f"{self.active_key} kept changing under concurrent writers", 1.0)

    def _write_feed(self, state: dict[str, Any], now: datetime) -> None:
        updated = state.get("updated")
        body = atom_feed(
            state["entries"].values(),
            feed_id=FEED_ID,
            self_href="feed.atom",
            cap_href=lambda e: str(e.get("cap_href") or ""),
            page_href=lambda e: str(e.get("page_href") or "") or None,
            now=now,
            updated=datetime.fromisoformat(updated) if isinstance(updated, str) else None,
        )
        current = self.store.get(self.feed_key)
        if current is not None and current[0] == body:
            return
        self.store.put(self.feed_key, blob("feed.atom", body, ATOM_TYPE))
