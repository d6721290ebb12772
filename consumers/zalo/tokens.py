"""Zalo OA token pair: stored durably and atomically, refreshed by one refresher at a time.

Refresh tokens are single use. So the pair returned by a refresh is written (temp file, fsync,
rename, fsync of the directory) before the new access token is used, under an exclusive lock
shared by every process on the machine (flock) and every task in the process (asyncio.Lock).
A process that waited on the lock re-reads the file and uses what the winner stored instead of
refreshing again.

The one window that no client can close: the platform consumed the old refresh token and the
process died before the reply was written. The previous access token stays valid until it
expires (25 h), the adapter keeps working on it, and the failed refresh raises an alert asking
ops to re-authorise the OA: the channel is not locked out at once.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from schemas.secrets import SecretFileError, check_secret, read_secret_json, write_secret


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_at: float

    def __repr__(self) -> str:  # never print tokens
        return f"TokenPair(expires_at={self.expires_at:.0f})"


class TokenStore:
    """The token file (0600 JSON {access_token, refresh_token, expires_at})."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._lock = asyncio.Lock()
        if path.exists():  # refuse a file open to other users at start (SecretFileError)
            check_secret(path)

    def read(self) -> dict[str, Any]:
        """The file as stored. Raises FileNotFoundError, or SecretFileError (open to others, not JSON)."""
        return read_secret_json(self.path)

    def load(self) -> TokenPair:
        raw = self.read()
        try:
            return TokenPair(
                str(raw["access_token"]), str(raw["refresh_token"]), float(raw.get("expires_at", 0))
            )
        except (KeyError, TypeError, ValueError):
            raise SecretFileError(
                f"token file {self.path} lacks access_token, refresh_token or a numeric expires_at"
            ) from None

    def save(self, pair: TokenPair) -> None:
        write_secret(
            self.path,
            {
                "access_token": pair.access_token,
                "refresh_token": pair.refresh_token,
                "expires_at": pair.expires_at,
                "saved_at": time.time(),
            },
        )
        dfd = os.open(self.path.parent, os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    async def exclusive(self) -> _Held:
        await self._lock.acquire()
        try:
            fd = os.open(self.lock_path, os.O_CREAT | os.O_RDWR, 0o600)
            await asyncio.to_thread(fcntl.flock, fd, fcntl.LOCK_EX)
        except BaseException:
            self._lock.release()
            raise
        return _Held(self._lock, fd)


class _Held:
    def __init__(self, lock: asyncio.Lock, fd: int) -> None:
        self._lock, self._fd = lock, fd

    async def __aenter__(self) -> _Held:
        return self

    async def __aexit__(self, *exc: object) -> None:
        try:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
        finally:
            self._lock.release()


Clock = Callable[[], float]
