"""Citizens ask, editors answer: emulated platforms → webhooks → Kafka → triage → answer → adapters.

A sample article is published (stream worker, fanpage and Zalo adapters, emulators); a citizen
comments on its Hà Nội page post and writes in the Hà Nội Zalo group, both signed by the
emulators; forged, replayed and stale webhooks are refused and produce nothing. The comment shows
up as an open question linked to the article; `lantoa answer` posts exactly one reply at the
emulator (also when repeated) and the question closes. The metrics follow, and the table
survives a kill -9 of the triage process.
"""

from __future__ import annotations

import os
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import free_port, lantoa, sample_paths, wait_for

from consumers.delivery.base import article_marker
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.client import PublishClient
from producers.targets import load_targets
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.secrets import write_secret
from schemas.settings import Settings
from schemas.topics import Topic
from streams.engagement.store import read_table

HA_NOI_PAGE, HA_NOI_GROUP = "100000000000002", "g-000000000000000002"
VERIFY_TOKEN, OA_SECRET = "e2e-verify-token", "e2e-oa-secret-key"


def scrape(port: int) -> dict[str, float]:
    """Lantoa's samples summed over labels (the oldest-question age: the largest)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("lantoa_"):
            name, value = line.split("{")[0].split()[0], float(line.rsplit(" ", 1)[1])
            out[name] = (
                max(out.get(name, 0.0), value) if name.endswith("age_seconds") else out.get(name, 0.0) + value
            )
    return out


@pytest.mark.timeout(400)
def test_a_signed_comment_becomes_an_open_question_and_one_answer_closes_it(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    emus = Emulators(tmp_path / "emu", DEFAULT_TARGETS_FILE)
    prefix = f"e{uuid.uuid4().hex[:6]}."
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
    env.pop("LANTOA_METRICS_PORT", None)
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    secrets = tmp_path / "webhook-secrets"
    secrets.mkdir(mode=0o700)
    write_secret(
        secrets / "graph.json",
        {"app_secret": emus.state["graph"]["app_secret"], "verify_token": VERIFY_TOKEN},
    )
    write_secret(secrets / "zalo.json", {"oa_secret_key": OA_SECRET})
    state = tmp_path / "webhooks.json"
    metrics_port = free_port()
    plan = (
        ("streams", ["worker"], env),
        ("fanpage", ["adapter", "fanpage"], env),
        ("zalo", ["adapter", "zalo"], env),
        ("triage", ["triage"], {**env, "LANTOA_METRICS_PORT": str(metrics_port)}),
        (
            "webhooks",
            [
                "webhooks",
                "--port",
                "0",
                "--state-file",
                str(state),
                "--graph-secrets",
                str(secrets / "graph.json"),
                "--zalo-secrets",
                str(secrets / "zalo.json"),
            ],
            env,
        ),
    )
    procs = {name: Proc(name, args, penv, tmp_path / f"{name}.log") for name, args, penv in plan}
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    inbound = TopicTail(settings.kafka, settings.topic(Topic.ENGAGEMENT_INBOUND))
    try:
        path = sample_paths()[0]  # Hà Nội: both fanpages of the province, both Zalo groups
        article = orjson.loads(path.read_bytes())
        uri = article["uri"]
        with PublishClient(settings) as client:
            client.publish(path.read_bytes())

        def delivered() -> bool:
            receipts.poll()
            done = {
                (r["channel"], r["target"])
                for r in (orjson.loads(x.value) for x in receipts.records)
                if r["uri"] == uri and r["stage"] == "delivery" and r["outcome"] == "delivered"
            }
            return ("fanpage", "fanpage:ha-noi") in done and ("zalo", "zalo:nhom-ha-noi") in done

        wait_for(delivered, 150, "the sample article at the Hà Nội page and group", procs)
        url = wait_for(
            lambda: state.exists() and orjson.loads(state.read_bytes())["url"],
            60,
            "the webhook receiver",
            procs,
        )
        emus.control(
            "graph",
            "POST",
            "/_control/webhooks/subscribe",
            {"url": f"{url}/webhooks/facebook", "verify_token": VERIFY_TOKEN},
        )
        emus.control(
            "zalo",
            "POST",
            "/_control/webhooks/subscribe",
            {"url": f"{url}/webhooks/zalo", "oa_secret_key": OA_SECRET},
        )
        posts = emus.control("graph", "GET", f"/_control/posts?page_id={HA_NOI_PAGE}")["posts"]
        [post] = [p for p in posts if article_marker(uri) in (p["message"] or "")]

        # Forged: refused, nothing produced.
        question = "Bao giờ phường mình được hỗ trợ cài đặt VNeID tại nhà?"
        forged = emus.control(
            "graph",
            "POST",
            "/_control/webhooks/comment",
            {"post_id": post["id"], "message": question, "signature": "bad"},
        )
        unsigned = emus.control(
            "zalo",
            "POST",
            "/_control/webhooks/user_message",
            {"group_id": HA_NOI_GROUP, "text": "Ở đâu?", "signature": "missing"},
        )
        assert (forged["status"], unsigned["status"]) == (403, 401)

        # Signed: acknowledged fast and produced once; replays and stale timestamps refused.
        comment = emus.control(
            "graph",
            "POST",
            "/_control/webhooks/comment",
            {"post_id": post["id"], "message": question, "from": {"id": "6001", "name": "Trần Thị Bình"}},
        )
        assert comment["status"] == 200 and comment["elapsed_s"] < 2.0
        assert emus.control("graph", "POST", "/_control/webhooks/replay", {})["status"] == 200
        message = emus.control(
            "zalo",
            "POST",
            "/_control/webhooks/user_message",
            {"group_id": HA_NOI_GROUP, "text": "Thủ tục đăng ký làm ở đâu ạ", "sender_id": "8421"},
        )
        assert message["status"] == 200 and message["elapsed_s"] < 2.0
        assert emus.control("zalo", "POST", "/_control/webhooks/replay", {})["status"] == 200
        stale = emus.control(
            "zalo",
            "POST",
            "/_control/webhooks/user_message",
            {"group_id": HA_NOI_GROUP, "text": "Cũ rồi?", "timestamp_ms": int((time.time() - 3600) * 1000)},
        )
        assert stale["status"] == 401
        thanks = emus.control(
            "graph",
            "POST",
            "/_control/webhooks/comment",
            {"post_id": post["id"], "message": "Cảm ơn UBND đã thông tin!", "from": {"id": "6002"}},
        )
        assert thanks["status"] == 200

        # Triage: linked to the article and its targets; the thanks is a comment, not a question.
        def table() -> dict[str, dict[str, Any]]:
            return {r["comment_id"]: r for r in read_table(settings).values()}

        rows = wait_for(
            lambda: (t := table()) and len(t) == 3 and t, 60, "three records in engagement.questions", procs
        )
        fb, zl, thx = rows[comment["comment_id"]], rows[message["msg_id"]], rows[thanks["comment_id"]]
        assert (fb["state"], fb["article_uri"], fb["target"], fb["link"], fb["post_id"]) == (
            "open",
            uri,
            "fanpage:ha-noi",
            "post",
            post["id"],
        )
        assert (fb["text"], fb["sender_name"]) == (question, "Trần Thị Bình")
        assert (zl["state"], zl["article_uri"], zl["target"], zl["link"], zl["signal"]) == (
            "open",
            uri,
            "zalo:nhom-ha-noi",
            "recent",
            "ở đâu",
        )
        assert (thx["state"], thx["question"]) == ("comment", False)
        listed = lantoa(env, "questions", "--open", "--article", uri, "--json")
        assert listed.returncode == 0, listed.stderr
        assert sorted(q["id"] for q in orjson.loads(listed.stdout)) == sorted([fb["id"], zl["id"]])
        # The gauge follows the table once the batch is committed: read it as Prometheus would, until it agrees.
        assert wait_for(
            lambda: scrape(metrics_port)["lantoa_open_questions"] == 2.0, 10, "two open questions", procs
        )
        assert scrape(metrics_port)["lantoa_oldest_open_question_age_seconds"] > 0

        # Answer the fanpage question: one reply, even when the editor runs the command twice.
        answer = "Phường hỗ trợ tại nhà vào sáng thứ Bảy; đăng ký qua tổ trưởng tổ dân phố."
        first = lantoa(env, "answer", fb["id"], answer, "--json")
        assert first.returncode == 0, first.stdout + first.stderr
        receipt = orjson.loads(first.stdout)
        assert receipt["outcome"] == "delivered" and receipt["reply_id"]
        again = lantoa(env, "answer", fb["id"][:8], answer, "--json")
        assert again.returncode == 0, again.stdout + again.stderr
        assert orjson.loads(again.stdout)["reply_id"] == receipt["reply_id"]
        closed = wait_for(
            lambda: (r := table()[comment["comment_id"]])["state"] == "answered" and r,
            60,
            "the fanpage question closed",
            procs,
        )
        assert (closed["answer_id"], closed["answer_text"], closed["answer_version"]) == (
            receipt["reply_id"],
            answer,
            1,
        )
        third = lantoa(env, "answer", fb["id"], "Một câu trả lời khác", "--json")
        assert third.returncode == 0 and orjson.loads(third.stdout)["sent"] is False

        # The table survives a crash of the triage process: one question still open after kill -9.
        procs["triage"].kill9()
        procs["triage"].restart()

        def open_after_restart() -> float | None:
            try:
                return scrape(metrics_port).get("lantoa_open_questions")  # absent until the table is loaded
            except OSError:
                return None

        assert wait_for(lambda: open_after_restart() == 1.0, 60, "the restarted triage process", procs)

        # Answer the Zalo question: one message to the group, quoting the question.
        zanswer = "Đăng ký tại bộ phận một cửa UBND phường, sáng thứ Hai đến thứ Sáu."
        zfirst = lantoa(env, "answer", zl["id"], zanswer, "--json")
        assert zfirst.returncode == 0, zfirst.stdout + zfirst.stderr
        wait_for(
            lambda: table()[message["msg_id"]]["state"] == "answered", 60, "the Zalo question closed", procs
        )
        assert wait_for(
            lambda: scrape(metrics_port)["lantoa_open_questions"] == 0.0, 10, "no open question", procs
        )
        assert scrape(metrics_port)["lantoa_oldest_open_question_age_seconds"] == 0.0

        # Nothing forged, replayed, stale or echoed (the page's own reply) was produced.
        inbound.poll()
        keys = sorted(r.key.decode() for r in inbound.records)
        assert keys == sorted(
            [f"fb:{comment['comment_id']}", f"fb:{thanks['comment_id']}", f"zalo:{message['msg_id']}"]
        )
    finally:
        for p in procs.values():
            p.stop()
        replies = emus.control("graph", "GET", "/_control/replies")["replies"]
        group = emus.control("zalo", "GET", f"/_control/messages?recipient={HA_NOI_GROUP}")["messages"]
        receipts.close()
        inbound.close()
        emus.close()

    assert [(r["parent_id"], r["message"]) for r in replies] == [(comment["comment_id"], answer)]
    answers = [m["text"] for m in group if zanswer in (m["text"] or "")]
    assert len(answers) == 1 and answers[0].startswith("Trả lời câu hỏi «Thủ tục đăng ký làm ở đâu ạ»")
