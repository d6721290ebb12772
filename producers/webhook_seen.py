"""What the webhook receivers already produced, kept on disk so that a restart forgets nothing.

A captured, correctly signed webhook body stays valid for as long as the receiver accepts its
time (Graph: ``graph_max_age_s`` after the entry's ``time``; Zalo: ``replay_window_s`` around its
``timestamp``). The receivers therefore remember every event they produced until that acceptance
ends, and no longer: each id is stored with the moment its event stops being accepted anyway
(``expires_at``), and is dropped after it. Bounded by age and by count: past ``size`` entries
the tenth closest to expiry goes (logged; 100,000 entries over Graph's 48 h is more than 2,000
comments an hour, far above what a province's pages receive).

On disk (``<LANTOA_DATA_DIR>/webhooks/seen.jsonl``): one JSON line ``[expires_at, id]`` appended
and flushed once Kafka acknowledged the event, so a crash of the process loses nothing the kernel
holds; a torn last line (a crash mid-write) is skipped on load. The file is rewritten (temporary
file, fsync, rename) with the live entries only when it has grown to twice their number, so it
stays within a small multiple of ``size`` lines. One process owns a file at a time (an exclusive
``flock`` on ``seen.jsonl.lock``): a second ``lantoa webhooks`` on the same data directory is
refused at start instead of losing the other's entries when it rewrites the file.
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import orjson

log = logging.getLogger(__name__)

COMPACT_MIN_LINES = 1000


class SeenStoreBusy(RuntimeError):
    """Another process holds the store's lock (two receivers on one data directory)."""


class SeenEvents:
    """Ids of the events produced, each until its ``expires_at`` (epoch seconds), at most ``size``.
    ``path`` None keeps them in memory only (tests, or a receiver without a data directory)."""

    def __init__(self, path: Path | None, size: int, clock: Callable[[], float]) -> None:
        self.path, self.size, self.clock = path, size, clock
        self._ids: dict[str, float] = {}
        self._lines = 0
        self._since_purge = 0
        self._fh: IO[bytes] | None = None
        self._lock_fd: int | None = None
        if path is not None:
            self._open(path)

    # -- lookups ------------------------------------------------------------------------------

    def __contains__(self, key: str) -> bool:
        expires = self._ids.get(key)
        if expires is None:
            return False
        if expires < self.clock():
            del self._ids[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, key: str, expires_at: float) -> None:
        """Remember ``key`` until ``expires_at``; on disk before this returns (flushed)."""
        now = self.clock()
        if expires_at < now:
            return
        self._ids[key] = max(expires_at, self._ids.get(key, expires_at))
        self._since_purge += 1
        if self._since_purge >= COMPACT_MIN_LINES or len(self._ids) > self.size:
            self._drop_expired(now)  # memory: the live ids plus at most this many expired ones
            self._evict()
        if self._fh is not None:
            self._fh.write(orjson.dumps([expires_at, key]) + b"\n")
            self._fh.flush()
            self._lines += 1
            if self._lines >= max(COMPACT_MIN_LINES, 2 * len(self._ids)):
                self._compact()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    # -- the file -----------------------------------------------------------------------------

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        lock_fd = os.open(path.with_name(path.name + ".lock"), os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock_fd)
            raise SeenStoreBusy(
                f"another process holds {path} (one lantoa webhooks per LANTOA_DATA_DIR)"
            ) from None
        self._lock_fd = lock_fd
        now = self.clock()
        torn = 0
        try:
            with open(path, "rb") as fh:
                for line in fh:
                    try:
                        expires_at, key = orjson.loads(line)
                        expires = float(expires_at)
                    except (orjson.JSONDecodeError, ValueError, TypeError):
                        torn += 1
                        continue
                    if expires >= now and isinstance(key, str):
                        self._ids[key] = max(expires, self._ids.get(key, expires))
        except FileNotFoundError:
            pass
        if torn:
            log.warning("%s: %d unreadable line(s) skipped (a write cut short by a crash)", path, torn)
        self._evict()
        self._compact()  # start from the live entries only

    def _evict(self) -> None:
        """Over ``size``: drop the tenth of the entries whose acceptance ends first (in one go, so
        a full store costs one sort per ``size // 10`` additions, not a scan per addition)."""
        if len(self._ids) <= self.size:
            return
        keep = self.size - self.size // 10
        order = sorted(self._ids, key=self._ids.__getitem__)
        dropped = order[: len(order) - keep]
        for key in dropped:
            del self._ids[key]
        log.warning(
            "webhook replay store full (%d ids): forgot the %d closest to expiry; a replay of those "
            "within their window would be produced again",
            self.size,
            len(dropped),
        )

    def _drop_expired(self, now: float) -> None:
        self._since_purge = 0
        for key in [k for k, exp in self._ids.items() if exp < now]:
            del self._ids[key]

    def _compact(self) -> None:
        assert self.path is not None
        self._drop_expired(self.clock())
        if self._fh is not None:
            self._fh.close()
        fd, tmp = tempfile.mkstemp(prefix=".seen-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(b"".join(orjson.dumps([exp, key]) + b"\n" for key, exp in self._ids.items()))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._lines = len(self._ids)
        self._fh = open(self.path, "ab")
