"""Lantoa on a secured cluster: one broker with an SSL listener (client certificates required),
one with SASL_SSL (SCRAM-SHA-512); certificates made by openssl during the test, with the SAN
127.0.0.1/localhost the clients check.

Over each: the CLI (topics apply, targets load, publish, status --kafka, questions) and the
long-running processes do real work: the worker and the fanpage, zalo, loudspeaker and archive adapters
deliver an article to the emulated platforms (receipts read back over the same connection), the
CAP endpoint takes an alert that the emergency lane pre-empts, webhooks take a signed comment that
triage turns into a question, the lag exporter reads the groups' offsets; the archive adapter
writes to a real S3 server (versitygw). A wrong SASL password, an unknown CA
and a protocol that does not match the listener stop a process at start, non-zero, within seconds,
with one line naming the variable to check and never the password.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from helpers import SHARED, lantoa, sample_paths

from consumers.delivery.base import article_marker
from infra.kafka.tail import TopicTail
from infra.local.kafka.broker import KafkaBroker
from infra.local.kafka.listener import SecuredListener
from infra.local.kafka.tls import CertificateSet, make_ca, make_test_certificates
from infra.local.s3.__main__ import write_credentials_file
from infra.local.s3.versitygw import S3Server, VersitygwError, build_versitygw
from infra.local.stack import Emulators, Proc
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.secrets import write_secret
from schemas.settings import Settings
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[2]
USER, PASSWORD = "lantoa", "s3cret-for-the-test"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_test_certificates(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def ssl_broker(certs: CertificateSet) -> Iterator[KafkaBroker]:
    with KafkaBroker(secured=SecuredListener("SSL", certs, require_client_cert=True)) as broker:
        yield broker


@pytest.fixture(scope="module")
def sasl_broker(certs: CertificateSet) -> Iterator[KafkaBroker]:
    with KafkaBroker(secured=SecuredListener("SASL_SSL", certs, scram_users={USER: PASSWORD})) as broker:
        yield broker


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A versitygw for the archive adapter; its LANTOA_S3_* variables."""
    try:
        build_versitygw()
    except VersitygwError as exc:  # a failure, never a skip
        pytest.fail(f"versitygw could not be built: {exc}")
    with S3Server() as server:
        creds = tmp_path_factory.mktemp("s3") / "credentials"
        write_credentials_file(creds, server.access_key, server.secret_key)
        yield {
            "LANTOA_S3_ENDPOINT": server.endpoint_url,
            "LANTOA_S3_BUCKET": "lantoa-archive",
            "LANTOA_S3_REGION": server.region,
            "LANTOA_S3_CREDENTIALS_FILE": str(creds),
            "LANTOA_S3_ADDRESSING_STYLE": "path",
        }


def ssl_env(broker: KafkaBroker, certs: CertificateSet) -> dict[str, str]:
    return {
        "LANTOA_KAFKA_BOOTSTRAP": broker.secured_bootstrap,
        "LANTOA_SECURITY_PROTOCOL": "SSL",
        "LANTOA_SSL_CAFILE": str(certs.ca.cert),
        "LANTOA_SSL_CERTFILE": str(certs.client.cert),
        "LANTOA_SSL_KEYFILE": str(certs.client.key),
    }


def sasl_env(
    broker: KafkaBroker, certs: CertificateSet, tmp: Path, password: str = PASSWORD
) -> dict[str, str]:
    secret = tmp / f"kafka-password-{uuid.uuid4().hex[:6]}"
    write_secret(secret, (password + "\n").encode())
    return {
        "LANTOA_KAFKA_BOOTSTRAP": broker.secured_bootstrap,
        "LANTOA_SECURITY_PROTOCOL": "SASL_SSL",
        "LANTOA_SASL_MECHANISM": "SCRAM-SHA-512",
        "LANTOA_SASL_USERNAME": USER,
        "LANTOA_SASL_PASSWORD_FILE": str(secret),
        "LANTOA_SSL_CAFILE": str(certs.ca.cert),
    }


def receipts(tail: TopicTail) -> list[dict[str, Any]]:
    tail.poll()
    return [orjson.loads(r.value) for r in tail.records]


HA_NOI_PAGE = "100000000000002"
TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()  # the sample alert's own day, moved to today
TYPHOON = (
    (SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap")
    .read_bytes()
    .replace(b"2026-09-18", (TODAY + timedelta(days=1)).isoformat().encode())
    .replace(b"2026-09-17", TODAY.isoformat().encode())
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(predicate: Callable[[], Any], timeout: float, what: str, procs: dict[str, Proc], tmp: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        dead = [n for n, p in procs.items() if not p.alive()]
        if dead or time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {n}\n" + (tmp / f"{n}.log").read_text(errors="replace")[-1500:] for n in procs
            )
            raise AssertionError(f"timed out waiting for {what} (dead: {dead})\n{logs}")
        time.sleep(0.5)


CAP_TOKEN = uuid.uuid4().hex + uuid.uuid4().hex  # the alert-server's sender token (LANTOA_CAP_TOKEN)


def post_cap(url: str, body: bytes) -> Any:
    headers = {"Content-Type": "application/xml", "Authorization": f"Bearer {CAP_TOKEN}"}
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return orjson.loads(resp.read())
    except (ConnectionRefusedError, urllib.error.URLError):
        return None  # not listening yet: the caller asks again


def everything_over(kafka_env: dict[str, str], s3_env: dict[str, str], tmp: Path) -> None:
    """The CLI and every long-running process doing real work over ``kafka_env``."""
    emus = Emulators(tmp / "emu", DEFAULT_TARGETS_FILE)
    prefix = f"sec{uuid.uuid4().hex[:6]}."
    env = {
        **os.environ,
        **kafka_env,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_WEB_PORT": "0",
        "LANTOA_DATA_DIR": str(tmp / "data"),
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_EMERGENCY_REPEAT_S": "60",
        "LANTOA_S3_PREFIX": prefix.rstrip(".") + "/",
        **s3_env,
        **emus.env,
    }
    env.pop("LANTOA_METRICS_PORT", None)
    settings = Settings.from_env(env)
    graph = tmp / "graph.json"
    write_secret(graph, {"app_secret": emus.state["graph"]["app_secret"], "verify_token": "sec-verify"})
    hooks, cap_port = tmp / "webhooks.json", free_port()
    procs: dict[str, Proc] = {}
    tail: TopicTail | None = None
    try:
        for args in (("topics", "apply"), ("targets", "load")):
            done = lantoa(env, *args)
            assert done.returncode == 0, done.stderr
        plan = {
            "streams": ["worker"],
            "fanpage": ["adapter", "fanpage"],
            "zalo": ["adapter", "zalo"],
            "loudspeaker": ["adapter", "loudspeaker"],
            "archive": ["adapter", "archive"],
            "emergency": ["adapter", "emergency"],
            "triage": ["triage"],
            "webhooks": [
                "webhooks",
                "--port",
                "0",
                "--state-file",
                str(hooks),
                "--graph-secrets",
                str(graph),
            ],
            "alert-server": ["alert-server", "--port", str(cap_port)],
        }
        own = {"alert-server": {**env, "LANTOA_CAP_TOKEN": CAP_TOKEN}}
        procs = {
            name: Proc(name, args, own.get(name, env), tmp / f"{name}.log") for name, args in plan.items()
        }
        sample = sample_paths()[0]  # Hà Nội: its fanpages, Zalo groups and loudspeaker zones
        uri = orjson.loads(sample.read_bytes())["uri"]
        published = lantoa(env, "publish", str(sample))
        assert published.returncode == 0, published.stderr
        tail = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
        reader = tail

        def delivered() -> set[str]:
            got = {
                r["channel"]
                for r in receipts(reader)
                if r["uri"] == uri and r["stage"] == "delivery" and r["outcome"] == "delivered"
            }
            return got if got >= {"fanpage", "zalo", "loudspeaker", "archive"} else set()

        wait(delivered, 120, "the article at pages, groups, loudspeakers and the archive", procs, tmp)
        status = lantoa(env, "status", uri, "--kafka", "--json")
        assert status.returncode == 0 and "delivered" in status.stdout, status.stderr

        # The CAP endpoint produces, the worker's alert lane plans, the emergency lane pre-empts.
        accepted = wait(
            lambda: post_cap(f"http://127.0.0.1:{cap_port}/cap", TYPHOON), 30, "the CAP endpoint", procs, tmp
        )
        assert accepted["accepted"] is True
        wait(
            lambda: any(
                r.get("channel") == "emergency" and r["outcome"] == "delivered" for r in receipts(reader)
            ),
            60,
            "an emergency receipt",
            procs,
            tmp,
        )

        # Webhooks produce a signed comment; triage turns it into an open question.
        url = wait(
            lambda: hooks.exists() and orjson.loads(hooks.read_bytes())["url"], 30, "the webhooks", procs, tmp
        )
        emus.control(
            "graph",
            "POST",
            "/_control/webhooks/subscribe",
            {"url": f"{url}/webhooks/facebook", "verify_token": "sec-verify"},
        )
        posts = emus.control("graph", "GET", f"/_control/posts?page_id={HA_NOI_PAGE}")["posts"]
        [post] = [p for p in posts if article_marker(uri) in (p["message"] or "")]
        comment = emus.control(
            "graph",
            "POST",
            "/_control/webhooks/comment",
            {"post_id": post["id"], "message": "Bao giờ phường mình được hỗ trợ?", "from": {"id": "6001"}},
        )
        assert comment["status"] == 200

        def questions() -> Any:
            listed = lantoa(env, "questions", "--open", "--article", uri, "--json")
            assert listed.returncode == 0, listed.stderr
            return orjson.loads(listed.stdout)

        wait(questions, 60, "the comment as an open question", procs, tmp)

        # The lag exporter reads group offsets over the same connection.
        lag = subprocess.run(
            [sys.executable, "-m", "producers.lag_exporter", "--once"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert lag.returncode == 0 and f"{prefix}streams" in lag.stdout, lag.stdout + lag.stderr
    finally:
        if tail is not None:
            tail.close()
        for p in procs.values():
            p.stop()
        emus.close()


@pytest.mark.timeout(300)
def test_cli_and_every_process_work_over_sasl_ssl_scram(
    sasl_broker: KafkaBroker, certs: CertificateSet, s3: dict[str, str], tmp_path: Path
) -> None:
    everything_over(sasl_env(sasl_broker, certs, tmp_path), s3, tmp_path)
    assert PASSWORD not in sasl_broker.log_file.read_text(
        errors="replace"
    )  # the format step logs no password


@pytest.mark.timeout(300)
def test_cli_and_every_process_work_over_mutual_tls(
    ssl_broker: KafkaBroker, certs: CertificateSet, s3: dict[str, str], tmp_path: Path
) -> None:
    everything_over(ssl_env(ssl_broker, certs), s3, tmp_path)


def start_and_wait(env: dict[str, str], args: list[str], timeout: float = 30) -> tuple[int, str]:
    """Start a long-running process, expect it to exit by itself; (exit code, its output)."""
    module = ["producers.lag_exporter"] if args[:1] == ["lag-exporter"] else ["producers.cli", *args[:1]]
    proc = subprocess.Popen(
        [sys.executable, "-m", *module, *args[1:]],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(
            f"lantoa {' '.join(args)} still running after {timeout} s:\n{out[-3000:]}"
        ) from None
    return proc.returncode, out


# Long-running processes exit 78 (EX_CONFIG); the other CLI commands print the line and exit 2.
REFUSED = [
    (["worker"], 78),
    (["adapter", "fanpage"], 78),
    (["triage"], 78),
    (["webhooks", "--graph-secrets", "{graph}"], 78),
    (["alert-server", "--port", "0", "--insecure-no-auth"], 78),
    (["lag-exporter", "--once"], 78),
    (["topics", "apply"], 2),
    (["publish", str(sample_paths()[0])], 2),
]


def refused_args(args: list[str], tmp: Path) -> list[str]:
    graph = tmp / "graph.json"
    write_secret(graph, {"app_secret": "x", "verify_token": "y"})
    return [a.replace("{graph}", str(graph)) for a in args]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("args", "code"), REFUSED, ids=lambda v: "-".join(v) if isinstance(v, list) else str(v)
)
def test_a_wrong_password_stops_at_start_with_the_variable_to_check(
    sasl_broker: KafkaBroker, certs: CertificateSet, tmp_path: Path, args: list[str], code: int
) -> None:
    env = {
        **os.environ,
        **sasl_env(sasl_broker, certs, tmp_path, password="not-the-password"),
        "LANTOA_WEB_PORT": "0",
        "LANTOA_DATA_DIR": str(tmp_path),
    }
    started = time.monotonic()
    returncode, out = start_and_wait(env, refused_args(args, tmp_path))
    assert returncode == code, out[-3000:]
    assert time.monotonic() - started < 20
    assert "LANTOA_SASL_PASSWORD_FILE" in out and "refused the SCRAM-SHA-512 credentials" in out, out[-3000:]
    assert "not-the-password" not in out
    assert "Traceback" not in out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("args", "code"), REFUSED, ids=lambda v: "-".join(v) if isinstance(v, list) else str(v)
)
def test_an_unknown_ca_stops_at_start_with_the_variable_to_check(
    ssl_broker: KafkaBroker, certs: CertificateSet, tmp_path: Path, args: list[str], code: int
) -> None:
    other = make_ca(tmp_path / "other-ca", subject="/CN=Someone else's CA")
    env = {
        **os.environ,
        **ssl_env(ssl_broker, certs),
        "LANTOA_SSL_CAFILE": str(other.cert),
        "LANTOA_WEB_PORT": "0",
        "LANTOA_DATA_DIR": str(tmp_path),
    }
    started = time.monotonic()
    returncode, out = start_and_wait(env, refused_args(args, tmp_path))
    assert returncode == code, out[-3000:]
    assert time.monotonic() - started < 20
    assert "LANTOA_SSL_CAFILE" in out and "not trusted" in out, out[-3000:]
    assert "Traceback" not in out


@pytest.mark.timeout(120)
def test_plaintext_against_the_tls_listener_is_a_protocol_mismatch(
    ssl_broker: KafkaBroker, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": ssl_broker.secured_bootstrap,
        "LANTOA_WEB_PORT": "0",
        "LANTOA_DATA_DIR": str(tmp_path),
    }
    started = time.monotonic()
    returncode, out = start_and_wait(env, ["adapter", "zalo"], timeout=60)
    assert returncode == 78, out[-3000:]
    assert time.monotonic() - started < 45
    assert "LANTOA_SECURITY_PROTOCOL=PLAINTEXT" in out, out[-3000:]
