"""A real Prometheus scrapes a running pipeline: every dashboard query and every alert probe has data.

Started here: the Graph and Zalo emulators (with one server error, one lost answer and one rate
limit), the stream worker (metrics + status view), the fanpage and Zalo adapters, the lag exporter,
and the Debian ``prometheus`` binary on a free loopback port with a temporary TSDB, scraping every
second with infra/prometheus/prometheus.yml and rules.yml (only the intervals and the file_sd
targets are changed). Traffic: the five sample articles, a retraction, two unreadable payloads
(dead letters), a CAP emergency published two minutes ago that no emergency pusher takes, and an
emergency command to a fanpage published 90 s ago.

Then, against the real Prometheus:
- every expression of infra/grafana/lantoa-dashboard.json returns data;
- every rule's ``probe`` annotation (its condition without thresholds, see rules.yml) returns
  data, every rule's ``expr`` is a valid query, and every rule evaluates with health "ok";
- the alerts this traffic must raise are raised (dead letters, the emergency not delivered, the
  emergency delivered late, the page token that expires in an hour);
- each process's /metrics page passes ``promtool check metrics``.
Timings and the query results are kept in test-artifacts/prometheus-e2e.json.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from helpers import SHARED, ce_headers, sample_paths

from infra.kafka import clients
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.cap_ingest import check, headers_for
from producers.client import PublishClient
from producers.targets import load_targets, local_registry
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority, utc_now_iso
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.settings import KafkaConnection, Settings
from schemas.topics import Channel, Topic

ROOT = Path(__file__).resolve().parents[2]
PROM = ROOT / "infra" / "prometheus"
DASHBOARD = ROOT / "infra" / "grafana" / "lantoa-dashboard.json"
CAP_SAMPLE = SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap"
EXPIRING_PAGE = "100000000000002"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return bytes(resp.read())


class Prometheus:
    """The real prometheus binary on a free port, scraping the given targets every second."""

    def __init__(self, workdir: Path, targets: dict[str, list[str]]) -> None:
        exe = shutil.which("prometheus")
        assert exe, "prometheus not found: install the Debian package prometheus (infra/system-deps.sh)"
        workdir.mkdir(parents=True)
        config = yaml.safe_load((PROM / "prometheus.yml").read_text())
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        (workdir / "targets").mkdir()
        for job in config["scrape_configs"]:
            (files,) = [c["files"] for c in job["file_sd_configs"]]
            for f in files:
                groups = (
                    [{"targets": targets[job["job_name"]], "labels": {}}]
                    if job["job_name"] in targets
                    else []
                )
                (workdir / f).write_text(json.dumps(groups))
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        shutil.copy(PROM / "rules.yml", workdir / "rules.yml")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = (workdir / "prometheus.log").open("wb")
        self.proc = subprocess.Popen(
            [
                exe,
                f"--config.file={workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1d",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while True:
            assert self.proc.poll() is None, f"prometheus exited; see {workdir / 'prometheus.log'}"
            try:
                if get(self.url + "/-/ready", 2).strip():
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "prometheus not ready after 30 s"
            time.sleep(0.2)

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        body = json.loads(get(f"{self.url}/api/v1/{path}" + (f"?{query}" if query else "")))
        assert body["status"] == "success", body
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        return list(data["result"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._log.close()


def dashboard_exprs() -> list[tuple[str, str]]:
    dash = json.loads(DASHBOARD.read_text())
    return [
        (f"panel {p['title']!r} {t['refId']}", t["expr"])
        for p in dash["panels"]
        for t in p.get("targets", [])
    ]


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load((PROM / "rules.yml").read_text())
    return [r for g in doc["groups"] for r in g["rules"]]


def emergency_cap(published: datetime) -> tuple[str, bytes]:
    """The sample CAP storm warning, made unique and current."""
    identifier = f"VN-TEST-{uuid.uuid4().hex[:8].upper()}"
    text = CAP_SAMPLE.read_text(encoding="utf-8").replace("VN-NCHMF-2026-0917-BAO05-01", identifier)
    local = published.astimezone(timezone(timedelta(hours=7)))
    for old, new in (
        ("2026-09-17T05:30:00+07:00", local.isoformat(timespec="seconds")),
        ("2026-09-18T05:30:00+07:00", (local + timedelta(hours=6)).isoformat(timespec="seconds")),
    ):
        text = text.replace(old, new)
    return identifier, text.encode("utf-8")


@pytest.mark.timeout(420)
def test_every_dashboard_query_and_alert_probe_has_data_on_a_real_prometheus(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    timings: dict[str, float] = {}
    emus = Emulators(tmp_path / "emu", DEFAULT_TARGETS_FILE)
    # One page token expires within the hour: LantoaTokenExpiringSoon must see it.
    tokens_file = Path(emus.env["LANTOA_FANPAGE_TOKENS_FILE"])
    tokens = orjson.loads(tokens_file.read_bytes())
    tokens[f"{EXPIRING_PAGE}:expires_at"] = str(time.time() + 3600)
    tokens_file.write_bytes(orjson.dumps(tokens))
    for which, path, extra in (("graph", "/feed$", {}), ("zalo", "/group/message$", {"code": -1})):
        emus.control(
            which,
            "POST",
            "/_control/faults",
            {
                "faults": [
                    {"kind": "server_error", "path": path, "count": 1, **extra},
                    {"kind": "drop_after_effect", "path": path, "count": 1},
                    {
                        "kind": "rate_limit",
                        "path": path,
                        "count": 1,
                        **({"regain_minutes": 0.02} if which == "graph" else {}),
                    },
                ]
            },
        )
    prefix = f"p{uuid.uuid4().hex[:6]}."
    ports = {name: free_port() for name in ("streams", "web", "fanpage", "zalo", "lag")}
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_DATA_DIR": str(tmp_path / "data"),
        "LANTOA_RETRY_DELAYS": "10s=1,1m=2,10m=4",
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_HTTP_TIMEOUT_S": "3",
        "LANTOA_EMBARGO_CHECK_INTERVAL_S": "0.5",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)

    def with_ports(metrics_port: int, web_port: int = 0) -> dict[str, str]:
        return {**env, "LANTOA_METRICS_PORT": str(metrics_port), "LANTOA_WEB_PORT": str(web_port)}

    procs = {
        "streams": Proc(
            "streams", ["worker"], with_ports(ports["streams"], ports["web"]), tmp_path / "streams.log"
        ),
        "fanpage": Proc(
            "fanpage", ["adapter", "fanpage"], with_ports(ports["fanpage"]), tmp_path / "fanpage.log"
        ),
        "zalo": Proc("zalo", ["adapter", "zalo"], with_ports(ports["zalo"]), tmp_path / "zalo.log"),
    }
    lag_log = (tmp_path / "lag.log").open("wb")
    lag = subprocess.Popen(
        [sys.executable, "-m", "producers.lag_exporter", "--interval", "1", "--port", str(ports["lag"])],
        cwd=ROOT,
        env=with_ports(ports["lag"]),
        stdout=lag_log,
        stderr=subprocess.STDOUT,
    )
    prom = Prometheus(
        tmp_path / "prometheus",
        {
            "lantoa-streams": [f"127.0.0.1:{ports['streams']}"],
            "lantoa-adapter-fanpage": [f"127.0.0.1:{ports['fanpage']}"],
            "lantoa-adapter-zalo": [f"127.0.0.1:{ports['zalo']}"],
            "lantoa-lag-exporter": [f"127.0.0.1:{ports['lag']}"],
        },
    )
    timings["started_s"] = time.monotonic() - started
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    results: dict[str, Any] = {}

    def alive() -> None:
        for p in procs.values():
            assert p.alive(), f"{p.name} died; see {tmp_path / (p.name + '.log')}"
        assert lag.poll() is None, f"the lag exporter died; see {tmp_path / 'lag.log'}"

    def wait(predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            alive()
            assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
            time.sleep(0.5)

    def all_receipts() -> list[dict[str, Any]]:
        receipts.poll()
        return [orjson.loads(r.value) for r in receipts.records]

    try:
        # Every target up before traffic, so counters are seen before and after they move.
        wait(
            lambda: len([t for t in prom.api("targets")["activeTargets"] if t["health"] == "up"]) == 4,
            60,
            "Prometheus to scrape the four processes",
        )
        docs = [orjson.loads(p.read_bytes()) for p in sample_paths()]
        now = datetime.now(UTC)
        with PublishClient(settings) as client:
            bad_headers = [(k, v.encode()) for k, v in ce_headers().items()]
            client.send_raw(b"urn:lantoa:test:unreadable-1", b"{not json", bad_headers)
            for path in sample_paths():
                client.publish(path.read_bytes())
            # An emergency published 90 s ago that the fanpage adapter delivers now: late.
            late = Command(
                IdempotencyKey(
                    f"urn:lantoa:test:late-{prefix}",
                    1,
                    Channel.FANPAGE,
                    "fanpage:thong-tin-chinh-phu",
                    Action.PUBLISH,
                ),
                Priority.EMERGENCY,
                utc_now_iso(),
                {"message": "Khẩn cấp: thử nghiệm", "link": "https://tin.lantoa.example.vn/a/khan-cap"},
                published_at=utc_now_iso(now - timedelta(seconds=90)),
                event_id=str(uuid.uuid4()),
            )
            producer = clients.producer(KafkaConnection(kafka_bootstrap), acks="all")
            producer.send(
                settings.topic(Topic.commands(Channel.FANPAGE)),
                key=late.target.encode(),
                value=encode(late.to_dict()),
            )
            # A CAP emergency published two minutes ago; no emergency pusher runs here, so it waits.
            identifier, cap = emergency_cap(now - timedelta(minutes=2))
            checked = check(cap, local_registry(settings))
            headers = [
                (k, (utc_now_iso(now - timedelta(minutes=2)).encode() if k == "ce_time" else v))
                for k, v in headers_for(checked, "urn:lantoa:test")
            ]
            producer.send(
                settings.topic(Topic.ALERTS_CAP), key=identifier.encode(), value=cap, headers=headers
            )
            producer.flush()
            producer.close()

            uris = {d["uri"] for d in docs}

            def delivered() -> set[tuple[str, str]]:
                return {
                    (r["uri"], r["target"])
                    for r in all_receipts()
                    if r["stage"] == "delivery"
                    and r["outcome"] in ("delivered", "updated")
                    and r["uri"] in uris
                }

            wait(lambda: len(delivered()) >= 24, 180, "the samples at every page and group")
            timings["delivered_s"] = time.monotonic() - started
            client.retract(docs[0]["uri"], "Đính chính: thử nghiệm giám sát")
            wait(
                lambda: (
                    sum(1 for r in all_receipts() if r["uri"] == docs[0]["uri"] and r["outcome"] == "deleted")
                    >= 4
                ),
                120,
                "the retraction at pages and groups",
            )
            # The second unreadable payload raises an existing dead-letter series: an increase.
            client.send_raw(b"urn:lantoa:test:unreadable-2", b"{still not json", bad_headers)
        wait(
            lambda: any(r["uri"] == late.key.uri and r["outcome"] == "delivered" for r in all_receipts()),
            60,
            "the late emergency at its page",
        )
        wait(
            lambda: bool(prom.query('sum(lantoa_dead_letters_total{job="lantoa-streams"}) >= 2')),
            30,
            "Prometheus to see both dead letters",
        )
        wait(
            lambda: bool(prom.query('sum(lantoa_consumer_lag{topic=~".*loudspeaker.commands"}) > 0')),
            30,
            "the lag exporter to report the loudspeaker backlog (no loudspeaker adapter runs here)",
        )
        time.sleep(3)  # a few more scrapes and rule evaluations

        # -- every dashboard expression has data ---------------------------------------------
        empty = []
        for where, expr in dashboard_exprs():
            got = prom.query(expr)
            results[where] = got
            if not got:
                empty.append(f"{where}: {expr}")
        assert empty == [], "dashboard queries without data:\n" + "\n".join(empty)

        # -- every rule: probe has data, expr is valid, evaluation healthy ---------------------
        empty = []
        for rule in rules():
            results[f"probe {rule['alert']}"] = got = prom.query(rule["annotations"]["probe"])
            if not got:
                empty.append(f"{rule['alert']}: {rule['annotations']['probe']}")
            prom.query(rule["expr"])  # raises on a query error
        assert empty == [], "alert probes without data:\n" + "\n".join(empty)
        loaded = {r["name"]: r for g in prom.api("rules")["groups"] for r in g["rules"]}
        assert set(loaded) == {r["alert"] for r in rules()}
        wait(
            lambda: all(r.get("health") == "ok" for g in prom.api("rules")["groups"] for r in g["rules"]),
            10,
            "every rule to evaluate",
        )

        # -- the alerts this traffic must raise --------------------------------------------------
        def alerts() -> dict[str, set[str]]:
            out: dict[str, set[str]] = {}
            for a in prom.api("alerts")["alerts"]:
                out.setdefault(a["labels"]["alertname"], set()).add(a["state"])
            return out

        expected = {
            "LantoaDeadLetters": "firing",
            "LantoaEmergencyNotDelivered": "firing",
            "LantoaEmergencyDeliveredLate": "firing",
            "LantoaTokenExpiringSoon": "pending",
        }
        wait(
            lambda: all(state in alerts().get(name, set()) for name, state in expected.items()),
            30,
            f"alerts {expected}",
        )
        raised: dict[str, list[dict[str, str]]] = {}
        for a in prom.api("alerts")["alerts"]:
            raised.setdefault(a["labels"]["alertname"], []).append(a["labels"])
        # The CAP emergency waits for the emergency pusher and for the archive (it goes to every
        # channel, issue 16): neither runs here. Its Hà Tĩnh post is delivered (late).
        assert sorted(a["channel"] for a in raised["LantoaEmergencyNotDelivered"]) == ["archive", "emergency"]
        assert [a["channel"] for a in raised["LantoaEmergencyDeliveredLate"]] == ["fanpage"]
        assert [a["account"] for a in raised["LantoaTokenExpiringSoon"]] == [EXPIRING_PAGE]
        assert {(a["job"], a["stage"]) for a in raised["LantoaDeadLetters"]} == {
            ("lantoa-streams", "validate")
        }
        assert "LantoaProcessDown" not in raised
        results["alerts"] = prom.api("alerts")["alerts"]

        # -- numbers that must be right, not just present ---------------------------------------
        def value(expr: str) -> float:
            got = prom.query(expr)
            assert len(got) == 1, (expr, got)
            return float(got[0]["value"][1])

        zones = len(checked.plan.zones)
        assert value('max(lantoa_emergency_pending{channel="emergency"})') == zones
        assert value('max(lantoa_emergency_pending_oldest_seconds{channel="emergency"})') >= 120
        assert value('max(lantoa_emergency_pending{channel="fanpage"})') == 0
        assert value('sum(lantoa_deliveries_total{channel="fanpage",outcome="delivered"})') >= 14
        assert value('sum(lantoa_reconciled_total{result="found"})') >= 1
        # Adapters create their series at start, so even the first unknown outcome is an increase.
        assert value("sum(increase(lantoa_outcome_unknown_total[15m]))") > 0
        assert value('lantoa_token_expiry_seconds{token="refresh"}') > 80 * 86400
        assert value(f'lantoa_token_expiry_seconds{{account="{EXPIRING_PAGE}"}}') < 3600
        wait(
            lambda: value(f'sum(lantoa_consumer_lag{{group="{prefix}lantoa-fanpage"}})') == 0,
            30,
            "the fanpage group to have committed everything",
        )

        # -- each process's /metrics page lints clean ---------------------------------------------
        promtool = shutil.which("promtool")
        assert promtool
        for name, port in (
            ("streams", ports["streams"]),
            ("fanpage", ports["fanpage"]),
            ("zalo", ports["zalo"]),
            ("lag", ports["lag"]),
        ):
            page = get(f"http://127.0.0.1:{port}/metrics")
            done = subprocess.run([promtool, "check", "metrics"], input=page, capture_output=True, timeout=60)
            assert done.returncode == 0, f"{name}: {(done.stdout + done.stderr).decode()}"

        # -- the status view behind the worker's web port ----------------------------------------
        status = json.loads(
            get(
                f"http://127.0.0.1:{ports['web']}/articles/{urllib.parse.quote(docs[0]['uri'], safe='')}/status"
            )
        )
        assert status["channels"]["fanpage"]["states"].get("retracted", 0) >= 2
        timings["total_s"] = time.monotonic() - started
    finally:
        receipts.close()
        prom.close()
        for p in procs.values():
            p.stop()
        if lag.poll() is None:
            lag.terminate()
            lag.wait(timeout=15)
        lag_log.close()
        emus.close()
        out = ROOT / "test-artifacts"
        out.mkdir(exist_ok=True)
        (out / "prometheus-e2e.json").write_text(
            json.dumps({"timings": timings, "results": results}, indent=1, ensure_ascii=False, default=str)
        )
    print("prometheus e2e:", timings)
