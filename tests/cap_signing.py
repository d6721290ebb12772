"""Signing CAP alerts in tests: a key and a self-signed certificate made in the test (cryptography),
an alert signed enveloped with signxml, and a trust store file naming the certificates."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, SignatureConstructionMethod
from signxml.signer import XMLSigner

EXCLUSIVE_C14N = CanonicalizationMethod.EXCLUSIVE_XML_CANONICALIZATION_1_0


@dataclass(frozen=True)
class Signer:
    """A key pair and its certificate, as a warning office would hold them."""

    key: rsa.RSAPrivateKey
    cert: x509.Certificate

    @property
    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )


def certificate(
    public_key: PublicKeyTypes,
    cn: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    not_before: dt.datetime | None = None,
    days: int = 30,
) -> x509.Certificate:
    start = not_before or dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .sign(issuer_key, hashes.SHA256())
    )


def make_signer(cn: str = "canhbao.nchmf.example.vn", **validity: object) -> Signer:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Signer(key, certificate(key.public_key(), cn, key, **validity))  # type: ignore[arg-type]


class _Sha1Signer(XMLSigner):
    """signxml refuses SHA-1 unless told (its documented way: override this check)."""

    def check_deprecated_methods(self) -> None:
        return None


def sign(
    raw: bytes,
    signer: Signer,
    *,
    sha1: bool = False,
    c14n: str = EXCLUSIVE_C14N.value,
    reference_uri: str | None = None,
) -> bytes:
    """``raw`` signed enveloped (the signature appended to <alert>), as UTF-8 bytes."""
    root = etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))
    cls = _Sha1Signer if sha1 else XMLSigner
    xml_signer = cls(
        method=SignatureConstructionMethod.enveloped,
        signature_algorithm="rsa-sha1" if sha1 else "rsa-sha256",
        digest_algorithm="sha1" if sha1 else "sha256",
        c14n_algorithm=c14n,
    )
    signed = xml_signer.sign(root, key=signer.key, cert=[signer.cert], reference_uri=reference_uri)
    return bytes(etree.tostring(signed, xml_declaration=True, encoding="UTF-8"))


def write_trust(folder: Path, senders: list[dict[str, object]], default: str = "optional") -> Path:
    """A trust store in ``folder``: each sender's ``certs`` (Signer objects or PEM bytes) are written
    to a PEM file of their own next to it, named in ``certificates``."""
    lines = [f'default = "{default}"', ""]
    for n, entry in enumerate(senders):
        entry = dict(entry)
        pems = entry.pop("certs", [])
        assert isinstance(pems, list)
        blob = b"".join(p.cert_pem if isinstance(p, Signer) else p for p in pems)
        (folder / f"sender{n}.pem").write_bytes(blob)
        entry.setdefault("certificates", [f"sender{n}.pem"])
        lines.append("[[sender]]")
        for field, value in entry.items():
            if isinstance(value, bool):
                lines.append(f"{field} = {'true' if value else 'false'}")
            elif isinstance(value, list):
                lines.append(f"{field} = [{', '.join(repr(str(v)) for v in value)}]")
            else:
                lines.append(f'{field} = "{value}"')
        lines.append("")
    path = folder / "cap-trust.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
