"""The secured listener's broker properties and format arguments, and the test certificates' names."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from infra.local.kafka.listener import SecuredListener
from infra.local.kafka.tls import CertificateSet, make_test_certificates


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_test_certificates(tmp_path_factory.mktemp("tls"))


def test_sasl_ssl_listener_enables_both_scram_mechanisms(certs: CertificateSet, tmp_path: Path) -> None:
    listener = SecuredListener("SASL_SSL", certs, scram_users={"u": "p"})
    props: dict[str, str | int | float | bool] = {
        "listeners": "PLAINTEXT://127.0.0.1:1",
        "advertised.listeners": "PLAINTEXT://127.0.0.1:1",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT",
    }
    listener.add_to(props, 2, tmp_path)
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:1,SECURE://127.0.0.1:2"
    assert props["listener.security.protocol.map"] == "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL"
    assert props["listener.name.secure.sasl.enabled.mechanisms"] == "SCRAM-SHA-256,SCRAM-SHA-512"
    assert "ScramLoginModule" in str(props["listener.name.secure.scram-sha-512.sasl.jaas.config"])
    assert props["listener.name.secure.ssl.client.auth"] == "none"
    assert listener.format_args() == [
        "--add-scram",
        "SCRAM-SHA-256=[name=u,password=p]",
        "--add-scram",
        "SCRAM-SHA-512=[name=u,password=p]",
    ]
    assert "hunter2" not in repr(SecuredListener("SASL_SSL", certs, scram_users={"u": "hunter2"}))


def test_ssl_listener_can_require_client_certificates(certs: CertificateSet, tmp_path: Path) -> None:
    listener = SecuredListener("SSL", certs, require_client_cert=True)
    assert listener.properties(tmp_path)["listener.name.secure.ssl.client.auth"] == "required"
    assert listener.format_args() == []
    listener.write_keystore(tmp_path)
    pem = listener.keystore(tmp_path).read_text()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----") and "BEGIN CERTIFICATE" in pem


@pytest.mark.parametrize(("protocol", "users"), [("PLAINTEXT", {}), ("SASL_SSL", {})])
def test_a_listener_that_cannot_work_is_refused(
    certs: CertificateSet, protocol: str, users: dict[str, str]
) -> None:
    with pytest.raises(ValueError):
        SecuredListener(protocol, certs, scram_users=users)


def test_the_server_certificate_names_127_0_0_1_and_localhost(certs: CertificateSet) -> None:
    text = subprocess.run(
        ["openssl", "x509", "-in", str(certs.server.cert), "-noout", "-ext", "subjectAltName"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "IP Address:127.0.0.1" in text and "DNS:localhost" in text
    ctx = ssl.create_default_context(cafile=str(certs.ca.cert))
    ctx.load_cert_chain(str(certs.client.cert), str(certs.client.key))  # the client pair matches
