"""CMS → stream app → fanpage and Zalo adapters → emulated platforms, and back with a retraction.

Also: the Zalo access token expires in the middle of the run; it is refreshed exactly once and
nothing is lost.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import sample_paths

from consumers.delivery.base import article_marker
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.client import PublishClient
from producers.targets import load_targets
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.settings import Settings
from schemas.topics import Topic


def receipts_by(tail: TopicTail) -> list[dict[str, Any]]:
    tail.poll()
    return [orjson.loads(r.value) for r in tail.records]


def wait(predicate: Any, timeout: float, what: str, procs: dict[str, Proc]) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        for p in procs.values():
            assert p.alive(), f"{p.name} died; see its log"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.timeout(400)
def test_samples_reach_pages_and_groups_then_retraction_follows(kafka_bootstrap: str, tmp_path: Path) -> None:
    emus = Emulators(tmp_path / "emu", DEFAULT_TARGETS_FILE)
    prefix = f"s{uuid.uuid4().hex[:6]}."
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_WEB_PORT": "0",
        "LANTOA_DATA_DIR": str(tmp_path / "data"),
        "LANTOA_RETRY_DELAYS": "10s=1,1m=2,10m=4",
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    procs = {
        name: Proc(name, args, env, tmp_path / f"{name}.log")
        for name, args in (
            ("streams", ["worker"]),
            ("fanpage", ["adapter", "fanpage"]),
            ("zalo", ["adapter", "zalo"]),
        )
    }
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    try:
        docs = [orjson.loads(p.read_bytes()) for p in sample_paths()]
        with PublishClient(settings) as client:
            for path in sample_paths()[:3]:
                client.publish(path.read_bytes())

            def delivered(uris: set[str]) -> int:
                return len(
                    {
                        (r["uri"], r["target"])
                        for r in receipts_by(receipts)
                        if r["stage"] == "delivery" and r["outcome"] == "delivered" and r["uri"] in uris
                    }
                )

            first3 = {d["uri"] for d in docs[:3]}
            # routed counts for these: fanpage 2+3+3, zalo 2+2+2
            wait(
                lambda: delivered(first3) >= 8 + 6, 120, "the first three samples at pages and groups", procs
            )

            # The Zalo access token expires in the middle of the run.
            emus.control("zalo", "POST", "/_control/tokens/expire", {})
            for path in sample_paths()[3:]:
                client.publish(path.read_bytes())
            everything = {d["uri"] for d in docs}
            wait(lambda: delivered(everything) >= 14 + 6 + 4, 120, "all five samples", procs)
            tokens = emus.control("zalo", "GET", "/_control/tokens")
            assert tokens["refresh_count"] == 1

            retracted = docs[0]["uri"]
            client.retract(retracted, "Đính chính thông tin")

            def retract_receipts() -> list[dict[str, Any]]:
                return [
                    r
                    for r in receipts_by(receipts)
                    if r["uri"] == retracted and r["stage"] == "delivery" and r["outcome"] == "deleted"
                ]

            wait(
                lambda: len(retract_receipts()) >= 4, 120, "retraction receipts from pages and groups", procs
            )
    finally:
        for p in procs.values():
            p.stop()
        posts = emus.control("graph", "GET", "/_control/posts")
        messages = emus.control("zalo", "GET", "/_control/messages")
        emus.close()

    post_list = posts["posts"] if isinstance(posts, dict) else posts
    msg_list = messages["messages"] if isinstance(messages, dict) else messages
    per_post = Counter()
    for doc in docs:
        marker = article_marker(doc["uri"])
        live = [p for p in post_list if marker in p["message"] and not p["deleted"]]
        all_posts = [p for p in post_list if marker in p["message"]]
        per_post[doc["uri"]] = len(all_posts)
        if doc["uri"] == retracted:
            assert live == [] and len(all_posts) == 2  # both pages' posts deleted
        else:
            assert len(live) == len(all_posts) >= 2
        texts = [m["text"] for m in msg_list if marker in (m["text"] or "")]
        if doc["uri"] == retracted:
            assert len(texts) == 4 and sum(t.startswith("ĐÍNH CHÍNH") for t in texts) == 2
            assert all("Đính chính thông tin" in t for t in texts if t.startswith("ĐÍNH CHÍNH"))
        else:
            assert len(texts) == 2  # one message per group, never twice
    # The first article (Hà Nội) reaches the national page and the Hà Nội page; the four
    # national ones also reach the Hà Tĩnh digital-transformation page (subject match).
    assert sorted(per_post.values()) == [2, 3, 3, 3, 3]
    rs = [r for r in receipts_by(receipts) if r["uri"] == retracted and r["stage"] == "delivery"]
    assert Counter((r["channel"], r["outcome"]) for r in rs if r["outcome"] == "deleted") == {
        ("fanpage", "deleted"): 2,
        ("zalo", "deleted"): 2,
    }
