"""Micro-benchmark of the archive adapter (consumers/archive/adapter.py) against a local versitygw.

    python -m bench.archive_micro [--articles 40] [--rounds 2] [--keep-alive on|off|default]

No Kafka: commands are built from sample 01 with a fresh uri each (as the pipeline bench's
copies) and handed to ``ArchiveAdapter.deliver`` one after the other, the way the runtime does
for the archive's single target. Starts its own S3 server (infra/local/s3/versitygw.py ``S3Server``);
``--keep-alive`` forces versitygw's ``--keep-alive`` flag on or off (``default``: whatever
``S3Server.command()`` does). Prints JSON lines {"name", "value", "unit"}:

- ``archive_publish_ms_p50`` / ``_mean``: one new article version (render + S3 calls + manifest);
- ``archive_update_ms_p50``: version 2 of an article already archived (same public URL);
- ``archive_replay_ms_p50``: the same publish command again (nothing to write);
- ``archive_s3_calls_per_publish`` / ``_per_update`` / ``_per_replay``: S3 requests per command
  (counted with botocore's ``before-call`` event, retries excluded);
- ``archive_qr_ms``: ``render_qr`` for a new URL (best of the rounds' means).

Every round uses a new bucket; the figures are the best round (the machine is shared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from consumers.archive.adapter import ArchiveAdapter
from consumers.archive.config import ArchiveConfig, S3Credentials
from consumers.archive.render import render_qr
from consumers.delivery.base import Prior
from infra.local.s3.versitygw import S3Server
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "samples" / "articles"
BASE_URL = "https://tin.lantoa.example.vn"


def _command(doc: dict[str, Any], action: Action = Action.PUBLISH) -> Command:
    uri, version = str(doc["uri"]), int(doc["version"])
    payload = {
        "document": doc,
        "public_url": f"{BASE_URL}/a/{uuid.uuid5(uuid.NAMESPACE_URL, uri).hex}",
        "ninjs_version": "3.1",
    }
    return Command(
        key=IdempotencyKey(uri, version, Channel.ARCHIVE, "archive:main", action),
        priority=Priority.NORMAL,
        issued_at="2026-11-26T01:00:01.000Z",
        payload=payload,
        published_at="2026-11-26T08:00:00+07:00",
        event_id=str(uuid.uuid4()),
    )


def _line(name: str, value: float, unit: str) -> None:
    print(json.dumps({"name": name, "value": round(value, 3), "unit": unit}), flush=True)


class _Server(S3Server):
    def __init__(self, keep_alive: str) -> None:
        super().__init__()
        self._keep_alive = keep_alive

    def command(self) -> list[str]:
        cmd = [c for c in super().command() if c != "--keep-alive"]
        if self._keep_alive == "on":
            cmd.insert(1, "--keep-alive")
        elif self._keep_alive == "default":
            return super().command()
        return cmd


async def _round(server: S3Server, base: dict[str, Any], articles: int) -> dict[str, list[float]]:
    adapter = ArchiveAdapter(
        ArchiveConfig(
            bucket=f"bench-{uuid.uuid4().hex[:12]}",
            endpoint_url=server.endpoint_url,
            region=server.region,
            credentials=S3Credentials(server.access_key, server.secret_key),
            addressing_style="path",
        )
    )
    await adapter.start()
    calls: Counter[str] = Counter()
    adapter.client.meta.events.register("before-call.s3.*", lambda model, **_: calls.update([model.name]))
    out: dict[str, list[float]] = {
        "publish": [],
        "update": [],
        "replay": [],
        "publish_calls": [],
        "update_calls": [],
        "replay_calls": [],
    }
    docs = [{**base, "uri": f"urn:lantoa:bench:{uuid.uuid4().hex}", "version": "1"} for _ in range(articles)]
    for kind, cmds in (
        ("publish", [_command(d) for d in docs]),
        ("update", [_command({**d, "version": "2"}, Action.UPDATE) for d in docs]),
        ("replay", [_command(d) for d in docs]),
    ):
        for cmd in cmds:
            calls.clear()
            t0 = time.perf_counter()
            await adapter.deliver(cmd, Prior())
            out[kind].append((time.perf_counter() - t0) * 1000)
            out[f"{kind}_calls"].append(float(sum(calls.values())))
    await adapter.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--articles", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--keep-alive", choices=("on", "off", "default"), default="default")
    args = parser.parse_args()
    base = json.loads(sorted(SAMPLE.glob("*.json"))[0].read_text(encoding="utf-8"))
    rounds: list[dict[str, list[float]]] = []
    with _Server(args.keep_alive) as server:
        for _ in range(args.rounds):
            rounds.append(asyncio.run(_round(server, base, args.articles)))
    best = min(rounds, key=lambda r: statistics.median(r["publish"]))
    _line("archive_publish_ms_p50", statistics.median(best["publish"]), "ms")
    _line("archive_publish_ms_mean", statistics.fmean(best["publish"]), "ms")
    _line("archive_update_ms_p50", statistics.median(best["update"]), "ms")
    _line("archive_replay_ms_p50", statistics.median(best["replay"]), "ms")
    for kind in ("publish", "update", "replay"):
        _line(f"archive_s3_calls_per_{kind}", statistics.fmean(best[f"{kind}_calls"]), "calls")
    qr: list[float] = []
    for r in range(args.rounds):
        t0 = time.perf_counter()
        for i in range(20):
            render_qr(f"{BASE_URL}/a/{uuid.uuid4().hex}-{r}-{i}")
        qr.append((time.perf_counter() - t0) / 20 * 1000)
    _line("archive_qr_ms", min(qr), "ms")


if __name__ == "__main__":
    main()
