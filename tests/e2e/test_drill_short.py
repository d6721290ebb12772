"""The fault drill's short form (bench/drill.py, ``make drill`` runs the full one).

A few hundred deliveries across every channel the adapter registry has, with kill -9 of each
worker type, one broker restart (the drill starts its own broker: it must own the one it
restarts), S3 away for 20 s and the emulators answering with rate limits, 5xx, timeouts and
dropped connections. Every (uri, version, channel, target) must end with exactly one effect at
the platforms or a dead letter with its reason. The counts go to test-artifacts/drill-short.json.
"""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from bench.drill import SHORT, ok, run_drill


@pytest.mark.timeout(290)
def test_short_drill_loses_nothing_and_does_nothing_twice() -> None:
    counts = run_drill(SHORT, log=lambda m: print(m, flush=True))
    summary = {k: counts[k] for k in ("expected", "delivered", "duplicates", "lost", "dead_lettered")}
    print(
        "drill-short:", json.dumps(summary), json.dumps(counts["per_channel"]), "lag:", counts["lag_at_end"]
    )
    assert counts["expected"] >= 300
    assert all(n >= SHORT.kills_per_worker for n in counts["kills"].values()), counts["kills"]
    assert counts["broker_restart_s"] > 0 and counts["s3_down_s"] >= SHORT.s3_down_s
    assert ok(counts), {k: v for k, v in counts.items() if k != "config"} | {"config": asdict(SHORT)}
