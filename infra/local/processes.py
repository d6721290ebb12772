"""Helpers shared by the local servers this project runs (the Kafka broker, the S3 server):
liveness of a pid, signals to a process group, stopping with a timeout, free loopback ports,
exclusive file locks for one-time downloads and builds, the download/build cache, the life cycle
of a server child process (``ServerProcess``), and the JSON state files that
``python -m infra.local.kafka`` / ``python -m infra.local.s3`` keep for a detached server
(``DetachedServer``)."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar

__all__ = [
    "DetachedServer",
    "ServerProcess",
    "cache_root",
    "file_lock",
    "free_loopback_ports",
    "live_process_args",
    "pid_alive",
    "read_state_file",
    "run_command",
    "signal_group",
    "stop_process_group",
    "write_state_file",
]


def cache_root() -> Path:
    """``$LANTOA_CACHE_DIR`` or ``~/.cache/lantoa``."""
    env = os.environ.get("LANTOA_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lantoa"


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


def stop_process_group(
    pid: int,
    timeout: float,
    *,
    resume_first: bool = False,
    poll_s: float = 0.05,
    kill_wait_s: float = 5.0,
    logger: logging.Logger | None = None,
    what: str = "process",
) -> None:
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


class ServerProcess:
    """A local server run as a child process in its own session (so its whole process group can be
    signalled), writing to a log file: the life cycle ``KafkaBroker`` and ``S3Server`` share.

    A subclass sets ``error`` (what ``detach`` raises) and ``noun`` (its messages), sets ``_proc``
    to None in ``__init__``, launches with ``_spawn``, stops with ``_terminate`` and implements
    ``close``; starting and waiting until ready stay its own (each server has its own probe).
    """

    error: ClassVar[type[Exception]] = RuntimeError
    noun: ClassVar[str] = "server"
    _proc: subprocess.Popen[bytes] | None = None
    _pdeathsig: bool = False

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _spawn(
        self,
        cmd: list[str],
        *,
        cwd: Path,
        log_file: Path,
        die_with_parent: bool,
        pdeathsig: str,
        env: dict[str, str] | None = None,
    ) -> int:
        """Start ``cmd`` in a new session, its stdout and stderr appended to ``log_file`` after a
        ``# <time> starting: <cmd>`` line; return the log's size before that line.

        With ``die_with_parent``, util-linux ``setpriv`` on PATH and a call from the main thread,
        the server gets ``pdeathsig`` when this Python process dies (``_pdeathsig`` says so).
        """
        setpriv = shutil.which("setpriv")
        # PR_SET_PDEATHSIG fires when the forking *thread* exits, so only from the main thread.
        # setpriv execs the server: the pid stays the server's.
        self._pdeathsig = bool(
            die_with_parent and setpriv and threading.current_thread() is threading.main_thread()
        )
        if self._pdeathsig and setpriv:
            cmd = [setpriv, "--pdeathsig", pdeathsig, *cmd]
        with open(log_file, "ab") as logfh:
            offset = logfh.tell()
            logfh.write(f"# {time.strftime('%Y-%m-%dT%H:%M:%S')} starting: {' '.join(cmd)}\n".encode())
            logfh.flush()
            self._proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logfh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return offset

    def _terminate(
        self,
        timeout: float,
        *,
        resume_first: bool = False,
        logger: logging.Logger | None = None,
        what: str = "server",
    ) -> None:
        """SIGTERM the server's process group (SIGCONT first with ``resume_first``: a stopped
        process cannot act on SIGTERM), wait up to ``timeout`` s, then SIGKILL (a warning about
        ``what`` on ``logger``, if given). Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if resume_first:
                signal_group(proc.pid, signal.SIGCONT)
            signal_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                if logger is not None:
                    logger.warning("%s pid %d ignored SIGTERM for %.0f s; SIGKILL", what, proc.pid, timeout)
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
        self._proc = None

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault drills). Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        self._proc = None

    def _detach_pid(self, refusal: str | None) -> int:
        """Forget the running server (it keeps running) and return its pid; ``error`` when none
        runs, or with ``refusal`` (why this one cannot be detached) when that is given."""
        if self._proc is None or self._proc.poll() is not None:
            raise self.error(f"no running {self.noun} to detach")
        if refusal is not None:
            raise self.error(refusal)
        pid = self._proc.pid
        self._proc = None
        return pid

    def close(self) -> None:
        """Stop the server and remove what this object created."""
        raise NotImplementedError

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


@dataclass(frozen=True)
class DetachedServer:
    """The ``start``/``status``/``stop`` side of ``python -m infra.local.kafka`` and ``python -m infra.local.s3``:
    a state file names a detached server (``pid``, its address under ``address_key``, its
    directory under ``dir_key``), which still runs while its pid is alive and ``owns`` its
    command line. ``label`` and ``stop_label`` name it in messages; ``--remove-data-dir`` removes
    its directory only when it holds ``dir_marker``."""

    label: str
    stop_label: str
    address_key: str
    dir_key: str
    dir_marker: str
    owns: Callable[[list[str], dict[str, Any]], bool]
    stop_pid: Callable[[int, float], None]

    def running(self, state: dict[str, Any]) -> bool:
        """The state file's pid is alive and still runs this server."""
        args = live_process_args(state.get("pid"))
        return args is not None and self.owns(args, state)

    def report_running(self, state_file: Path) -> bool:
        """If the server of ``state_file`` runs, say so and print its address (``start`` is then
        done); else False."""
        state = read_state_file(state_file)
        if state is None or not self.running(state):
            return False
        print(f"{self.label} already running (pid {state['pid']})", file=sys.stderr)
        print(state[self.address_key])
        return True

    def cmd_status(self, ns: argparse.Namespace) -> int:
        state = read_state_file(ns.state_file)
        if state is None or not self.running(state):
            print("not running", file=sys.stderr)
            return 1
        print(state[self.address_key])
        return 0

    def cmd_stop(self, ns: argparse.Namespace) -> int:
        state_file: Path = ns.state_file
        state = read_state_file(state_file)
        if state is None:
            print(f"no state file at {state_file}; nothing to stop", file=sys.stderr)
            return 0
        if self.running(state):
            self.stop_pid(int(state["pid"]), ns.timeout)
        else:
            print(f"{self.stop_label} of {state_file} is not running", file=sys.stderr)
        state_file.unlink(missing_ok=True)
        directory = Path(str(state.get(self.dir_key, "")))
        if ns.remove_data_dir and directory.is_dir() and (directory / self.dir_marker).is_file():
            shutil.rmtree(directory, ignore_errors=True)
        return 0


def run_command(ns: argparse.Namespace, error: type[Exception], log_level: int) -> int:
    """Run the subcommand ``ns.func`` with logging at ``log_level``; ``error`` becomes
    ``error: <message>`` on stderr and exit status 1."""
    logging.basicConfig(level=log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        rc: int = ns.func(ns)
    except error as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return rc
