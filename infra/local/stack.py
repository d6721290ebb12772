"""Local stack plumbing shared by the demo, the end-to-end tests and the fault drills.

- ``Emulators``: the Graph and Zalo emulators in a subprocess, with the secrets files an adapter
  needs (0600) written from the emulators' state file;
- ``Proc``: a Lantoa process (stream worker or channel adapter) that can be killed with SIGKILL
  and restarted, its output appended to one log file.
No business logic: only starting, stopping and wiring.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from infra.local.s3.versitygw import S3Server
from schemas.secrets import write_secret

ROOT = Path(__file__).resolve().parents[2]


class Emulators:
    """`python -m infra.local.emulators all` in a subprocess; ``env`` points adapters at it."""

    def __init__(self, workdir: Path, targets_file: Path, config: dict[str, Any] | None = None) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        state = workdir / "emulators.json"
        args = [
            sys.executable,
            "-m",
            "infra.local.emulators",
            "all",
            "--state-file",
            str(state),
            "--targets",
            str(targets_file),
            "--no-access-log",
        ]
        if config:
            cfg = workdir / "emulators-config.json"
            cfg.write_text(json.dumps(config))
            args += ["--config", str(cfg)]
        self._log = (workdir / "emulators.log").open("ab")
        self.proc = subprocess.Popen(args, cwd=ROOT, stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not state.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"emulators did not start; see {workdir / 'emulators.log'}")
            time.sleep(0.1)
        self.state: dict[str, Any] = json.loads(state.read_text())
        self.graph_url: str = self.state["graph"]["base_url"]
        self.zalo_url: str = self.state["zalo"]["base_url"]
        z = self.state["zalo"]
        secrets = workdir / "secrets"
        secrets.mkdir(exist_ok=True, mode=0o700)
        write_secret(secrets / "fanpage-tokens.json", self.state["graph"]["pages"])
        write_secret(secrets / "fanpage-app.json", {"app_secret": self.state["graph"]["app_secret"]})
        write_secret(secrets / "zalo-secret.json", {"secret_key": z["secret_key"]})
        write_secret(
            secrets / "zalo-tokens.json",
            {
                "access_token": z["access_token"],
                "refresh_token": z["refresh_token"],
                "expires_at": time.time() + 90000,
            },
        )
        loud = self.state.get("loudspeaker")
        self.loudspeaker_url: str | None = loud["base_url"] if loud else None
        self.env = {
            "LANTOA_GRAPH_BASE_URL": self.graph_url,
            "LANTOA_FANPAGE_TOKENS_FILE": str(secrets / "fanpage-tokens.json"),
            "LANTOA_FANPAGE_APP_SECRET_FILE": str(secrets / "fanpage-app.json"),
            "LANTOA_ZALO_API_URL": self.zalo_url,
            "LANTOA_ZALO_OAUTH_URL": z.get("oauth_base_url", self.zalo_url),
            "LANTOA_ZALO_APP_ID": z["app_id"],
            "LANTOA_ZALO_SECRET_FILE": str(secrets / "zalo-secret.json"),
            "LANTOA_ZALO_TOKEN_FILE": str(secrets / "zalo-tokens.json"),
        }
        if loud:
            write_secret(secrets / "loudspeaker-token.json", {"token": loud["tokens"][0]})
            self.env.update(
                {
                    "LANTOA_LOUDSPEAKER_API_URL": loud["base_url"],
                    "LANTOA_LOUDSPEAKER_TOKEN_FILE": str(secrets / "loudspeaker-token.json"),
                    "LANTOA_LOUDSPEAKER_AUDIO_DIR": str(workdir / "audio"),
                    "LANTOA_LOUDSPEAKER_AUDIO_BASE_URL": "http://127.0.0.1/audio",
                }
            )

    def control(self, which: str, method: str, path: str, body: Any = None) -> Any:
        import urllib.request

        base = {"graph": self.graph_url, "zalo": self.zalo_url}.get(which) or self.loudspeaker_url or ""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            base + path, data=data, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"null")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


class Proc:
    """A Lantoa subprocess (``lantoa <args>``) that can be SIGKILLed and restarted."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name, self.args, self.env = name, args, env
        self._log = log_path.open("ab")
        self.kills = 0
        self.restarts = 0
        self.crashes = 0
        self.proc = self._spawn()

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "producers.cli", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.kills += 1

    def restart(self) -> None:
        if self.alive():
            return
        self.restarts += 1
        self.proc = self._spawn()

    def supervise(self) -> None:
        """Restart the process if it died on its own (exit 70: an unexpected error)."""
        if not self.alive():
            self.crashes += 1
            self.restart()

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def stack_env(
    workdir: Path, bootstrap: str, s3: S3Server, credentials: Path, emus: Emulators
) -> dict[str, str]:
    """The LANTOA_* settings that point a Lantoa process at a local stack (demo, `make up`)."""
    return {
        "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
        "LANTOA_DATA_DIR": str(workdir / "data"),
        "LANTOA_S3_ENDPOINT": s3.endpoint_url,
        "LANTOA_S3_BUCKET": "lantoa-archive",
        "LANTOA_S3_REGION": s3.region,
        "LANTOA_S3_CREDENTIALS_FILE": str(credentials),
        "LANTOA_S3_ADDRESSING_STYLE": "path",
        **emus.env,
    }
