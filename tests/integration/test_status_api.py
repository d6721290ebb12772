"""The status view on a real broker: a stream worker with LANTOA_WEB_PORT, fed by what the stream app
produces (routing, retractions, the emergency lane) and by delivery receipts as adapters write them.

Checks GET /articles/{uri}/status through the states, its filters and errors, the emergency watch
on /metrics, `lantoa status` (HTTP and --kafka agree), and that a restarted worker rebuilds the
same view from the topics (last: a restart delays the stream app by a rebalance).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from helpers import SHARED, sample_paths

from infra.kafka import clients
from infra.kafka.topics import apply_topics
from infra.local.stack import Proc
from producers.cap_ingest import check, headers_for
from producers.client import PublishClient
from producers.targets import load_targets, local_registry
from schemas.codec import encode
from schemas.emergency import emergency_command_id
from schemas.models import Receipt, utc_now_iso
from schemas.settings import KafkaConnection, Settings
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class StatusWorker:
    """A stream worker with the status view on a free port, on its own topic prefix."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        prefix = f"st{uuid.uuid4().hex[:6]}."
        self.web, self.metrics = free_port(), free_port()
        self.env = {
            **os.environ,
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_WEB_PORT": str(self.web),
            "LANTOA_METRICS_PORT": str(self.metrics),
            "LANTOA_DATA_DIR": str(tmp / "data"),
            "LANTOA_EMBARGO_CHECK_INTERVAL_S": "0.5",
        }
        self.settings = Settings.from_env(self.env)
        apply_topics(self.settings)
        load_targets(self.settings)
        self.tmp = tmp
        self.proc = Proc("streams", ["worker"], self.env, tmp / "worker.log")
        self.producer = clients.producer(KafkaConnection(bootstrap), acks="all")
        self.base = f"http://127.0.0.1:{self.web}"

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def status(self, uri: str, query: str = "") -> tuple[int, Any]:
        return self.get(f"/articles/{urllib.parse.quote(uri, safe='')}/status{query}")

    def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 90.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.alive(), f"the worker died; see {self.tmp / 'worker.log'}"
            try:
                got = predicate()
            except (OSError, KeyError):
                got = None
            if got:
                return got
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.3)

    def ready(self) -> None:
        self.wait(lambda: self.get("/healthz")[1]["caught_up"], "the status view to catch up")

    def send_receipt(self, receipt: Receipt) -> None:
        self.producer.send(
            self.settings.topic(Topic.RECEIPTS), key=receipt.uri.encode(), value=encode(receipt.to_dict())
        )
        self.producer.flush()

    def metric(self, name: str, **labels: str) -> float:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics}/metrics", timeout=10) as resp:
            page = resp.read().decode()
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in page.splitlines():
            if line.startswith(f"{name}{{{want}}} "):
                return float(line.split()[-1])
        raise KeyError(f"{name}{{{want}}} not on the page")

    def restart(self) -> None:
        self.proc.stop()
        self.proc = Proc("streams", ["worker"], self.env, self.tmp / "worker.log")

    def close(self) -> None:
        self.producer.close()
        self.proc.stop()


@pytest.fixture(scope="module")
def worker(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[StatusWorker]:
    w = StatusWorker(kafka_bootstrap, tmp_path_factory.mktemp("status"))
    try:
        w.ready()
        yield w
    finally:
        w.close()


def targets(view: dict[str, Any], channel: str) -> dict[str, dict[str, Any]]:
    return {t["target"]: t for t in view["channels"][channel]["targets"]}


def delivery(view: dict[str, Any], channel: str, target: str, outcome: str, **extra: Any) -> Receipt:
    t = targets(view, channel)[target]
    return Receipt(
        uri=view["uri"],
        stage="delivery",
        outcome=outcome,
        at=utc_now_iso(),
        version=t["version"],
        channel=channel,
        target=target,
        command_id=t["command_id"],
        **extra,
    )


def test_status_follows_an_article_through_delivery_states_and_retraction(worker: StatusWorker) -> None:
    doc = orjson.loads(sample_paths()[0].read_bytes())
    uri = doc["uri"]
    code, body = worker.status(uri)
    assert code == 404 and body["error"] == "unknown article" and body["view"]["caught_up"] is True

    with PublishClient(worker.settings) as client:
        client.publish(sample_paths()[0].read_bytes())
        view = worker.wait(
            lambda: (lambda r: r[1] if r[0] == 200 and "fanpage" in r[1]["channels"] else None)(
                worker.status(uri)
            ),
            "the routed article",
        )
        assert view["state"] == "routed" and view["version"] == 1 and view["title"]
        routed = [e for e in view["events"] if e["outcome"] == "routed"]
        assert len(routed) == 1
        for ch, entry in view["channels"].items():
            # every commanded target is listed, pending, with the publish time of the CMS
            assert (
                entry["expected"]
                == routed[0]["counts"][ch]
                == len(entry["targets"])
                == entry["states"]["pending"]
            )
        fan = sorted(targets(view, "fanpage"))
        zalo = sorted(targets(view, "zalo"))
        assert len(fan) >= 2 and len(zalo) >= 1
        assert all(
            t["published_at"] and t["action"] == "publish" for t in view["channels"]["fanpage"]["targets"]
        )

        # Outcomes as the adapters write them.
        worker.send_receipt(
            delivery(view, "fanpage", fan[0], "retrying", reason="rate limited (retry in 10s)")
        )
        worker.send_receipt(delivery(view, "fanpage", fan[0], "delivered", external_id="100000000000001_777"))
        worker.send_receipt(
            delivery(view, "fanpage", fan[1], "unknown", reason="outcome unknown: timeout (retry in 10s)")
        )
        worker.send_receipt(delivery(view, "zalo", zalo[0], "failed", reason="Zalo error -213: not a member"))

        def settled() -> dict[str, Any] | None:
            v = worker.status(uri)[1]
            return (
                v
                if targets(v, "fanpage")[fan[0]]["state"] == "delivered"
                and targets(v, "zalo")[zalo[0]]["state"] == "failed"
                else None
            )

        view = worker.wait(settled, "the delivery receipts in the view")
        t = targets(view, "fanpage")[fan[0]]
        assert (t["external_id"], t["live_version"], t["reason"]) == ("100000000000001_777", 1, None) and t[
            "delivered_at"
        ]
        assert targets(view, "fanpage")[fan[1]]["state"] == "unknown"
        assert targets(view, "zalo")[zalo[0]]["reason"] == "Zalo error -213: not a member"
        assert view["channels"]["fanpage"]["states"]["delivered"] == 1

        code, narrowed = worker.status(uri, "?channel=fanpage&state=delivered")
        assert code == 200 and list(narrowed["channels"]) == ["fanpage"]
        assert [t["target"] for t in narrowed["channels"]["fanpage"]["targets"]] == [fan[0]]
        assert worker.status(uri, "?state=lost")[0] == 400

        client.retract(uri, "Đính chính")
        view = worker.wait(
            lambda: (lambda v: v if v["state"] == "retracted" else None)(worker.status(uri)[1]),
            "the retraction in the view",
        )
        t = targets(view, "fanpage")[fan[0]]
        assert (t["state"], t["action"], t["live_version"]) == ("pending", "retract", 1)
        worker.send_receipt(delivery(view, "fanpage", fan[0], "deleted", external_id="100000000000001_777"))
        view = worker.wait(
            lambda: (lambda v: v if targets(v, "fanpage")[fan[0]]["state"] == "retracted" else None)(
                worker.status(uri)[1]
            ),
            "the deletion in the view",
        )
        assert targets(view, "fanpage")[fan[0]]["live_version"] is None

    # `lantoa status`: the table from the worker, and the same states read from Kafka directly.
    env = {**worker.env}
    out = subprocess.run(
        [sys.executable, "-m", "producers.cli", "status", uri, "--channel", "fanpage"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert (
        uri in out.stdout
        and fan[0] in out.stdout
        and "retracted" in out.stdout
        and "100000000000001_777" in out.stdout
    )
    direct = subprocess.run(
        [sys.executable, "-m", "producers.cli", "status", uri, "--kafka", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert direct.returncode == 0, direct.stderr
    from_kafka = json.loads(direct.stdout)
    latest = worker.status(uri)[1]
    assert {ch: e["states"] for ch, e in from_kafka["channels"].items()} == {
        ch: e["states"] for ch, e in latest["channels"].items()
    }
    assert targets(from_kafka, "fanpage") == targets(latest, "fanpage")
    missing = subprocess.run(
        [sys.executable, "-m", "producers.cli", "status", "urn:lantoa:article:none"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "unknown article" in missing.stderr


def test_emergency_watch_counts_zones_until_the_pusher_reports_them(worker: StatusWorker) -> None:
    published = datetime.now(UTC) - timedelta(seconds=75)
    identifier = f"VN-TEST-{uuid.uuid4().hex[:8].upper()}"
    cap = (SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_text(encoding="utf-8")
    cap_bytes = cap.replace("VN-NCHMF-2026-0917-BAO05-01", identifier).encode("utf-8")
    checked = check(cap_bytes, local_registry(worker.settings))
    zones = sorted(z.id for z in checked.plan.zones)
    assert checked.plan.lane == "emergency" and zones
    headers = [
        (k, utc_now_iso(published).encode() if k == "ce_time" else v)
        for k, v in headers_for(checked, "urn:lantoa:test")
    ]
    worker.producer.send(
        worker.settings.topic(Topic.ALERTS_CAP), key=identifier.encode(), value=cap_bytes, headers=headers
    )
    worker.producer.flush()

    uri = f"urn:lantoa:cap:{identifier}"
    worker.wait(
        lambda: worker.metric("lantoa_emergency_pending", channel="emergency") == len(zones),
        "the emergency in the watch",
        timeout=120,
    )
    assert worker.metric("lantoa_emergency_pending_oldest_seconds", channel="emergency") >= 75
    view = worker.status(uri)[1]
    assert view["channels"]["emergency"]["expected"] == len(zones)
    assert sorted(targets(view, "emergency")) == zones
    assert all(
        t["priority"] == "emergency" and t["state"] == "pending" for t in targets(view, "emergency").values()
    )

    for zone in zones:  # what the emergency pusher reports per zone
        worker.producer.send(
            worker.settings.topic(Topic.RECEIPTS),
            key=uri.encode(),
            value=encode(
                Receipt(
                    uri=uri,
                    stage="delivery",
                    outcome="delivered",
                    at=utc_now_iso(),
                    version=1,
                    channel="emergency",
                    target=zone,
                    command_id=emergency_command_id(identifier, zone, "start"),
                ).to_dict()
            ),
        )
    worker.producer.flush()
    worker.wait(
        lambda: worker.metric("lantoa_emergency_pending", channel="emergency") == 0, "the zones to settle"
    )
    assert worker.metric("lantoa_emergency_pending_oldest_seconds", channel="emergency") == 0
    assert worker.status(uri)[1]["channels"]["emergency"]["states"] == {"delivered": len(zones)}
    recent = worker.get("/articles?limit=5")[1]["articles"]
    assert uri in [a["uri"] for a in recent] and all(
        "targets" not in e for a in recent for e in a["channels"].values()
    )


def test_a_restarted_worker_rebuilds_the_same_view_from_the_topics(worker: StatusWorker) -> None:
    # Runs last: the other tests need the stream app itself, which a restart delays (rebalance).
    recent = worker.get("/articles?limit=500")[1]["articles"]
    assert len(recent) >= 2
    before = {a["uri"]: {k: v for k, v in worker.status(a["uri"])[1].items() if k != "view"} for a in recent}
    worker.restart()
    worker.ready()
    after = {uri: {k: v for k, v in worker.status(uri)[1].items() if k != "view"} for uri in before}
    assert after == before
