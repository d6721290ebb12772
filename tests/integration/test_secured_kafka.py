"""Lantoa on a secured cluster: one broker with an SSL listener (client certificates required),
one with SASL_SSL (SCRAM-SHA-512); certificates made by openssl during the test, with the SAN
127.0.0.1/localhost the clients check.

Over each: the CLI (topics apply, targets load, publish, status --kafka) and the long-running
processes (worker, fanpage and zalo adapters) deliver an article to the emulated platforms, with
its receipts read back over the same secured connection. A wrong SASL password, an unknown CA
and a protocol that does not match the listener stop a process at start, non-zero, within seconds,
with one line naming the variable to check and never the password.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from helpers import sample_paths
from infra.kafka.broker import KafkaBroker
from infra.kafka.listener import SecuredListener
from infra.kafka.tail import TopicTail
from infra.kafka.tls import CertificateSet, make_ca, make_test_certificates
from infra.stack import Emulators, Proc
from producers.targets import DEFAULT_TARGETS_FILE
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


def ssl_env(broker: KafkaBroker, certs: CertificateSet) -> dict[str, str]:
    return {"LANTOA_KAFKA_BOOTSTRAP": broker.secured_bootstrap, "LANTOA_SECURITY_PROTOCOL": "SSL",
            "LANTOA_SSL_CAFILE": str(certs.ca.cert), "LANTOA_SSL_CERTFILE": str(certs.client.cert),
            "LANTOA_SSL_KEYFILE": str(certs.client.key)}


def sasl_env(broker: KafkaBroker, certs: CertificateSet, tmp: Path, password: str = PASSWORD) -> dict[str, str]:
    secret = tmp / f"kafka-password-{uuid.uuid4().hex[:6]}"
    secret.write_text(password + "\n", encoding="utf-8")
    secret.chmod(0o600)
    return {"LANTOA_KAFKA_BOOTSTRAP": broker.secured_bootstrap, "LANTOA_SECURITY_PROTOCOL": "SASL_SSL",
            "LANTOA_SASL_MECHANISM": "SCRAM-SHA-512", "LANTOA_SASL_USERNAME": USER,
            "LANTOA_SASL_PASSWORD_FILE": str(secret), "LANTOA_SSL_CAFILE": str(certs.ca.cert)}


def lantoa(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "producers.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def receipts(tail: TopicTail) -> list[dict[str, Any]]:
    tail.poll()
    return [orjson.loads(r.value) for r in tail.records]


def deliver_one_article(kafka_env: dict[str, str], tmp: Path) -> None:
    emus = Emulators(tmp / "emu", DEFAULT_TARGETS_FILE)
    prefix = f"sec{uuid.uuid4().hex[:6]}."
    env = {**os.environ, **kafka_env, "LANTOA_TOPIC_PREFIX": prefix, "LANTOA_APP_ID": f"{prefix}streams",
           "LANTOA_WEB_PORT": "0", "LANTOA_DATA_DIR": str(tmp / "data"), "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
           **emus.env}
    settings = Settings.from_env(env)
    procs: dict[str, Proc] = {}
    tail: TopicTail | None = None
    try:
        for args in (("topics", "apply"), ("targets", "load")):
            done = lantoa(env, *args)
            assert done.returncode == 0, done.stderr
        procs = {name: Proc(name, args, env, tmp / f"{name}.log") for name, args in
                 (("streams", ["worker"]), ("fanpage", ["adapter", "fanpage"]), ("zalo", ["adapter", "zalo"]))}
        sample = sample_paths()[0]
        uri = orjson.loads(sample.read_bytes())["uri"]
        published = lantoa(env, "publish", str(sample))
        assert published.returncode == 0, published.stderr
        tail = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
        deadline = time.monotonic() + 90
        while True:
            done_at = {(r["channel"], r["target"]) for r in receipts(tail)
                       if r["uri"] == uri and r["stage"] == "delivery" and r["outcome"] == "delivered"}
            if {c for c, _ in done_at} >= {"fanpage", "zalo"}:
                break
            dead = [n for n, p in procs.items() if not p.alive()]
            assert not dead and time.monotonic() < deadline, (
                f"no fanpage+zalo delivery over {kafka_env['LANTOA_SECURITY_PROTOCOL']} (dead: {dead}); "
                + "\n".join((tmp / f"{n}.log").read_text(errors="replace")[-2000:] for n in procs))
            time.sleep(0.5)
        status = lantoa(env, "status", uri, "--kafka", "--json")
        assert status.returncode == 0, status.stderr
        assert "delivered" in status.stdout
        posts = emus.control("graph", "GET", "/_control/posts")
        post_list = posts["posts"] if isinstance(posts, dict) else posts
        assert post_list, "the fanpage emulator got no post"
    finally:
        if tail is not None:
            tail.close()
        for p in procs.values():
            p.stop()
        emus.close()


@pytest.mark.timeout(240)
def test_cli_worker_and_adapters_deliver_over_sasl_ssl_scram(sasl_broker: KafkaBroker, certs: CertificateSet,
                                                             tmp_path: Path) -> None:
    deliver_one_article(sasl_env(sasl_broker, certs, tmp_path), tmp_path)


@pytest.mark.timeout(240)
def test_cli_worker_and_adapters_deliver_over_mutual_tls(ssl_broker: KafkaBroker, certs: CertificateSet,
                                                        tmp_path: Path) -> None:
    deliver_one_article(ssl_env(ssl_broker, certs), tmp_path)


def start_and_wait(env: dict[str, str], args: list[str], timeout: float = 30) -> tuple[int, str]:
    """Start a long-running process, expect it to exit by itself; (exit code, its output)."""
    proc = subprocess.Popen([sys.executable, "-m", "producers.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"lantoa {' '.join(args)} still running after {timeout} s:\n{out[-3000:]}") from None
    return proc.returncode, out


REFUSED = [(["worker"], 78), (["adapter", "fanpage"], 78), (["triage"], 2), (["topics", "apply"], 2)]


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "code"), REFUSED, ids=lambda v: "-".join(v) if isinstance(v, list) else str(v))
def test_a_wrong_password_stops_at_start_with_the_variable_to_check(sasl_broker: KafkaBroker, certs: CertificateSet,
                                                                    tmp_path: Path, args: list[str], code: int) -> None:
    env = {**os.environ, **sasl_env(sasl_broker, certs, tmp_path, password="not-the-password"),
           "LANTOA_WEB_PORT": "0", "LANTOA_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    returncode, out = start_and_wait(env, args)
    assert returncode == code, out[-3000:]
    assert time.monotonic() - started < 20
    assert "LANTOA_SASL_PASSWORD_FILE" in out and "refused the SCRAM-SHA-512 credentials" in out, out[-3000:]
    assert "not-the-password" not in out
    assert "Traceback" not in out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("args", "code"), REFUSED, ids=lambda v: "-".join(v) if isinstance(v, list) else str(v))
def test_an_unknown_ca_stops_at_start_with_the_variable_to_check(ssl_broker: KafkaBroker, certs: CertificateSet,
                                                                 tmp_path: Path, args: list[str], code: int) -> None:
    other = make_ca(tmp_path / "other-ca", subject="/CN=Someone else's CA")
    env = {**os.environ, **ssl_env(ssl_broker, certs), "LANTOA_SSL_CAFILE": str(other.cert),
           "LANTOA_WEB_PORT": "0", "LANTOA_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    returncode, out = start_and_wait(env, args)
    assert returncode == code, out[-3000:]
    assert time.monotonic() - started < 20
    assert "LANTOA_SSL_CAFILE" in out and "not trusted" in out, out[-3000:]
    assert "Traceback" not in out


@pytest.mark.timeout(120)
def test_plaintext_against_the_tls_listener_is_a_protocol_mismatch(ssl_broker: KafkaBroker, tmp_path: Path) -> None:
    env = {**os.environ, "LANTOA_KAFKA_BOOTSTRAP": ssl_broker.secured_bootstrap, "LANTOA_WEB_PORT": "0",
           "LANTOA_DATA_DIR": str(tmp_path)}
    started = time.monotonic()
    returncode, out = start_and_wait(env, ["adapter", "zalo"], timeout=60)
    assert returncode == 78, out[-3000:]
    assert time.monotonic() - started < 45
    assert "LANTOA_SECURITY_PROTOCOL=PLAINTEXT" in out, out[-3000:]
