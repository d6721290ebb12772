"""Kill -9 the fanpage and Zalo adapters at random points during a run of 1,000+ deliveries.

Commands go straight onto the command topics (the stream app is tested elsewhere); the
emulators inject rate limits, 5xx errors and answers lost after the effect. At the end every
(article, target) must have exactly one live post or message set at the emulators, or a dead
letter with its reason. The counts are printed and kept in test-artifacts/.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from consumers.delivery.base import article_marker
from infra.kafka import clients
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.targets import load_targets
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import KafkaConnection, Settings
from schemas.topics import Channel, Topic, command_key

ROOT = Path(__file__).resolve().parents[2]
PAGES, GROUPS, ARTICLES = 24, 24, 22  # 22 × 48 = 1,056 deliveries
KILLS = 12
FAST_RETRIES = "10s=1,1m=2,10m=4"


def targets_toml(path: Path) -> None:
    lines = ['[[archive]]\nid = "archive:main"\nname = "A"\nbucket = "b"\n']
    for i in range(PAGES):
        lines.append(
            f'[[fanpage]]\nid = "fanpage:p{i}"\nname = "Trang {i}"\npage_id = "{200000000000000 + i}"\n'
        )
    for i in range(GROUPS):
        lines.append(f'[[zalo]]\nid = "zalo:g{i}"\nname = "Nhóm {i}"\ngroup_id = "g-{i:018d}"\n')
    path.write_text("\n".join(lines))


def make_command(uri: str, channel: Channel, target: str) -> Command:
    text = f"Tin {uri}: thông báo của Ủy ban nhân dân phường về lịch tiêm chủng."
    payload: dict[str, Any] = (
        {"message": text, "link": "https://tin.example.vn/a/x"}
        if channel is Channel.FANPAGE
        else {"text": text}
    )
    return Command(
        IdempotencyKey(uri, 1, channel, target, Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        payload,
        published_at="2026-11-26T01:00:00Z",
    )


@pytest.mark.timeout(600)
def test_kill9_during_1000_deliveries_loses_nothing_and_posts_nothing_twice(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    rnd = random.Random(int(os.environ.get("LANTOA_TEST_SEED", "20261126")))
    prefix = f"k{uuid.uuid4().hex[:6]}."
    targets = tmp_path / "targets.toml"
    targets_toml(targets)
    emus = Emulators(tmp_path / "emu", targets)
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_TARGETS_FILE": str(targets),
        "LANTOA_RETRY_DELAYS": FAST_RETRIES,
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_HTTP_TIMEOUT_S": "3",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    for which, path in (("graph", "/feed$"), ("zalo", "/group/message$")):
        emus.control(
            which,
            "POST",
            "/_control/faults",
            {
                "faults": [
                    {
                        "kind": "server_error",
                        "path": path,
                        "probability": 0.04,
                        "count": None,
                        **({"code": -1} if which == "zalo" else {}),
                    },
                    {"kind": "drop_after_effect", "path": path, "probability": 0.03, "count": None},
                    {
                        "kind": "rate_limit",
                        "path": path,
                        "probability": 0.02,
                        "count": None,
                        **({"regain_minutes": 0.02} if which == "graph" else {}),
                    },
                ]
            },
        )

    pages = [f"fanpage:p{i}" for i in range(PAGES)]
    groups = [f"zalo:g{i}" for i in range(GROUPS)]
    uris = [f"urn:lantoa:kill:{i:03d}" for i in range(ARTICLES)]
    expected = {(u, t) for u in uris for t in pages + groups}
    procs = {ch: Proc(ch, ["adapter", ch], env, tmp_path / f"{ch}.log") for ch in ("fanpage", "zalo")}
    try:
        producer = clients.producer(KafkaConnection(kafka_bootstrap), acks="all")
        for u in uris:
            for channel, ts in ((Channel.FANPAGE, pages), (Channel.ZALO, groups)):
                for t in ts:
                    cmd = make_command(u, channel, t)
                    producer.send(
                        settings.topic(Topic.commands(channel)),
                        key=command_key(channel, t),
                        value=encode(cmd.to_dict()),
                    )
        producer.flush()
        producer.close()

        receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
        dlq = TopicTail(settings.kafka, settings.topic(Topic.DEADLETTER))
        settled: set[tuple[str, str]] = set()
        deadline = time.monotonic() + 420
        kills = 0
        next_kill = time.monotonic() + rnd.uniform(1.0, 3.0)
        while True:
            for p in procs.values():
                p.supervise()
            for rec in receipts.poll():
                r = orjson.loads(rec.value)
                if r["outcome"] in ("delivered", "failed"):
                    settled.add((r["uri"], r["target"]))
            if kills < KILLS and time.monotonic() >= next_kill:
                victim = procs[rnd.choice(sorted(procs))]
                victim.kill9()
                kills += 1
                time.sleep(rnd.uniform(0.0, 0.5))
                victim.restart()
                next_kill = time.monotonic() + rnd.uniform(1.5, 4.0)
            if kills >= KILLS and expected <= settled:
                break
            assert time.monotonic() < deadline, (
                f"only {len(expected & settled)}/{len(expected)} settled after 420s"
            )
            time.sleep(0.2)
        time.sleep(2.0)  # let in-flight effects of the last batch land before counting
        dlq.poll()
    finally:
        for p in procs.values():
            p.stop()
        posts = emus.control("graph", "GET", "/_control/posts")
        messages = emus.control("zalo", "GET", "/_control/messages")
        emus.close()

    page_of = {f"{200000000000000 + i}": f"fanpage:p{i}" for i in range(PAGES)}
    group_of = {f"g-{i:018d}": f"zalo:g{i}" for i in range(GROUPS)}
    marker_of = {article_marker(u): u for u in uris}
    effects: Counter[tuple[str, str]] = Counter()
    post_list = posts["posts"] if isinstance(posts, dict) else posts
    for post in post_list:
        for marker, uri in marker_of.items():
            if marker in post["message"]:
                effects[(uri, page_of[str(post["id"]).split("_")[0]])] += 1
    msg_list = messages["messages"] if isinstance(messages, dict) else messages
    for msg in msg_list:
        for marker, uri in marker_of.items():
            if marker in (msg.get("text") or ""):
                effects[(uri, group_of[msg["recipient"]])] += 1
    dead = {
        (v["uri"], v["target"]) for v in (orjson.loads(r.value) for r in dlq.records)
    }  # Zalo keys are the OA
    delivered = {k for k, n in effects.items() if n >= 1}
    duplicates = sum(n - 1 for n in effects.values() if n > 1)
    lost = expected - delivered - dead
    counts = {
        "expected": len(expected),
        "delivered": len(delivered & expected),
        "duplicates": duplicates,
        "lost": len(lost),
        "dead_lettered": len(dead & expected),
        "kills": kills,
        "restarts_after_crash": sum(p.crashes for p in procs.values()),
        "emulator_faults_fired": "see emulators.log",
    }
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "kill-test.json").write_text(json.dumps(counts, indent=2))
    print("kill test:", counts)
    assert kills >= KILLS
    assert duplicates == 0, [k for k, n in effects.items() if n > 1][:5]
    assert not lost, sorted(lost)[:5]
    assert counts["expected"] >= 1000
