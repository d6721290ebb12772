"""Shared bench plumbing: a stream-app worker on its own topic prefix, result lines, RESULTS.md."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    name: str
    value: float
    unit: str
    goal: str = ""
    note: str = ""

    def line(self) -> str:
        return json.dumps(
            {"name": self.name, "value": round(self.value, 4), "unit": self.unit}, ensure_ascii=False
        )


class Worker:
    """`lantoa worker` in a subprocess with a fresh topic prefix, topics applied, targets loaded."""

    def __init__(self, bootstrap: str, **extra_env: str) -> None:
        from infra.kafka.topics import apply_topics
        from producers.targets import load_targets
        from schemas.settings import Settings

        self.tmp = Path(tempfile.mkdtemp(prefix="lantoa-bench-"))
        prefix = f"b{uuid.uuid4().hex[:6]}."
        self.env = {
            **os.environ,
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_WEB_PORT": "0",
            "LANTOA_DATA_DIR": str(self.tmp),
            **extra_env,
        }
        self.settings = Settings.from_env(self.env)
        apply_topics(self.settings)
        load_targets(self.settings)
        self._log = (self.tmp / "worker.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def write_results(
    results: list[Result], command: str, path: Path = ROOT / "bench" / "RESULTS.md", extra: str = ""
) -> None:
    """Rewrite the generated table of RESULTS.md, keeping the hand-written notes below the marker."""
    marker = "<!-- notes below are kept by make bench -->"
    notes = ""
    if path.exists() and marker in path.read_text():
        notes = path.read_text().split(marker, 1)[1]
    rows = "\n".join(f"| `{r.name}` | {r.value:.4g} | {r.unit} | {r.goal} | {r.note} |" for r in results)
    machine = f"{os.cpu_count()} cores, Python {sys.version.split()[0]}"
    text = f"""# Benchmark results

Produced by `{command}` on {machine}. Every figure comes from one run, against the real
Kafka broker started by `infra.local.testenv`; ratios are computed from figures of the same run.

| name | value | unit | goal | note |
|---|---|---|---|---|
{rows}
{extra}
{marker}{notes}"""
    path.write_text(text)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def jsonable(value: Any) -> Any:
    return value
