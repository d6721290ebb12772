"""`make up` / `make down` (infra/local/up.py): the stack comes up in the background, prints its URLs,
writes an env file that another shell sources to use the CLI, serves the status pages, metrics
and the CAP endpoint, says "already up" when asked twice, and `down` leaves nothing running."""

from __future__ import annotations

import base64
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from helpers import ROOT, SHARED

SAMPLE = SHARED / "samples" / "articles" / "01-2024-11-01-chuyen-doi-so-gan-ket.json"


def up(workdir: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "infra.local.up", command, "--dir", str(workdir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as resp:
            return resp.status, resp.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:  # refused, reset: not listening (URLError is an OSError)
        return 0, ""


def sourced(env_file: Path) -> dict[str, str]:
    """What `source lantoa.env` exports, read as the shell would."""
    out = subprocess.run(
        ["bash", "-c", f"set -a; source {shlex.quote(str(env_file))}; env -0"],
        capture_output=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    ).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if "=" in item)


@pytest.mark.timeout(600)
def test_up_serves_and_the_cli_works_from_the_env_file_then_down_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "up"
    try:
        started = up(workdir, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        assert "status pages" in started.stdout and "env file" in started.stdout
        env_file = workdir / "lantoa.env"
        assert env_file.stat().st_mode & 0o077 == 0
        env = sourced(env_file)
        assert env["LANTOA_KAFKA_BOOTSTRAP"].startswith("127.0.0.1:")

        lines = (workdir / "urls.txt").read_text().splitlines()
        status_url = next(line.split()[2] for line in lines if line.startswith("status pages"))
        cap_url = next(line.split()[2] for line in lines if line.startswith("CAP endpoint"))
        metrics_urls = [line.split()[-1] for line in lines if line.startswith("metrics")]
        assert len(metrics_urls) == 8, lines
        assert get(cap_url.removesuffix("/cap") + "/healthz")[0] == 200
        status_token = (workdir / "status-editor.token").read_text().strip()  # nor the status pages
        editor = {"Authorization": "Basic " + base64.b64encode(f"editor:{status_token}".encode()).decode()}
        assert (
            get(status_url)[0] == 401 and get(status_url, {"Authorization": "Bearer " + "x" * 40})[0] == 401
        )
        token_file = workdir / "cap-sender.token"  # the CAP endpoint is not open to anyone
        assert token_file.stat().st_mode & 0o077 == 0 and str(token_file) in "\n".join(lines)
        anonymous = urllib.request.Request(cap_url, data=b"<alert/>", method="POST")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(anonymous, timeout=10)
        assert refused.value.code == 401

        # Another shell: only what the env file exports (and PATH), then the CLI.
        cli_env = {"PATH": os.environ["PATH"], **env}
        published = subprocess.run(
            [sys.executable, "-m", "producers.cli", "publish", str(SAMPLE)],
            cwd=ROOT,
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert published.returncode == 0, published.stdout + published.stderr
        uri = json.loads(SAMPLE.read_text())["uri"]
        deadline = time.monotonic() + 120
        while True:
            code, body = get(status_url, editor)
            if code == 200 and uri in body:
                break
            assert time.monotonic() < deadline, f"{uri} never appeared on {status_url} ({code})"
            time.sleep(1)
        deadline = time.monotonic() + 60
        while True:  # every process serves its metrics (adapters start theirs once assigned)
            answers = [get(u) for u in metrics_urls]
            if all(c == 200 and "lantoa_" in b for c, b in answers):
                break
            assert time.monotonic() < deadline, [
                (u, c) for u, (c, _) in zip(metrics_urls, answers, strict=True)
            ]
            time.sleep(1)

        again = up(workdir, "start")
        assert again.returncode == 0 and "already up" in again.stdout, again.stdout + again.stderr
        pid = int((workdir / "up.pid").read_text())
    finally:
        down = up(workdir, "stop")
    assert down.returncode == 0 and "Lantoa is down" in down.stdout, down.stdout + down.stderr
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    assert not env_file.exists()
    for url in [status_url, cap_url.removesuffix("/cap") + "/healthz", *metrics_urls]:
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(url, timeout=5)
    assert up(workdir, "status").returncode == 3
