"""KafkaConnection.check, the one translation into kafka-python and aiokafka arguments, and how the
start-up probe tells a refused configuration (final) from a broker that is not there yet (retried)."""

from __future__ import annotations

import asyncio
import socket
import ssl
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from infra.kafka import clients, reachable
from infra.kafka.clients import MISMATCH_AFTER, KafkaAccessError, Probe, ProbeResult
from infra.local.kafka.tls import make_test_certificates
from schemas.secrets import write_secret
from schemas.settings import KafkaConnection, Settings, SettingsError


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> KafkaConnection:
    certs = make_test_certificates(tmp_path_factory.mktemp("tls"))
    return KafkaConnection(
        "127.0.0.1:9093,kafka-2:9093",
        "SASL_SSL",
        "SCRAM-SHA-512",
        "lantoa",
        "pw",
        certs.ca.cert,
        certs.client.cert,
        certs.client.key,
    )


def sasl_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    secret = tmp_path / "pw"
    write_secret(secret, b"s3cret\n")
    return {
        "LANTOA_SECURITY_PROTOCOL": "sasl_ssl",
        "LANTOA_SASL_MECHANISM": "SCRAM-SHA-256",
        "LANTOA_SASL_USERNAME": "lantoa",
        "LANTOA_SASL_PASSWORD_FILE": str(secret),
        **extra,
    }


# -- KafkaConnection.check (through Settings.from_env, as processes read it) -------------------


def test_the_password_comes_from_its_file_once_and_never_shows(tmp_path: Path) -> None:
    conn = Settings.from_env(sasl_env(tmp_path)).kafka
    assert (conn.security_protocol, conn.sasl_password) == ("SASL_SSL", "s3cret")
    assert "s3cret" not in repr(conn)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LANTOA_SECURITY_PROTOCOL": "TLS"}, "LANTOA_SECURITY_PROTOCOL"),
        ({"LANTOA_SASL_MECHANISM": "GSSAPI"}, "LANTOA_SASL_MECHANISM"),
        ({"LANTOA_SASL_USERNAME": ""}, "LANTOA_SASL_USERNAME"),
        ({"LANTOA_SASL_PASSWORD_FILE": "/nonexistent/pw"}, "LANTOA_SASL_PASSWORD_FILE"),
        ({"LANTOA_SSL_CERTFILE": __file__}, "LANTOA_SSL_KEYFILE"),
        ({"LANTOA_SSL_CAFILE": "/nonexistent/ca.pem"}, "LANTOA_SSL_CAFILE"),
    ],
)
def test_an_unusable_combination_names_the_variable(
    tmp_path: Path, env: dict[str, str], variable: str
) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env(sasl_env(tmp_path, **env))


def test_plaintext_needs_nothing_else() -> None:
    conn = Settings.from_env({}).kafka.check()
    assert (conn.uses_ssl, conn.uses_sasl) == (False, False)
    assert clients.aiokafka_args(conn) == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "PLAINTEXT",
    }
    assert clients.kafka_python_args(conn) == {
        "bootstrap_servers": ["127.0.0.1:9092"],
        "security_protocol": "PLAINTEXT",
    }


# -- the translation ---------------------------------------------------------------------------


def test_both_libraries_get_the_same_tls_and_sasl_arguments(pem: KafkaConnection) -> None:
    aio, kp = clients.aiokafka_args(pem), clients.kafka_python_args(pem)
    assert aio["bootstrap_servers"] == "127.0.0.1:9093,kafka-2:9093"
    assert kp["bootstrap_servers"] == ["127.0.0.1:9093", "kafka-2:9093"]
    for args in (aio, kp):
        assert (args["security_protocol"], args["sasl_mechanism"]) == ("SASL_SSL", "SCRAM-SHA-512")
        assert (args["sasl_plain_username"], args["sasl_plain_password"]) == ("lantoa", "pw")
        ctx = args["ssl_context"]
        assert isinstance(ctx, ssl.SSLContext)
        assert ctx.verify_mode is ssl.CERT_REQUIRED and ctx.check_hostname
        assert [c["subject"] for c in ctx.get_ca_certs()] == [((("commonName", "Lantoa test CA"),),)]


def test_the_real_constructors_accept_the_arguments(pem: KafkaConnection) -> None:
    # aiokafka rejects unknown or inconsistent arguments in its constructors (no network needed).
    async def build() -> None:
        for client in (
            clients.aio_consumer(pem, "t", group_id=None),
            clients.aio_producer(pem),
            clients.aio_client(pem),
        ):
            assert client is not None
        await clients.aio_client(pem).close()

    asyncio.run(build())


def test_ssl_without_sasl_sends_no_sasl_arguments(pem: KafkaConnection) -> None:
    conn = KafkaConnection("127.0.0.1:9093", "SSL", ssl_cafile=pem.ssl_cafile)
    assert "sasl_mechanism" not in clients.aiokafka_args(conn)
    assert clients.ssl_context(conn).get_ca_certs()
    assert clients.hosts(KafkaConnection("[::1]:9093, b:9094")) == [("::1", 9093), ("b", 9094)]


# -- what the probe's errors mean ----------------------------------------------------------------


def test_refused_certificate_credentials_and_mechanism_are_final(pem: KafkaConnection) -> None:
    verify = ssl.SSLCertVerificationError(1, "certificate verify failed")
    verify.verify_message = "unable to get local issuer certificate"
    cases = [
        (verify, "LANTOA_SSL_CAFILE"),
        (SaslAuthenticationFailed("bad"), "LANTOA_SASL_PASSWORD_FILE"),
        (UnsupportedSaslMechanismError("no"), "LANTOA_SASL_MECHANISM"),
    ]
    for exc, variable in cases:
        final = clients.access_error(pem, "h:1", exc)
        assert final is not None and variable in str(final)
        assert "pw" not in str(final).replace("LANTOA_SASL_PASSWORD_FILE", "")
    assert clients.access_error(pem, "h:1", ConnectionResetError()) is None
    assert clients.access_error(pem, "h:1", KafkaConnectionError("closed")) is None


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_refused_connection_is_unreachable_not_final() -> None:
    found = asyncio.run(clients.probe(KafkaConnection(f"127.0.0.1:{closed_port()}"), timeout_s=2))
    assert found.result is ProbeResult.UNREACHABLE and "refused" in found.detail


def scripted(monkeypatch: pytest.MonkeyPatch, results: list[ProbeResult]) -> list[int]:
    calls: list[int] = []

    async def fake(conn: KafkaConnection, **_: object) -> Probe:
        calls.append(1)
        return Probe(results[min(len(calls), len(results)) - 1], "h:1: ConnectionResetError")

    monkeypatch.setattr(clients, "probe", fake)
    return calls


async def test_mismatch_at_the_bound_is_still_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, [ProbeResult.MISMATCH] * (MISMATCH_AFTER - 1) + [ProbeResult.OK])
    assert await reachable.wait_for_kafka(KafkaConnection("h:1"), first_s=0.001, max_s=0.001) is True
    assert len(calls) == MISMATCH_AFTER


async def test_mismatch_past_the_bound_is_final(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = scripted(monkeypatch, [ProbeResult.MISMATCH] * (MISMATCH_AFTER + 1))
    with pytest.raises(KafkaAccessError, match="LANTOA_SECURITY_PROTOCOL=PLAINTEXT"):
        await reachable.wait_for_kafka(KafkaConnection("h:1"), first_s=0.001, max_s=0.001)
    assert len(calls) == MISMATCH_AFTER


async def test_an_unreachable_broker_resets_the_mismatch_count(monkeypatch: pytest.MonkeyPatch) -> None:
    run = [ProbeResult.MISMATCH] * (MISMATCH_AFTER - 1) + [ProbeResult.UNREACHABLE]
    run += [ProbeResult.MISMATCH] * (MISMATCH_AFTER - 1) + [ProbeResult.OK]
    calls = scripted(monkeypatch, run)
    assert await reachable.wait_for_kafka(KafkaConnection("h:1"), first_s=0.001, max_s=0.001) is True
    assert len(calls) == len(run)


def test_check_access_raises_only_past_the_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, [ProbeResult.MISMATCH] * (MISMATCH_AFTER - 1) + [ProbeResult.OK])
    clients.check_access(KafkaConnection("h:1"), pause_s=0)
    scripted(monkeypatch, [ProbeResult.MISMATCH] * MISMATCH_AFTER)
    with pytest.raises(KafkaAccessError):
        clients.check_access(KafkaConnection("h:1"), pause_s=0)
    scripted(monkeypatch, [ProbeResult.UNREACHABLE])
    clients.check_access(KafkaConnection("h:1"), pause_s=0)  # left to the client's own retries
