"""Secret files: readable and writable by their owner only, or refused with what to run.

Every file that holds a secret (page tokens, the Zalo token pair and app secret, webhook secrets,
the CAP and loudspeaker tokens, S3 credentials, the Kafka SASL password, the TLS client key) is
opened through ``read_secret``: the mode of the file actually opened (``fstat`` on the open file,
so a symlink or a swap between check and read changes nothing) must give group and others no
access at all, as ssh does for its keys. ``0600`` and ``0400`` pass; ``0640`` or ``0644`` raise
``SecretFileError`` naming the path, the mode and the command that fixes it. The secret itself
never reaches a message or a repr.

Lantoa's own writers (the Zalo token store, the local stacks, the tests) use ``write_secret``:
mode 0600 from creation, written whole and renamed into place.

This is the one home every loader can import: the settings (here in ``schemas/``), the adapters,
the CLI and the status views.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import orjson

# Any permission bit for group or others (read, write or execute) refuses the file.
OPEN_TO_OTHERS = stat.S_IRWXG | stat.S_IRWXO
SECRET_MODE = 0o600


class SecretFileError(ValueError):
    """A secret file that cannot be used: unreadable, open to other users, or not what it must hold.
    The message names the path and what to do; never the secret."""


def check_mode(path: Path, mode: int) -> None:
    """Raise SecretFileError if ``mode`` (an ``st_mode``) lets group or others at the file."""
    if mode & OPEN_TO_OTHERS:
        raise SecretFileError(
            f"secret file {path} is readable or writable by other users "
            f"(mode {stat.S_IMODE(mode):04o}); run: chmod 600 {path}"
        )


def check_secret(path: Path) -> None:
    """The mode check alone, for a file another library reads (the TLS client key)."""
    try:
        info = path.stat()
    except OSError as exc:
        raise SecretFileError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    check_mode(path, info.st_mode)


def read_secret(path: Path) -> bytes:
    """The bytes of a secret file that only its owner can read or write.

    Raises FileNotFoundError when it does not exist (callers that treat a missing file as "not
    configured" catch that), SecretFileError when it is open to others or cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SecretFileError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    try:
        check_mode(path, os.fstat(fd).st_mode)
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:  # a directory, an I/O error
        raise SecretFileError(f"cannot read the secret file {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)


def read_secret_text(path: Path) -> str:
    """A secret file holding one value (a password, a token): its text without the line ending."""
    try:
        return read_secret(path).decode("utf-8").strip("\r\n")
    except UnicodeDecodeError:
        raise SecretFileError(f"secret file {path} is not UTF-8 text") from None


def read_secret_json(path: Path) -> dict[str, Any]:
    """A secret file holding a JSON object. The parser's message could quote the secret, so a
    file that does not parse is refused with its path only."""
    raw = read_secret(path)
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise SecretFileError(f"secret file {path} is not a JSON object") from None
    if not isinstance(value, dict):
        raise SecretFileError(f"secret file {path} is not a JSON object")
    return value


def write_secret(path: Path, data: bytes | dict[str, Any]) -> Path:
    """Write a secret file whole, mode 0600 from creation: a temporary file in the same directory
    (mkstemp creates it 0600), fsynced, then renamed over ``path``. A dict is written as JSON."""
    raw = orjson.dumps(data) if isinstance(data, dict) else data
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        try:
            os.fchmod(fd, SECRET_MODE)
            os.write(fd, raw)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class SecretFile:
    """A JSON secrets file ``{name: value}``, re-read when it changes; values never reach logs or
    reprs. A file that exists is checked at once (a process refuses to start on a file open to
    others) and again whenever it changes (a ``chmod`` counts: the check key includes the mode).
    A missing file, or no path, gives ``None`` for every name."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen: tuple[int, int, int, int] | None = None
        self._data: dict[str, str] = {}
        if path is not None and path.exists():
            self.get("")

    def get(self, key: str) -> str | None:
        """The value of ``key``, or None. Raises SecretFileError for a file open to others."""
        if self.path is None:
            return None
        try:
            info = self.path.stat()
        except FileNotFoundError:
            return None
        seen = (info.st_mtime_ns, info.st_ino, info.st_size, info.st_mode)
        if seen != self._seen:
            try:
                data = read_secret_json(self.path)
            except FileNotFoundError:
                return None
            self._data = {str(k): str(v) for k, v in data.items()}
            self._seen = seen
        return self._data.get(key)

    def keys(self) -> list[str]:
        """The names in the file (page ids, ``<page id>:expires_at``), re-read when it changed."""
        self.get("")
        return sorted(self._data)

    def __repr__(self) -> str:
        return f"SecretFile({self.path})"
