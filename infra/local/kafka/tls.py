"""Test certificates made on the spot with the openssl command line: a CA, a server certificate
for the local broker and a client certificate, all PEM.

The server certificate names ``127.0.0.1`` (IP SAN) and ``localhost`` (DNS SAN): both client
libraries check the broker's name against the certificate (``ssl.create_default_context`` in
infra/kafka/clients.py), and the local broker is reached as ``127.0.0.1``. Kafka 4.1 reads PEM
key stores directly (``ssl.keystore.type=PEM``), so no keytool/JKS step is needed.

For tests and the local stacks only: keys are unencrypted, in a directory the caller owns.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

DAYS = 2


class CertificateError(RuntimeError):
    """openssl failed; the message carries its output."""


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its (unencrypted PEM) private key."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class CertificateSet:
    """A CA and the server and client certificates it signed."""

    ca: KeyPair
    server: KeyPair
    client: KeyPair


def _openssl(*args: str, cwd: Path) -> None:
    proc = subprocess.run(
        ["openssl", *args], cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise CertificateError(f"openssl {args[0]} failed (exit {proc.returncode}): {proc.stderr.strip()}")


def make_ca(directory: Path, name: str = "ca", subject: str = "/CN=Lantoa test CA") -> KeyPair:
    """A self-signed CA (``<name>.pem``, ``<name>.key``) in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}.key")
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        str(DAYS),
        "-subj",
        subject,
        "-keyout",
        str(pair.key),
        "-out",
        str(pair.cert),
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=directory,
    )
    return pair


def sign(ca: KeyPair, directory: Path, name: str, subject: str, extensions: str) -> KeyPair:
    """A key and a certificate for ``subject`` signed by ``ca``, with ``extensions`` (openssl ext syntax)."""
    pair = KeyPair(directory / f"{name}.pem", directory / f"{name}.key")
    csr = directory / f"{name}.csr"
    ext = directory / f"{name}.ext"
    ext.write_text(extensions + "\n", encoding="utf-8")
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        subject,
        "-keyout",
        str(pair.key),
        "-out",
        str(csr),
        cwd=directory,
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca.cert),
        "-CAkey",
        str(ca.key),
        "-CAcreateserial",
        "-days",
        str(DAYS),
        "-extfile",
        str(ext),
        "-out",
        str(pair.cert),
        cwd=directory,
    )
    csr.unlink()
    ext.unlink()
    return pair


def make_test_certificates(directory: Path) -> CertificateSet:
    """A CA, a server certificate for 127.0.0.1/localhost and a client certificate, in ``directory``."""
    ca = make_ca(directory)
    server = sign(
        ca,
        directory,
        "server",
        "/CN=localhost",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
        "keyUsage=critical,digitalSignature,keyEncipherment",
    )
    client = sign(
        ca,
        directory,
        "client",
        "/CN=lantoa-client",
        "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment",
    )
    return CertificateSet(ca, server, client)
