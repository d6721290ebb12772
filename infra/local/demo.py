"""`make demo`: the whole pipeline on local defaults, end to end, then a report.

Starts a real Kafka broker (jars from Maven Central, cached), the Graph API and Zalo OA
emulators, the stream app and the channel adapters; creates the topics, loads the targets
registry, publishes the five sample articles, retracts one, and prints per article and channel
where it went and what the emulated pages and groups now show. Everything it starts, it stops.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson

from consumers.delivery.base import article_marker
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.kafka.broker import KafkaBroker
from infra.local.s3.__main__ import write_credentials_file
from infra.local.s3.versitygw import S3Server, build_versitygw
from infra.local.stack import Emulators, Proc, stack_env
from producers.cap_ingest import AlertProducer, check
from producers.client import PublishClient
from producers.targets import load_targets, local_registry
from schemas.registry import DEFAULT_TARGETS_FILE, province_names
from schemas.settings import Settings
from schemas.topics import Channel, Topic

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = Path(os.environ.get("LANTOA_SHARED_DIR", ROOT.parent / "shared")) / "samples" / "articles"


def _say(text: str = "") -> None:
    print(text, flush=True)


def main() -> int:

    samples = sorted(SAMPLES.glob("*.json"))
    if not samples:
        _say(f"no sample articles in {SAMPLES} (set LANTOA_SHARED_DIR)")
        return 1
    workdir = Path(tempfile.mkdtemp(prefix="lantoa-demo-"))
    _say(f"== Lantoa demo (work dir {workdir})")
    procs: list[Any] = []
    emus = None
    build_versitygw()
    with KafkaBroker(workdir / "kafka") as broker, S3Server(workdir / "s3") as s3:
        try:
            _say(f"-- Kafka {broker.version} (KRaft, single node) at {broker.bootstrap}")
            _say(f"-- S3 (versitygw, SigV4, versioned) at {s3.endpoint_url}")
            creds = workdir / "s3-credentials"
            write_credentials_file(creds, s3.access_key, s3.secret_key)
            emus = Emulators(workdir / "emulators", DEFAULT_TARGETS_FILE)
            _say(
                f"-- emulators: Graph API {emus.graph_url}, Zalo OA {emus.zalo_url}, loudspeakers {emus.loudspeaker_url}"
            )
            env = {
                **os.environ,
                **stack_env(workdir, broker.bootstrap, s3, creds, emus),
                "LANTOA_WEB_PORT": "0",
                "LANTOA_EMBARGO_CHECK_INTERVAL_S": "0.5",
            }
            settings = Settings.from_env(env)
            _say(f"-- topics: {len(apply_topics(settings))} created from schemas/topics")
            _say(
                f"-- targets registry: {load_targets(settings)} targets (3,321 commune/ward zones, pages, groups, archive)"
            )
            for name, args in (
                ("streams", ["worker"]),
                ("fanpage", ["adapter", "fanpage"]),
                ("zalo", ["adapter", "zalo"]),
                ("archive", ["adapter", "archive"]),
                ("loudspeaker", ["adapter", "loudspeaker"]),
                ("emergency", ["adapter", "emergency"]),
            ):
                procs.append(Proc(name, args, env, workdir / f"{name}.log"))
            _say("-- stream app and the fanpage, Zalo, archive, loudspeaker and emergency adapters started")
            return _run(settings, emus, samples, workdir, procs)
        finally:
            for p in procs:
                p.stop()
            if emus is not None:
                emus.close()


def _run(settings: Any, emus: Any, samples: list[Path], workdir: Path, procs: list[Any]) -> int:

    started = time.monotonic()
    docs = [orjson.loads(p.read_bytes()) for p in samples]
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS), 60)

    def outcomes() -> list[dict[str, Any]]:
        receipts.poll()
        return [orjson.loads(r.value) for r in receipts.records]

    def wait(predicate: Any, timeout: float, what: str) -> bool:
        deadline = time.monotonic() + timeout
        while not predicate(outcomes()):
            if any(not p.alive() for p in procs) or time.monotonic() > deadline:
                _say(f"!! gave up waiting for {what}; logs in {workdir}")
                return False
            time.sleep(0.3)
        return True

    _say("-- publishing the five sample articles")
    with PublishClient(settings) as client:
        for path in samples:
            sent = client.publish(path.read_bytes())
            _say(f"   sent {sent.uri} v{sent.version} → partition {sent.partition}")
        uris = {d["uri"] for d in docs}
        if not wait(lambda rs: uris <= {r["uri"] for r in rs if r["outcome"] == "routed"}, 120, "routing"):
            return 1

        def social(rs: list[dict[str, Any]]) -> set[tuple[str, str]]:
            return {
                (r["uri"], r["target"])
                for r in rs
                if r["stage"] == "delivery" and r["outcome"] == "delivered"
            }

        if not wait(lambda rs: len(social(rs)) >= 24, 120, "deliveries to pages and groups"):
            return 1
        _say(
            f"-- routed and delivered to pages and groups in {time.monotonic() - started:.1f}s (including start-up)"
        )
        first = docs[0]["uri"]
        client.retract(first, "Demo: đính chính")
        if not wait(
            lambda rs: (
                sum(
                    1
                    for r in rs
                    if r["uri"] == first
                    and r["outcome"] == "deleted"
                    and r.get("channel") in ("fanpage", "zalo")
                )
                >= 4
            ),
            120,
            "retraction",
        ):
            return 1
    _say("-- emergency: the sample typhoon alert (dates moved to today) through `lantoa alert`")
    alert_ok = _typhoon(settings, emus, wait)

    provinces = province_names()
    registry = local_registry(settings)
    per: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for channel in Channel:
        tail = TopicTail(settings.kafka, settings.topic(Topic.commands(channel)))
        for rec in tail.settle(0.5):
            cmd = orjson.loads(rec.value)
            per[cmd["uri"]][channel.value].append(cmd)
        tail.close()
    posts = emus.control("graph", "GET", "/_control/posts")
    posts = posts["posts"] if isinstance(posts, dict) else posts
    messages = emus.control("zalo", "GET", "/_control/messages")
    messages = messages["messages"] if isinstance(messages, dict) else messages
    page_names = {str(t.config.get("page_id")): t.name for t in registry.channel_targets(Channel.FANPAGE)}
    group_names = {str(t.config.get("group_id")): t.name for t in registry.channel_targets(Channel.ZALO)}

    _say()
    _say("== Where each article went")
    for doc in docs:
        marker = article_marker(doc["uri"])
        _say(f"\n{doc['headlines'][0]['value']}\n  {doc['uri']}  (mã tin {marker})")
        zones = [
            registry.targets[c["target"]]
            for c in per[doc["uri"]].get("loudspeaker", [])
            if c["action"] == "publish"
        ]
        by_province = Counter(provinces.get(t.province_code or 0, "?") for t in zones)
        where = (
            "all 34 provinces"
            if len(by_province) == 34
            else ", ".join(f"{p} ({n})" for p, n in by_province.most_common(3))
        )
        _say(f"  loa truyền thanh  {len(zones)} zones — {where} (schedules: the loudspeaker adapter)")
        for post in (p for p in posts if marker in p["message"]):
            state = "deleted (retracted)" if post["deleted"] else "live"
            _say(
                f"  fanpage           {page_names.get(str(post['id']).split('_')[0], '?')}: post {post['id']} {state}"
            )
        for msg in (m for m in messages if marker in (m.get("text") or "")):
            kind = "correction notice" if (msg["text"] or "").startswith("ĐÍNH CHÍNH") else "message"
            _say(
                f"  zalo              {group_names.get(msg['recipient'], msg['recipient'])}: {kind} {msg['message_id'][:12]}…"
            )
        archive = per[doc["uri"]].get("archive", [])
        _say(f"  archive           {len(archive)} command(s) on {settings.topic(Topic.ARCHIVE_COMMANDS)}")
    rs = outcomes()
    by_channel = Counter((r.get("channel") or "-", r["outcome"]) for r in rs if r["stage"] == "delivery")
    _say("\n== delivery receipts per channel")
    for (name, outcome), n in sorted(by_channel.items()):
        _say(f"  {name:12} {outcome:10} {n}")
    loud = sum(1 for r in rs if r.get("channel") == "loudspeaker")
    _say(
        f"\n== loudspeaker schedules pushed so far: {loud} zone updates (13,410 commanded: 126 + 4 × 3,321);"
        " `lantoa schedule ZONE --format ics` shows a zone's day from the platform while they run"
    )
    return 0 if alert_ok else 1


def _typhoon(settings: Any, emus: Any, wait: Any) -> bool:
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()  # the alert's own (Vietnam) day
    raw = (
        (
            Path(os.environ.get("LANTOA_SHARED_DIR", ROOT.parent / "shared"))
            / "samples"
            / "alerts"
            / "01-bao-so-5-khan-cap.cap"
        )
        .read_bytes()
        .replace(b"2026-09-18", (today + timedelta(days=1)).isoformat().encode())
        .replace(b"2026-09-17", today.isoformat().encode())
    )
    checked = check(raw, local_registry(settings))
    producer = AlertProducer(settings)
    started = time.monotonic()
    try:
        producer.send(checked, "urn:lantoa:demo")
    finally:
        producer.close()
    eid = checked.alert.identifier

    def preempted(_: Any) -> bool:
        got = emus.control("loudspeaker", "GET", f"/_control/preemptions?emergency_id={eid}")
        return bool(got["zones"] >= len(checked.plan.zones))

    if not wait(preempted, 60, "the emergency at the loudspeaker platform"):
        return False
    _say(
        f"   {eid}: {len(checked.plan.zones)} wards of Hà Tĩnh and Quảng Trị pre-empted at the platform "
        f"{time.monotonic() - started:.2f}s after `lantoa alert`"
    )
    return True


if __name__ == "__main__":
    sys.exit(main())
