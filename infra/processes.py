"""Helpers shared by the local servers this project runs (the Kafka broker, the S3 server):
liveness of a pid, signals to a process group, stopping with a timeout, free loopback ports,
exclusive file locks for one-time downloads and builds, and the JSON state files that
``python -m infra.kafka`` / ``python -m infra.s3`` keep for a detached server."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "file_lock", "free_loopback_ports", "live_process_args", "pid_alive", "read_state_file", "signal_group",
    "stop_process_group", "write_state_file",
]


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing) for the ``with`` block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # Field 3, after the parenthesised command name, is the state.
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def signal_group(pid: int, sig: signal.Signals) -> None:
    """Signal the process group led by ``pid`` (the servers run in their own session), or
    ``pid`` alone when it leads none; a process already gone is not an error."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except ProcessLookupError:
        pass


def stop_process_group(pid: int, timeout: float, *, resume_first: bool = False, poll_s: float = 0.05,
                       kill_wait_s: float = 5.0, logger: logging.Logger | None = None,
                       what: str = "process") -> None:
    """SIGTERM ``pid``'s process group (SIGCONT first with ``resume_first``: a stopped process
    cannot act on SIGTERM), wait up to ``timeout`` s, then SIGKILL and wait up to ``kill_wait_s``.
    With ``logger``, the SIGKILL is logged as a warning about ``what``."""
    if not pid_alive(pid):
        return
    if resume_first:
        signal_group(pid, signal.SIGCONT)
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return
        time.sleep(poll_s)
    if logger is not None:
        logger.warning("%s pid %d did not stop within %.0f s; SIGKILL", what, pid, timeout)
    signal_group(pid, signal.SIGKILL)
    deadline = time.monotonic() + kill_wait_s
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def free_loopback_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports free on 127.0.0.1 right now (all bound at once, then released)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def live_process_args(pid: Any) -> list[str] | None:
    """The command line of ``pid`` when it is an int naming a live process, else None."""
    if not isinstance(pid, int) or not pid_alive(pid):
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    return [a.decode(errors="replace") for a in cmdline]


def read_state_file(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_state_file(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as JSON to ``path`` atomically (a temporary file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, path)
