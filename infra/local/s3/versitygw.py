"""A real S3-compatible server for tests and the demo: versitygw (Apache-2.0, Go), on loopback.

versitygw checks SigV4 signatures, keeps object versions (``--versioning-dir``), supports object
lock / legal hold, conditional writes (``If-None-Match: *``, ``If-Match``) and stored
``x-amz-checksum-sha256``, and keeps objects as plain files under its data dir.

It is built once from the Go module proxy with ``go install`` and cached::

    build_versitygw()              # ~3 min cold, instant when the binary is cached

    with S3Server() as s3:         # temp dirs, free loopback port, fresh root credentials
        boto3.client("s3", endpoint_url=s3.endpoint_url, aws_access_key_id=s3.access_key,
                     aws_secret_access_key=s3.secret_key, region_name=s3.region)
        s3.pause(); ...; s3.resume()   # "unavailable": SIGSTOP/SIGCONT, or stop/start (mode="stop")

The root credentials reach the server through its environment (never its command line, which
``ps`` shows to every user) and are never logged.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import shutil
import signal
import string
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Literal

from infra.local.processes import (
    ServerProcess,
    cache_root,
    file_lock,
    free_loopback_ports,
    signal_group,
    stop_process_group,
)

__all__ = [
    "DEFAULT_VERSION",
    "MODULE",
    "S3Server",
    "VersitygwError",
    "binary_path",
    "build_versitygw",
    "stop_pid",
    "supports_user_xattrs",
]

log = logging.getLogger(__name__)

DEFAULT_VERSION = "v1.7.0"
MODULE = "github.com/versity/versitygw/cmd/versitygw"
BINARY_NAME = "versitygw"
MARKER_NAME = ".lantoa-build.json"
LOG_FILE_NAME = "versitygw.log"
BUILD_TIMEOUT_S = 1800.0

PauseMode = Literal["signal", "stop"]


class VersitygwError(RuntimeError):
    """The build or the server failed; the message carries the relevant output."""


# --------------------------------------------------------------------------------------------
# Build and cache
# --------------------------------------------------------------------------------------------


def binary_path(cache_dir: Path | None = None, version: str = DEFAULT_VERSION) -> Path:
    """Where :func:`build_versitygw` puts the binary of ``version``."""
    base = cache_dir if cache_dir is not None else cache_root()
    return base.absolute() / f"versitygw-{version}" / "bin" / BINARY_NAME


def _is_executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _go_executable() -> str:
    goroot = os.environ.get("GOROOT")
    if goroot:
        candidate = Path(goroot) / "bin" / "go"
        if _is_executable(candidate):
            return str(candidate)
    found = shutil.which("go")
    if found is None:
        raise VersitygwError("'go' not found on PATH: Go 1.25+ is needed to build versitygw")
    return found


def _explain_go_failure(output: str) -> str:
    # `go install` of a module whose go.mod asks for a newer Go says e.g.
    # "go: github.com/...: requires go >= 1.27 (running go 1.26.8; GOTOOLCHAIN=local)".
    lowered = output.lower()
    if "requires go >=" in lowered or "go.mod requires go" in lowered or "toolchain" in lowered:
        return (
            "the versitygw module needs a newer Go than the one installed; set "
            "GOTOOLCHAIN to the Go version it names (the go command then fetches that "
            "toolchain from the module proxy) or pick an older versitygw version"
        )
    if (
        "not available" in lowered
        or "unknown revision" in lowered
        or "invalid version" in lowered
        or "not found" in lowered
    ):
        return "the Go module proxy does not serve that module version"
    if "dial tcp" in lowered or "no such host" in lowered or "i/o timeout" in lowered:
        return "the Go module proxy could not be reached"
    return "see the go output below"


def build_versitygw(cache_dir: Path | None = None, version: str = DEFAULT_VERSION) -> Path:
    """Build ``versitygw@version`` with ``go install`` into the cache once; return the binary.

    The binary lands in ``<cache>/versitygw-<version>/bin/versitygw`` where ``<cache>`` is
    ``cache_dir`` or :func:`cache_root`. Nothing is built when it already exists. Concurrent
    callers are serialised with a file lock, and ``go install`` writes into a scratch ``GOBIN``
    first, so an interrupted build never leaves a half-written binary behind. Takes minutes
    the first time (module downloads and compilation of ~70 MB of Go). Raises
    :class:`VersitygwError` with go's output (and the likely reason) when the build fails.
    """
    target = binary_path(cache_dir, version)
    if _is_executable(target):
        return target
    base = target.parent.parent
    with file_lock(base / ".build.lock"):
        if _is_executable(target):
            return target
        go = _go_executable()
        scratch = Path(tempfile.mkdtemp(prefix=".gobin-", dir=base))
        try:
            env = dict(os.environ)
            env["GOBIN"] = str(scratch)
            cmd = [go, "install", f"{MODULE}@{version}"]
            log.info(
                "building versitygw %s with %s (this takes minutes the first time)", version, " ".join(cmd)
            )
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    cmd,
                    env=env,
                    cwd=base,
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    text=True,
                    check=False,
                    timeout=BUILD_TIMEOUT_S,
                )
            except subprocess.TimeoutExpired as exc:
                raise VersitygwError(
                    f"go install {MODULE}@{version} did not finish in {BUILD_TIMEOUT_S:.0f} s"
                ) from exc
            seconds = time.monotonic() - started
            output = (proc.stdout + proc.stderr).strip()
            built = scratch / BINARY_NAME
            if proc.returncode != 0 or not _is_executable(built):
                tail = "\n".join(output.splitlines()[-40:])
                raise VersitygwError(
                    f"go install {MODULE}@{version} failed (exit {proc.returncode}): "
                    f"{_explain_go_failure(output)}\n{tail}"
                )
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(built, target)
            go_version = subprocess.run(
                [go, "version"], capture_output=True, text=True, check=False
            ).stdout.strip()
            marker = {
                "module": MODULE,
                "version": version,
                "go": go_version,
                "build_seconds": round(seconds, 1),
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (base / MARKER_NAME).write_text(json.dumps(marker, indent=1) + "\n", encoding="utf-8")
            log.info("built versitygw %s in %.0f s", version, seconds)
            return target
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Processes and ports
# --------------------------------------------------------------------------------------------


def stop_pid(pid: int, timeout: float = 10.0) -> None:
    """SIGCONT + SIGTERM ``pid``'s process group, then SIGKILL after ``timeout`` seconds.

    For servers that are not children of this process (``python -m infra.local.s3 stop``).
    """
    # SIGCONT first: a paused server cannot act on SIGTERM.
    stop_process_group(pid, timeout, resume_first=True, poll_s=0.05, kill_wait_s=5.0)


def supports_user_xattrs(directory: Path) -> bool:
    """Whether files in ``directory`` take ``user.*`` extended attributes (versitygw keeps
    object metadata there; without them it needs ``--sidecar``)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".xattr-probe-", dir=directory)
    try:
        os.setxattr(fd, "user.lantoa.probe", b"1")
        return os.getxattr(fd, "user.lantoa.probe") == b"1"
    except OSError:
        return False
    finally:
        os.close(fd)
        os.unlink(name)


_KEY_ALPHABET = string.ascii_uppercase + string.digits
_SECRET_ALPHABET = string.ascii_letters + string.digits + "+/"


def _new_access_key() -> str:
    return "LT" + "".join(secrets.choice(_KEY_ALPHABET) for _ in range(18))


def _new_secret_key() -> str:
    return "".join(secrets.choice(_SECRET_ALPHABET) for _ in range(40))


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return f"(no log at {path})"


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class S3Server(ServerProcess):
    """versitygw's posix backend on ``127.0.0.1:<port>``, as a subprocess.

    ``root`` (default: a new temp dir, removed by :meth:`close` unless ``keep_data``) holds
    ``data/`` (buckets as directories), ``iam/``, ``versions/`` (old object versions),
    ``sidecar/`` (object metadata, only when the file system lacks user xattrs) and
    ``versitygw.log``. Root credentials are generated per instance unless given. The port is
    picked on the first :meth:`start` and kept, so a stop/start keeps the endpoint.

    ``die_with_parent`` (default): the server gets SIGKILL when this Python process dies, so an
    interrupted test run leaves no orphan server. Pass False for :meth:`detach`.
    """

    error = VersitygwError
    noun = "server"

    def __init__(
        self,
        root: Path | str | None = None,
        *,
        version: str = DEFAULT_VERSION,
        binary: Path | None = None,
        cache_dir: Path | None = None,
        port: int | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        sidecar: bool | None = None,
        start_timeout: float = 30.0,
        keep_data: bool = False,
        die_with_parent: bool = True,
    ) -> None:
        self._owns_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="lantoa-s3-")) if root is None else Path(root).absolute()
        self.version = version
        self._binary = binary
        self._cache_dir = cache_dir
        self._port = port
        self.region = region
        self.access_key = access_key or _new_access_key()
        self._secret_key = secret_key or _new_secret_key()
        self._sidecar = sidecar
        self.start_timeout = start_timeout
        self.keep_data = keep_data
        self.die_with_parent = die_with_parent
        self._proc = None
        self._paused: PauseMode | None = None

    # -- addresses and paths ----------------------------------------------------------------

    @property
    def secret_key(self) -> str:
        return self._secret_key

    @property
    def port(self) -> int:
        if self._port is None:
            raise VersitygwError("server not started yet: no port assigned")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def iam_dir(self) -> Path:
        return self.root / "iam"

    @property
    def versioning_dir(self) -> Path:
        return self.root / "versions"

    @property
    def sidecar_dir(self) -> Path:
        return self.root / "sidecar"

    @property
    def log_file(self) -> Path:
        return self.root / LOG_FILE_NAME

    @property
    def paused(self) -> bool:
        return self._paused is not None

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_file, lines)

    def uses_sidecar(self) -> bool:
        if self._sidecar is None:
            self._sidecar = not supports_user_xattrs(self.data_dir)
        return self._sidecar

    # -- lifecycle ---------------------------------------------------------------------------

    def command(self) -> list[str]:
        """The versitygw command line (no credentials: those go through the environment)."""
        binary = self._binary or build_versitygw(self._cache_dir, self.version)
        # --keep-alive: without it versitygw answers every request with "Connection: close", so
        # each boto3 call opens a new TCP connection (~12% of an archive publish). v1.7.0 has it.
        cmd = [
            str(binary),
            "--port",
            f"127.0.0.1:{self.port}",
            "--region",
            self.region,
            "--iam-dir",
            str(self.iam_dir),
            "--quiet",
            "--keep-alive",
            "posix",
            "--versioning-dir",
            str(self.versioning_dir),
        ]
        if self.uses_sidecar():
            cmd += ["--sidecar", str(self.sidecar_dir)]
        cmd.append(str(self.data_dir))
        return cmd

    def _environment(self) -> dict[str, str]:
        # Inherited VGW_* / ROOT_* variables would silently reconfigure the server.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("VGW_", "ROOT_"))}
        env["ROOT_ACCESS_KEY_ID"] = self.access_key
        env["ROOT_SECRET_ACCESS_KEY"] = self._secret_key
        return env

    def start(self) -> S3Server:
        """Launch versitygw and wait until it answers a signed request. Idempotent."""
        if self.is_running():
            return self
        for d in (self.root, self.data_dir, self.iam_dir, self.versioning_dir):
            d.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        fixed = self._port is not None
        for attempt in range(1 if fixed else 3):
            if self._port is None:
                self._port = free_loopback_ports(1)[0]
            try:
                self._launch()
                return self
            except VersitygwError:
                if not fixed and attempt < 2 and "address already in use" in self.log_tail().lower():
                    self._port = None
                    continue
                raise
        raise AssertionError("unreachable")

    def _launch(self) -> None:
        if self.uses_sidecar():
            self.sidecar_dir.mkdir(parents=True, exist_ok=True)
        # KILL rather than TERM: a SIGSTOPped server would never act on a TERM.
        self._spawn(
            self.command(),
            cwd=self.root,
            log_file=self.log_file,
            die_with_parent=self.die_with_parent,
            pdeathsig="KILL",
            env=self._environment(),
        )
        self._paused = None
        try:
            self._wait_ready()
        except BaseException:
            self.kill()
            raise

    def _answers_http(self) -> bool:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            return True  # any answer (an unsigned request gets 403) means it is serving
        except OSError:
            return False
        finally:
            conn.close()

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self.start_timeout
        while True:
            if self._proc.poll() is not None:
                raise VersitygwError(
                    f"versitygw exited with code {self._proc.returncode} during "
                    f"startup; last lines of {self.log_file}:\n{self.log_tail()}"
                )
            if self._answers_http():
                break
            if time.monotonic() > deadline:
                raise VersitygwError(
                    f"versitygw not answering on {self.endpoint_url} after "
                    f"{self.start_timeout:.0f} s:\n{self.log_tail()}"
                )
            time.sleep(0.05)
        self._check_signed_request()

    def _check_signed_request(self) -> None:
        import boto3  # lazily: importing boto3 costs ~0.3 s
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, ClientError

        client = boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self._secret_key,
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1},
                connect_timeout=2,
                read_timeout=5,
            ),
        )
        try:
            client.list_buckets()
        except (BotoCoreError, ClientError) as exc:
            raise VersitygwError(f"versitygw refused its own root credentials: {exc}") from exc
        finally:
            client.close()

    def pause(self, mode: PauseMode = "signal") -> None:
        """Make the store unavailable, keeping its port and data.

        ``"signal"``: SIGSTOP, connections are accepted by the kernel and then hang (clients
        time out), like an overloaded or partitioned server. ``"stop"``: the process exits,
        connections are refused, like a restart or a crash.
        """
        if self._paused is not None:
            return
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise VersitygwError("no running server to pause")
        if mode == "signal":
            signal_group(proc.pid, signal.SIGSTOP)
        else:
            self.stop()
        self._paused = mode

    def resume(self) -> None:
        """Undo :meth:`pause` and wait until the server answers again."""
        mode, self._paused = self._paused, None
        if mode == "signal" and self._proc is not None:
            signal_group(self._proc.pid, signal.SIGCONT)
            self._wait_ready()
        elif mode == "stop":
            self.start()

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (after SIGCONT if paused), wait up to ``timeout`` s, then SIGKILL. Idempotent."""
        self._terminate(timeout, resume_first=True)
        self._paused = None

    def kill(self) -> None:
        """SIGKILL the server (a crash, for fault drills). Idempotent."""
        super().kill()
        self._paused = None

    def detach(self) -> int:
        """Forget the running process (it keeps running) and keep the data; return its pid."""
        pid = self._detach_pid(
            "this server dies with its parent (die_with_parent=True); "
            "create it with die_with_parent=False to detach it"
            if self.die_with_parent
            else None
        )
        self.keep_data = True
        return pid

    def close(self) -> None:
        """Stop the server and remove the root dir if this object created it."""
        self.stop()
        if self._owns_root and not self.keep_data:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> S3Server:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        where = self.endpoint_url if self._port else "unstarted"
        return f"S3Server({where}, pid={self.pid}, root={str(self.root)!r})"
