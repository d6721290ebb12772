"""CAP signatures: the signed real alerts in the shared test data checked with their own keys, copies
changed by one character, alerts signed here with keys made here, and the shapes that must be
refused (unsigned for a sender that must sign, a signature over part of the alert, wrapping,
SHA-1 without allow_sha1, untrusted or expired keys, a broken trust store)."""

from __future__ import annotations

import datetime as dt
import hashlib
from base64 import b64decode
from pathlib import Path

import pytest
from cap_signing import Signer, certificate, make_signer, sign, write_trust
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from helpers import SHARED, TYPHOON_ALERT
from lxml import etree

from producers.cap_ingest import check
from producers.targets import local_registry
from schemas.cap import parse_cap
from schemas.cap_signature import (
    UNCHECKED,
    SignatureStatus,
    TrustFileError,
    TrustPolicy,
    load_trust,
    verify_signature,
)
from schemas.errors import InvalidContent
from schemas.settings import Settings

TESTDATA = SHARED / "standards" / "cap" / "testdata"
DS = "{http://www.w3.org/2000/09/xmldsig#}"
SENDER = "canhbao@nchmf.example.vn"


def _xml(raw: bytes) -> etree._Element:
    return etree.fromstring(raw, etree.XMLParser(resolve_entities=False, no_network=True))


def _n(text: str) -> int:
    return int.from_bytes(b64decode("".join(text.split())), "big")


def embedded_keys(raw: bytes) -> list[bytes]:
    """PEM of every key the alert's signatures carry: RSA KeyValues as bare public keys,
    X509Certificates as certificates."""
    root = _xml(raw)
    pems = []
    for kv in root.iter(f"{DS}RSAKeyValue"):
        key = rsa.RSAPublicNumbers(
            _n(kv.findtext(f"{DS}Exponent") or ""), _n(kv.findtext(f"{DS}Modulus") or "")
        )
        pems.append(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    for element in root.iter(f"{DS}X509Certificate"):
        cert = x509.load_der_x509_certificate(b64decode(element.text or ""))
        pems.append(cert.public_bytes(serialization.Encoding.PEM))
    return pems


def trust(tmp_path: Path, *senders: dict[str, object], default: str = "optional") -> TrustPolicy:
    return TrustPolicy.load(write_trust(tmp_path, list(senders), default=default))


def refused(raw: bytes, sender: str, policy: TrustPolicy, **kw: dt.datetime) -> str:
    with pytest.raises(InvalidContent) as info:
        verify_signature(raw, sender, policy, **kw)
    reason = info.value.reason
    assert "\n" not in reason  # a one-line reason
    return reason


def one_char_changed(raw: bytes, old: bytes, new: bytes) -> bytes:
    assert len(old) == len(new) and raw.count(old) >= 1
    changed = raw.replace(old, new, 1)
    parse_cap(changed)  # still a valid alert: only the signature can tell
    return changed


# ---------------------------------------------------------------------------------------------------
# The signed real alerts


@pytest.mark.parametrize("name", ["earthquake_signed.cap", "earthquake-iso8859-1.cap"])
def test_the_usgs_alerts_verify_with_their_own_keyvalue(tmp_path: Path, name: str) -> None:
    raw = (TESTDATA / name).read_bytes()
    alert = parse_cap(raw)
    [pem] = embedded_keys(raw)  # KeyValue only: no certificate in these signatures
    assert b"PUBLIC KEY" in pem
    policy = trust(tmp_path, {"sender": alert.sender, "certs": [pem], "allow_sha1": True})
    assert verify_signature(raw, alert.sender, policy).status is SignatureStatus.VERIFIED

    changed = one_char_changed(raw, b"<headline>EQ ", b"<headline>Eq ")
    assert "changed after" in refused(changed, alert.sender, policy)


def test_a_usgs_key_wrapped_in_a_certificate_names_the_signer(tmp_path: Path) -> None:
    raw = (TESTDATA / "earthquake_signed.cap").read_bytes()
    alert = parse_cap(raw)
    usgs = serialization.load_pem_public_key(embedded_keys(raw)[0])
    issuer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    wrapped = certificate(usgs, "USGS NEIC", issuer).public_bytes(serialization.Encoding.PEM)
    policy = trust(tmp_path, {"sender": alert.sender, "certs": [wrapped], "allow_sha1": True})
    check_ = verify_signature(raw, alert.sender, policy)
    assert (check_.status, check_.signer) == (SignatureStatus.VERIFIED, "USGS NEIC")


def test_the_usgs_alert_is_sha1_and_refused_without_allow_sha1(tmp_path: Path) -> None:
    raw = (TESTDATA / "earthquake_signed.cap").read_bytes()
    alert = parse_cap(raw)
    policy = trust(tmp_path, {"sender": alert.sender, "certs": embedded_keys(raw)})
    reason = refused(raw, alert.sender, policy)
    assert "SHA-1" in reason and "allow_sha1" in reason


def _without(raw: bytes, index: int) -> bytes:
    """The alert with its ``index``-th signature removed (whitespace kept)."""
    root = _xml(raw)
    signature = root.findall(f"{DS}Signature")[index]
    previous = signature.getprevious()
    assert previous is not None
    previous.tail = (previous.tail or "") + (signature.tail or "")
    root.remove(signature)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))


def test_the_canadian_alert_with_two_signatures_is_refused(tmp_path: Path) -> None:
    raw = (TESTDATA / "canada_signed.cap").read_bytes()
    alert = parse_cap(raw)
    policy = trust(tmp_path, {"sender": alert.sender, "certs": embedded_keys(raw), "allow_sha1": True})
    assert "2 XML signatures" in refused(raw, alert.sender, policy, at=alert.sent)


def test_environment_canadas_own_signature_verifies_once_the_relay_signature_is_removed(
    tmp_path: Path,
) -> None:
    """NAADS (the relay) added its signature computed, like Environment Canada's, over the alert without
    any signature; so EC's verifies, by the standard, on the alert without NAADS's, with its own
    certificate, at the time the alert was sent (the certificate expired in 2015)."""
    raw = (TESTDATA / "canada_signed.cap").read_bytes()
    alert = parse_cap(raw)
    ec_only = _without(raw, 0)
    parse_cap(ec_only)
    policy = trust(tmp_path, {"sender": alert.sender, "certs": embedded_keys(ec_only), "allow_sha1": True})
    result = verify_signature(ec_only, alert.sender, policy, at=alert.sent)
    assert (result.status, result.signer) == (SignatureStatus.VERIFIED, "meteo.gc.ca")
    # ... and not today: the pinned certificate has expired.
    assert "expired" in refused(ec_only, alert.sender, policy)
    # ... and not with one character changed.
    changed = one_char_changed(ec_only, b"<event>snowfall<", b"<event>snowfell<")
    assert "changed after" in refused(changed, alert.sender, policy, at=alert.sent)


def test_the_naads_signature_is_not_valid_xmldsig_but_its_cryptography_holds(tmp_path: Path) -> None:
    """The NAADS signature puts <Object xmlns=""> (outside the XML-DSig namespace) in the signature,
    so it is refused as XML-DSig. Checked by hand: its SignatureValue is its certificate's RSA-SHA1
    over SignedInfo (inclusive C14N, as declared), and its digest is that of the alert with *both*
    signatures removed: right for a signature made first, not what enveloped-signature means for
    one added after Environment Canada's."""
    raw = (TESTDATA / "canada_signed.cap").read_bytes()
    alert = parse_cap(raw)
    naads_only = _without(raw, 1)
    policy = trust(tmp_path, {"sender": alert.sender, "certs": embedded_keys(naads_only), "allow_sha1": True})
    assert "not valid XML-DSig" in refused(naads_only, alert.sender, policy, at=alert.sent)

    root = _xml(raw)
    naads = root.findall(f"{DS}Signature")[0]
    assert naads.get("Id") == "NAADS Signature"
    cert = x509.load_der_x509_certificate(b64decode(naads.findtext(f".//{DS}X509Certificate") or ""))
    signed_info = etree.fromstring(etree.tostring(naads.find(f"{DS}SignedInfo")))  # as a root: see _Verifier
    key = cert.public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(
        b64decode(naads.findtext(f"{DS}SignatureValue") or ""),
        etree.tostring(signed_info, method="c14n"),
        padding.PKCS1v15(),
        hashes.SHA1(),
    )  # raises if it does not verify
    digest = b64decode(naads.findtext(f".//{DS}DigestValue") or "")
    neither = _xml(_without(_without(raw, 1), 0))
    assert hashlib.sha1(etree.tostring(neither, method="c14n")).digest() == digest
    assert hashlib.sha1(etree.tostring(_xml(_without(raw, 0)), method="c14n")).digest() != digest


# ---------------------------------------------------------------------------------------------------
# Alerts signed here


@pytest.fixture(scope="module")
def office() -> Signer:
    return make_signer("canhbao.nchmf.example.vn")


@pytest.fixture(scope="module")
def stranger() -> Signer:
    return make_signer("someone.else.example")


@pytest.fixture(scope="module")
def signed(office: Signer) -> bytes:
    raw = sign(TYPHOON_ALERT.read_bytes(), office)
    assert parse_cap(raw).sender == SENDER
    return raw


def test_an_alert_signed_with_a_trusted_key_is_verified(
    tmp_path: Path, office: Signer, signed: bytes
) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    result = verify_signature(signed, SENDER, policy)
    assert (result.status, result.signer) == (SignatureStatus.VERIFIED, "canhbao.nchmf.example.vn")


def test_inclusive_c14n_signatures_verify_too(tmp_path: Path, office: Signer) -> None:
    raw = sign(TYPHOON_ALERT.read_bytes(), office, c14n="http://www.w3.org/TR/2001/REC-xml-c14n-20010315")
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert verify_signature(raw, SENDER, policy).status is SignatureStatus.VERIFIED


def test_one_character_changed_does_not_verify(tmp_path: Path, office: Signer, signed: bytes) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    changed = one_char_changed(signed, "Bão số 5".encode(), "Bão số 6".encode())
    assert refused(changed, SENDER, policy) == (
        f"XML signature does not verify: the alert was changed after sender {SENDER!r} signed it"
    )


def test_a_changed_signature_value_does_not_verify(tmp_path: Path, office: Signer, signed: bytes) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    root = _xml(signed)
    value = root.find(f"{DS}Signature/{DS}SignatureValue")
    assert value is not None and value.text
    text = "".join(value.text.split())
    value.text = ("B" if text[10] != "B" else "C").join([text[:10], text[11:]])
    reason = refused(etree.tostring(root), SENDER, policy)
    assert reason.startswith("XML signature does not verify with any trusted key")


def test_a_signer_that_is_not_trusted_is_refused(tmp_path: Path, stranger: Signer, office: Signer) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    raw = sign(TYPHOON_ALERT.read_bytes(), stranger)
    assert refused(raw, SENDER, policy) == (
        f"untrusted signer: the alert is signed by someone.else.example, not by a trusted key of sender {SENDER!r}"
    )


def test_any_certificate_of_the_sender_will_do(
    tmp_path: Path, stranger: Signer, office: Signer, signed: bytes
) -> None:
    policy = trust(
        tmp_path, {"sender": SENDER, "certs": [stranger, office]}
    )  # one PEM file, two certificates
    assert verify_signature(signed, SENDER, policy).signer == "canhbao.nchmf.example.vn"


def test_the_key_of_another_sender_is_not_trusted_for_this_one(
    tmp_path: Path, office: Signer, stranger: Signer, signed: bytes
) -> None:
    policy = trust(
        tmp_path, {"sender": "other@example.vn", "certs": [office]}, {"sender": SENDER, "certs": [stranger]}
    )
    assert refused(signed, SENDER, policy).startswith("untrusted signer")


def test_an_expired_trusted_certificate_is_refused(tmp_path: Path) -> None:
    old = make_signer("old.nchmf.example.vn", not_before=dt.datetime(2020, 1, 1, tzinfo=dt.UTC), days=30)
    raw = sign(TYPHOON_ALERT.read_bytes(), old)
    policy = trust(tmp_path, {"sender": SENDER, "certs": [old]})
    reason = refused(raw, SENDER, policy)
    assert reason.startswith("trusted certificate old.nchmf.example.vn") and "expired" in reason
    assert (
        verify_signature(raw, SENDER, policy, at=dt.datetime(2020, 1, 15, tzinfo=dt.UTC)).status == "verified"
    )


def test_sha1_is_refused_unless_the_sender_allows_it(tmp_path: Path, office: Signer) -> None:
    raw = sign(TYPHOON_ALERT.read_bytes(), office, sha1=True)
    assert "SHA-1 (rsa-sha1)" in refused(raw, SENDER, trust(tmp_path, {"sender": SENDER, "certs": [office]}))
    allowed = trust(tmp_path, {"sender": SENDER, "certs": [office], "allow_sha1": True})
    assert verify_signature(raw, SENDER, allowed).status is SignatureStatus.VERIFIED


# ---------------------------------------------------------------------------------------------------
# Unsigned alerts and senders the store does not list


def test_unsigned_to_a_sender_that_must_sign_is_refused(tmp_path: Path, office: Signer) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office], "signatures": "required"})
    assert refused(TYPHOON_ALERT.read_bytes(), SENDER, policy).startswith(
        f"unsigned CAP alert: sender {SENDER!r} must sign"
    )


def test_unsigned_to_an_optional_sender_is_allowed(tmp_path: Path, office: Signer, signed: bytes) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office], "signatures": "optional"})
    assert verify_signature(TYPHOON_ALERT.read_bytes(), SENDER, policy).status is SignatureStatus.UNSIGNED
    # optional means "may be unsigned", not "may be signed badly"
    assert refused(sign(TYPHOON_ALERT.read_bytes(), make_signer("x")), SENDER, policy).startswith(
        "untrusted signer"
    )


def test_a_listed_sender_must_sign_by_default(tmp_path: Path, office: Signer) -> None:
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert refused(TYPHOON_ALERT.read_bytes(), SENDER, policy).startswith("unsigned CAP alert")


def test_unlisted_senders_follow_the_default(tmp_path: Path, signed: bytes) -> None:
    unsigned = TYPHOON_ALERT.read_bytes()
    optional = trust(tmp_path, default="optional")
    assert verify_signature(unsigned, SENDER, optional).status is SignatureStatus.UNSIGNED
    assert verify_signature(signed, SENDER, optional) == UNCHECKED  # nobody to check it against
    required = trust(tmp_path, default="required")
    assert refused(unsigned, SENDER, required).startswith("unsigned CAP alert")
    assert "has no key for sender" in refused(signed, SENDER, required)


def test_without_a_trust_store_nothing_is_checked(signed: bytes) -> None:
    empty = TrustPolicy.empty()
    assert not empty.configured
    assert verify_signature(signed, SENDER, empty) == UNCHECKED
    assert verify_signature(signed.replace(b"Extreme", b"Extrema"), SENDER, empty) == UNCHECKED
    assert verify_signature(TYPHOON_ALERT.read_bytes(), SENDER, empty).status is SignatureStatus.UNSIGNED


# ---------------------------------------------------------------------------------------------------
# Signatures that do not cover the whole alert


def test_a_reference_to_part_of_the_alert_is_refused(tmp_path: Path, office: Signer) -> None:
    raw = TYPHOON_ALERT.read_bytes().replace(b"<info>", b'<info Id="part">', 1)
    partial = sign(raw, office, reference_uri="#part")
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert refused(partial, SENDER, policy) == (
        "XML signature covers only part of the alert (Reference URI='#part'); it must sign the whole alert (URI=\"\")"
    )


def test_two_references_are_refused(tmp_path: Path, office: Signer, signed: bytes) -> None:
    root = _xml(signed)
    signed_info = root.find(f"{DS}Signature/{DS}SignedInfo")
    assert signed_info is not None
    reference = signed_info.find(f"{DS}Reference")
    assert reference is not None
    signed_info.append(etree.fromstring(etree.tostring(reference)))
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert refused(etree.tostring(root), SENDER, policy).startswith("XML signature has 2 references")


def test_a_signature_moved_inside_the_alert_is_refused(tmp_path: Path, office: Signer, signed: bytes) -> None:
    root = _xml(signed)
    signature = root.find(f"{DS}Signature")
    info = root.find("{urn:oasis:names:tc:emergency:cap:1.2}info")
    assert signature is not None and info is not None
    info.append(signature)
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert refused(etree.tostring(root), SENDER, policy).startswith("XML signature inside <info>")


def test_a_second_signature_by_an_attacker_is_refused(
    tmp_path: Path, office: Signer, stranger: Signer, signed: bytes
) -> None:
    twice = sign(signed, stranger)  # a valid trusted signature plus one of the attacker's
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert "2 XML signatures" in refused(twice, SENDER, policy)


def test_wrapping_the_signed_alert_inside_the_signature_is_refused(
    tmp_path: Path, office: Signer, signed: bytes
) -> None:
    """The classic wrapping attack: the genuinely signed alert is hidden in a ds:Object of the
    signature while the outer alert says something else. With URI="" the digest is over the outer
    alert, which no longer matches."""
    root = _xml(signed)
    signature = root.find(f"{DS}Signature")
    assert signature is not None
    hidden = etree.SubElement(signature, f"{DS}Object")
    hidden.append(_xml(signed))  # the original, with its signature
    hidden[0].remove(hidden[0].find(f"{DS}Signature"))
    headline = root.find(".//{urn:oasis:names:tc:emergency:cap:1.2}headline")
    assert headline is not None
    headline.text = "Huỷ cảnh báo: không có bão"
    attacked = etree.tostring(root)
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    reason = refused(attacked, SENDER, policy)
    assert "changed after" in reason


def test_a_non_enveloped_transform_is_refused(tmp_path: Path, office: Signer, signed: bytes) -> None:
    root = _xml(signed)
    transform = root.find(f".//{DS}Transform")
    assert transform is not None
    transform.set("Algorithm", "http://www.w3.org/TR/1999/REC-xpath-19991116")
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert "transform" in refused(etree.tostring(root), SENDER, policy)


# ---------------------------------------------------------------------------------------------------
# The trust store file


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("default = [", "is not TOML"),
        ('default = "maybe"', 'default must be "required" or "optional"'),
        ('defualt = "required"', "unknown field 'defualt'"),
        ('[[sender]]\nsender = "a@b"\ncertificates = ["missing.pem"]', "cannot read"),
        ('[[sender]]\nsender = "a@b"\ncertificates = []', "at least one PEM file"),
        ('[[sender]]\nsender = "a@b"\ncertificates = ["empty.pem"]', "holds no PEM certificate"),
        (
            '[[sender]]\nsender = "a@b"\ncertificates = ["ok.pem"]\nallow_sha_1 = true',
            "unknown field 'allow_sha_1'",
        ),
        ('[[sender]]\nsender = "a@b"\ncertificates = ["ok.pem"]\nallow_sha1 = "yes"', "allow_sha1 must be"),
        (
            '[[sender]]\nsender = "a@b"\ncertificates = ["ok.pem"]\n[[sender]]\nsender = "a@b"\ncertificates = ["ok.pem"]',
            "listed twice",
        ),
        ('[[sender]]\ncertificates = ["ok.pem"]', "sender must be the CAP <sender> value"),
    ],
)
def test_a_broken_trust_store_is_refused_with_what_is_wrong(
    tmp_path: Path, office: Signer, text: str, expected: str
) -> None:
    (tmp_path / "empty.pem").write_text("nothing here\n")
    (tmp_path / "ok.pem").write_bytes(office.cert_pem)
    path = tmp_path / "trust.toml"
    path.write_text(text)
    with pytest.raises(TrustFileError) as info:
        TrustPolicy.load(path)
    assert expected in str(info.value) and str(path) in str(info.value)
    assert isinstance(info.value, ValueError)


def test_certificate_paths_are_relative_to_the_trust_file(
    tmp_path: Path, office: Signer, signed: bytes
) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "nchmf.pem").write_bytes(office.cert_pem)
    (tmp_path / "conf").mkdir()
    path = tmp_path / "conf" / "trust.toml"
    path.write_text(
        f'default = "required"\n[[sender]]\nsender = "{SENDER}"\ncertificates = ["../certs/nchmf.pem"]\n'
    )
    policy = load_trust(Settings(cap_trust_file=path))
    assert policy.configured and policy.default == "required"
    assert verify_signature(signed, SENDER, policy).status is SignatureStatus.VERIFIED
    assert not load_trust(Settings()).configured


# ---------------------------------------------------------------------------------------------------
# The ingest door


def test_check_records_the_signature_and_refuses_what_the_store_refuses(
    tmp_path: Path, office: Signer, signed: bytes
) -> None:
    registry = local_registry(Settings())
    policy = trust(tmp_path, {"sender": SENDER, "certs": [office]})
    assert check(signed, registry, policy).signature.status is SignatureStatus.VERIFIED
    assert check(signed, registry).signature == UNCHECKED
    with pytest.raises(InvalidContent, match="must sign"):
        check(TYPHOON_ALERT.read_bytes(), registry, policy)
