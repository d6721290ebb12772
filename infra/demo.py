"""`make demo`: the whole pipeline on local defaults, end to end, then a report.

Starts a real Kafka broker (jars from Maven Central, cached), creates the topics, loads the
targets registry, runs the stream app, publishes the five sample articles, retracts one, and
prints per article and channel where it went. Everything it starts, it stops.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = Path(os.environ.get("LANTOA_SHARED_DIR", ROOT.parent / "shared")) / "samples" / "articles"


def _say(text: str) -> None:
    print(text, flush=True)


def main() -> int:
    from infra.kafka.broker import KafkaBroker
    from infra.kafka.tail import TopicTail
    from infra.topics import apply_topics
    from producers.client import PublishClient
    from producers.targets import load_targets
    from schemas.settings import Settings
    from schemas.topics import Channel, Topic
    from streams.registry import province_names

    samples = sorted(SAMPLES.glob("*.json"))
    if not samples:
        _say(f"no sample articles in {SAMPLES} (set LANTOA_SHARED_DIR)")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="lantoa-demo-"))
    _say(f"== Lantoa demo (work dir {workdir})")
    with KafkaBroker(workdir / "kafka") as broker:
        _say(f"-- Kafka {broker.version} (KRaft, single node) at {broker.bootstrap}")
        env = {**os.environ, "LANTOA_KAFKA_BOOTSTRAP": broker.bootstrap, "LANTOA_DATA_DIR": str(workdir / "data"),
               "LANTOA_WEB_PORT": "0", "LANTOA_EMBARGO_CHECK_INTERVAL_S": "0.5"}
        settings = Settings.from_env(env)
        changes = apply_topics(settings)
        _say(f"-- topics: {len(changes)} created from schemas/topics")
        n = load_targets(settings)
        _say(f"-- targets registry: {n} targets (3,321 commune/ward zones, pages, groups, archive)")
        log = (workdir / "streams.log").open("wb")
        worker = subprocess.Popen([sys.executable, "-m", "producers.cli", "worker"], cwd=ROOT, env=env,
                                  stdout=log, stderr=subprocess.STDOUT)
        try:
            return _run(settings, worker, samples, workdir, Topic, Channel, TopicTail, PublishClient, province_names)
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
            log.close()


def _run(settings: Any, worker: Any, samples: list[Path], workdir: Path, Topic: Any, Channel: Any, TopicTail: Any,
         PublishClient: Any, province_names: Any) -> int:
    _say("-- stream app started; publishing the five sample articles")
    started = time.monotonic()
    docs = []
    with PublishClient(settings) as client:
        for path in samples:
            sent = client.publish(path.read_bytes())
            docs.append(orjson.loads(path.read_bytes()))
            _say(f"   sent {sent.uri} v{sent.version} → partition {sent.partition}")
        receipts = TopicTail(settings.kafka_bootstrap, settings.topic(Topic.RECEIPTS), 60)
        uris = {d["uri"] for d in docs}

        def routed(recs: list[Any]) -> bool:
            done = {orjson.loads(r.value)["uri"] for r in recs if orjson.loads(r.value)["outcome"] == "routed"}
            return uris <= done

        try:
            receipts.wait_for(routed, 120, "a routed receipt for every sample")
        except TimeoutError as exc:
            _say(f"!! {exc}; stream app log: {workdir / 'streams.log'}")
            return 1
        _say(f"-- all five routed in {time.monotonic() - started:.1f}s (including the stream app's start)")
        first = docs[0]["uri"]
        client.retract(first, "Demo: đính chính")
        receipts.wait_for(lambda recs: any(orjson.loads(r.value)["outcome"] == "retracted" for r in recs), 60, "retraction")

    provinces = province_names()
    per: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for channel in Channel:
        tail = TopicTail(settings.kafka_bootstrap, settings.topic(Topic.commands(channel)))
        for rec in tail.settle(1.0):
            cmd = orjson.loads(rec.value)
            per[cmd["uri"]][channel.value].append(cmd)
        tail.close()
    from producers.targets import local_registry

    registry = local_registry(settings)
    _say("")
    _say("== Where each article went")
    for doc in docs:
        headline = doc["headlines"][0]["value"]
        _say(f"\n{headline}\n  {doc['uri']}")
        for channel in Channel:
            cmds = per[doc["uri"]].get(channel.value, [])
            actions = Counter(c["action"] for c in cmds)
            targets = [registry.targets[c["target"]] for c in cmds if c["action"] == "publish" and c["target"] in registry.targets]
            if channel is Channel.LOUDSPEAKER:
                by_province = Counter(provinces.get(t.province_code or 0, "?") for t in targets)
                where = "all 34 provinces" if len(by_province) == 34 else ", ".join(f"{p} ({n})" for p, n in by_province.most_common(3))
                _say(f"  loa truyền thanh: {len(targets)} zones — {where}")
            else:
                _say(f"  {channel.value:16} {', '.join(t.name for t in targets) or '-'}")
            if actions.get("retract"):
                _say(f"  {'':16} ↳ retracted: {actions['retract']} retract commands")
    total = sum(len(v) for d in per.values() for v in d.values())
    _say(f"\n== {total} commands on the channel topics; receipts on {settings.topic(Topic.RECEIPTS)}")
    if worker.poll() is not None:
        _say(f"!! the stream app exited with {worker.returncode}; log: {workdir / 'streams.log'}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
