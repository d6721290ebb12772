"""`make up` / `make down`: the local stack left running for a person to use.

``python -m infra.local.up start`` starts a supervisor in its own session and returns once everything is
up: a real Kafka broker (Maven jars), the S3 server (versitygw), the Graph, Zalo and loudspeaker
emulators, the stream worker, the five channel adapters, engagement triage, the webhook receiver
(each with a metrics port) and the CAP endpoint. It prints the URLs and writes
``<dir>/lantoa.env``, which another shell can source to use the ``lantoa`` CLI against this stack. ``python -m infra.local.up stop`` stops the supervisor, which stops
everything it started (the broker and S3 server last). ``status`` says whether it runs.

The supervisor restarts a Lantoa process that dies, as a service manager would, and logs each
process to ``<dir>/<name>.log``. The topics are created and the targets registry loaded once at
start. No business logic: only starting, wiring and stopping.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from infra.kafka.topics import apply_topics
from infra.local.kafka.broker import KafkaBroker
from infra.local.processes import free_loopback_ports, pid_alive, signal_group
from infra.local.s3.__main__ import write_credentials_file
from infra.local.s3.versitygw import S3Server, build_versitygw
from infra.local.stack import Emulators, Proc, stack_env
from producers.targets import load_targets
from schemas.access import Role, add_identity
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.secrets import write_secret
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DIR = ROOT / "var" / "up"
START_TIMEOUT_S = 240.0  # a first start fetches nothing (make install did), but a cold JVM is slow
STOP_TIMEOUT_S = 90.0
LISTEN_TIMEOUT_S = 120.0  # every port answering before `start` prints the URLs
# name, lantoa arguments: each serves /metrics on a port of its own; the worker also serves the
# status pages. The CAP endpoint and the webhook receiver get their listening ports at start.
PROCESSES = (
    ("worker", ["worker"]),
    ("fanpage", ["adapter", "fanpage"]),
    ("zalo", ["adapter", "zalo"]),
    ("archive", ["adapter", "archive"]),
    ("loudspeaker", ["adapter", "loudspeaker"]),
    ("emergency", ["adapter", "emergency"]),
    ("triage", ["triage"]),
    ("webhooks", ["webhooks"]),
)


def _pid_file(workdir: Path) -> Path:
    return workdir / "up.pid"


def _env_file(workdir: Path) -> Path:
    return workdir / "lantoa.env"


def _urls_file(workdir: Path) -> Path:
    return workdir / "urls.txt"


def _running_pid(workdir: Path) -> int | None:
    try:
        pid = int(_pid_file(workdir).read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if pid_alive(pid) else None


def run(workdir: Path) -> int:
    """The supervisor: start everything, write the env and URL files, wait for SIGTERM."""
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())
    procs: list[Proc] = []
    emus = None
    build_versitygw()
    with KafkaBroker(workdir / "kafka") as broker, S3Server(workdir / "s3") as s3:
        try:
            creds = workdir / "s3-credentials"
            write_credentials_file(creds, s3.access_key, s3.secret_key)
            emus = Emulators(workdir / "emulators", DEFAULT_TARGETS_FILE)
            web_port, cap_port, hook_port, *metrics_ports = free_loopback_ports(3 + len(PROCESSES))
            access_file, status_token = _status_editor(workdir)
            env = {
                **stack_env(workdir, broker.bootstrap, s3, creds, emus),
                "LANTOA_WEB_PORT": str(web_port),
                "LANTOA_ACCESS_FILE": str(access_file),
                "LANTOA_STATUS_INSECURE_NO_AUTH": "0",
            }
            settings = Settings.from_env(env)
            apply_topics(settings)
            load_targets(settings)
            metrics = dict(zip((name for name, _ in PROCESSES), metrics_ports, strict=True))
            for name, args in PROCESSES:
                if name == "webhooks":
                    args = [*args, "--port", str(hook_port)]
                proc_env = {**os.environ, **env, "LANTOA_METRICS_PORT": str(metrics[name])}
                procs.append(Proc(name, args, proc_env, workdir / f"{name}.log"))
            cap_token = _cap_token(workdir)
            cap = ["alert-server", "--port", str(cap_port), "--token-file", str(cap_token)]
            procs.append(Proc("cap", cap, {**os.environ, **env}, workdir / "cap.log"))
            _write_env(workdir, env)
            listening = [web_port, cap_port, hook_port, *metrics.values()]
            _wait_listening(listening, procs, LISTEN_TIMEOUT_S)
            urls = [
                f"status pages     http://127.0.0.1:{web_port}/articles  (sign in as editor, "
                f"password: the token in {status_token})",
                f"CAP endpoint     http://127.0.0.1:{cap_port}/cap  (POST CAP XML with "
                f"'Authorization: Bearer <the token in {cap_token}>'; GET /healthz)",
                f"webhooks         http://127.0.0.1:{hook_port}/  (Graph and Zalo events)",
                *(f"metrics {n:<11} http://127.0.0.1:{p}/metrics" for n, p in metrics.items()),
                f"Kafka            {broker.bootstrap}",
                f"S3               {s3.endpoint_url}  (bucket lantoa-archive)",
                f"Graph emulator   {emus.graph_url}",
                f"Zalo emulator    {emus.zalo_url}",
                f"loudspeakers     {emus.loudspeaker_url}",
                f"logs             {workdir}/*.log",
            ]
            tmp = _urls_file(workdir).with_suffix(".tmp")
            tmp.write_text("\n".join(urls) + "\n", encoding="utf-8")
            tmp.replace(_urls_file(workdir))  # written last: `start` waits for it
            while not stopping.wait(1.0):
                for p in procs:
                    p.supervise()
            return 0
        finally:
            for p in reversed(procs):
                p.stop()
            if emus is not None:
                emus.close()
            for f in (_env_file(workdir), _urls_file(workdir)):
                f.unlink(missing_ok=True)


def _wait_listening(ports: list[int], procs: list[Proc], timeout: float) -> None:
    """Until every port accepts a connection; a process that dies meanwhile is restarted."""
    deadline = time.monotonic() + timeout
    waiting = list(ports)
    while waiting:
        for port in list(waiting):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                waiting.remove(port)
            except OSError:
                pass
        if waiting and time.monotonic() > deadline:
            raise RuntimeError(f"ports {waiting} not listening after {timeout:.0f} s (see the logs)")
        for p in procs:
            p.supervise()
        time.sleep(0.3)


def _cap_token(workdir: Path) -> Path:
    """The demo's CAP sender token (made once, 0600): the endpoint never runs unauthenticated."""
    path = workdir / "cap-sender.token"
    if not path.exists():
        write_secret(path, (secrets.token_urlsafe(32) + "\n").encode())
    return path


def _status_editor(workdir: Path) -> tuple[Path, Path]:
    """The identities file of the stack (one editor for the status web, made once) and the file
    holding the editor's token (0600): the status pages are never open to whoever reaches them."""
    access, token = workdir / "identities.json", workdir / "status-editor.token"
    if not (access.exists() and token.exists()):
        write_secret(token, (add_identity(access, "editor", [Role.EDITOR]) + "\n").encode())
    return access, token


def _write_env(workdir: Path, env: dict[str, str]) -> None:
    lines = ["# source this file to use the lantoa CLI against `make up` (removed by `make down`)"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in sorted(env.items())]
    path = _env_file(workdir)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.chmod(0o600)  # it names the secret files (not their contents); keep it to its owner anyway
    tmp.replace(path)


def start(workdir: Path) -> int:
    workdir.mkdir(parents=True, exist_ok=True)
    if (pid := _running_pid(workdir)) is not None and _urls_file(workdir).exists():
        print(f"already up (supervisor pid {pid}); `make down` stops it")
        print(_urls_file(workdir).read_text(encoding="utf-8"), end="")
        print(f"env file         {_env_file(workdir)}  (source it in another shell)")
        return 0
    if pid is not None:
        print(f"a supervisor (pid {pid}) is starting or stuck; `make down` first", file=sys.stderr)
        return 1
    _urls_file(workdir).unlink(missing_ok=True)
    log = (workdir / "up.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "infra.local.up", "run", "--dir", str(workdir)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # outlives this shell; `stop` signals its whole group
    )
    _pid_file(workdir).write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not _urls_file(workdir).exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                stop(workdir)
            tail = (workdir / "up.log").read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
            print("the stack did not come up; the end of its log:", *tail, sep="\n", file=sys.stderr)
            return 1
        time.sleep(0.5)
    print(f"Lantoa is up (supervisor pid {proc.pid}); `make down` stops it")
    print(_urls_file(workdir).read_text(encoding="utf-8"), end="")
    print(f"env file         {_env_file(workdir)}  (in another shell: source it, then `lantoa ...`)")
    return 0


def stop(workdir: Path) -> int:
    pid = _running_pid(workdir)
    if pid is None:
        print("not up")
        _pid_file(workdir).unlink(missing_ok=True)
        return 0
    os.kill(pid, signal.SIGTERM)  # the supervisor stops its processes, emulators, S3 and broker
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.3)
    if pid_alive(pid):
        signal_group(pid, signal.SIGKILL)
        print(f"the supervisor did not stop in {STOP_TIMEOUT_S:.0f} s: killed its process group")
    _pid_file(workdir).unlink(missing_ok=True)
    print("Lantoa is down")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.local.up", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "run"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"work directory ({DEFAULT_DIR})")
    ns = parser.parse_args(argv)
    workdir: Path = ns.dir.resolve()
    if ns.command == "run":
        return run(workdir)
    if ns.command == "start":
        return start(workdir)
    if ns.command == "stop":
        return stop(workdir)
    pid = _running_pid(workdir)
    print(f"up (supervisor pid {pid})" if pid else "not up")
    return 0 if pid else 3


if __name__ == "__main__":
    sys.exit(main())
