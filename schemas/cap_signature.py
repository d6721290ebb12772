"""XML signatures on CAP alerts (CAP 1.2 section 3.3.2.1): checked against a trust store of sender keys.

The trust store (``LANTOA_CAP_TRUST_FILE``) is TOML::

    default = "optional"            # senders not listed below: "optional" or "required"

    [[sender]]
    sender = "canhbao@nchmf.gov.vn" # the CAP <sender> value, exactly
    signatures = "required"         # "required" (the default for a listed sender) or "optional"
    certificates = ["nchmf.pem"]    # PEM files, relative to this file's folder; each may hold several
                                    # certificates and/or bare public keys (BEGIN PUBLIC KEY)
    allow_sha1 = false              # RSA-SHA1 / SHA-1 digests, still common in real alerts: opt in

``verify_signature(raw, sender, policy)`` returns a ``SignatureCheck``: ``verified`` (by a trusted
key of that sender; ``signer`` is the certificate's subject CN), ``unsigned`` (no signature, and
the sender may send unsigned alerts) or ``unchecked`` (no trust store, or a signed alert from a
sender the store does not list while its default allows that: nobody to check it against). It
raises ``InvalidContent(reason)`` for what must be refused: an unsigned alert from a sender that
must sign, a signature that does not verify (the alert was changed), a signer that is not one of
the sender's trusted keys, a signature that does not cover the whole alert, SHA-1 without
``allow_sha1``, an expired trusted certificate.

Only one form of signature is accepted, the one CAP describes: a single ``ds:Signature``, a child
of ``<alert>`` (after the last ``<info>``), with a single ``Reference URI=""`` whose transforms are
the enveloped-signature transform and canonicalisation. A reference to an Id, an XPath, several
references, several signatures or a signature nested elsewhere (the shapes of signature-wrapping
attacks) are refused before any cryptography, and after verification the XML that signxml reports
as signed is compared with the whole alert.

Callers verify after ``schemas.cap.parse_cap`` accepted the bytes (so DTDs and entities were already
refused); the XML is parsed again here with lxml, without entities, DTDs or network. Cryptography is
signxml's; certificates are pinned (the trust store names the keys; no CA chain is consulted), their
validity period is checked at verification time.
"""

from __future__ import annotations

import binascii
import copy
import re
import tomllib
from base64 import b64decode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
    load_pem_public_key,
)
from lxml import etree
from signxml.algorithms import CanonicalizationMethod, DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, SignXMLException
from signxml.verifier import SignatureConfiguration, VerifyResult, XMLVerifier

from schemas.errors import InvalidContent
from schemas.settings import Settings

__all__ = [
    "Requirement",
    "SenderTrust",
    "SignatureCheck",
    "SignatureStatus",
    "TrustFileError",
    "TrustPolicy",
    "UNCHECKED",
    "TrustedKey",
    "load_trust",
    "verify_signature",
]

DS: Final = "http://www.w3.org/2000/09/xmldsig#"
DSIG11: Final = "http://www.w3.org/2009/xmldsig11#"
ENVELOPED: Final = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
_C14N_METHODS: Final = frozenset(m.value for m in CanonicalizationMethod)
_SIGNATURE: Final = f"{{{DS}}}Signature"
_NCNAME: Final = re.compile(r"[^\W\d][\w.-]*")


class SignatureStatus(StrEnum):
    VERIFIED = "verified"
    UNSIGNED = "unsigned"
    UNCHECKED = "unchecked"


class Requirement(StrEnum):
    REQUIRED = "required"
    OPTIONAL = "optional"


@dataclass(frozen=True)
class SignatureCheck:
    """What the signature check found; refusals are raised, never returned."""

    status: SignatureStatus
    signer: str | None = None


UNCHECKED: Final = SignatureCheck(SignatureStatus.UNCHECKED)


class TrustFileError(ValueError):
    """The trust store cannot be used (unreadable, not TOML, a wrong field, a certificate file that
    holds no certificate). The message names the file and what is wrong; a process refuses to start."""


@dataclass(frozen=True)
class TrustedKey:
    """One key a sender signs with: from a pinned certificate, or a bare public key (for senders
    whose signatures carry only a KeyValue, as USGS's do)."""

    name: str
    spki: bytes  # SubjectPublicKeyInfo DER: what signing keys are compared by
    certificate: x509.Certificate | None = None


@dataclass(frozen=True)
class SenderTrust:
    sender: str
    signatures: Requirement
    keys: tuple[TrustedKey, ...]
    allow_sha1: bool = False


@dataclass(frozen=True)
class TrustPolicy:
    """The trust store, read once at start. ``empty()``: no store configured, nothing is checked."""

    default: Requirement = Requirement.OPTIONAL
    senders: Mapping[str, SenderTrust] = field(default_factory=dict)
    path: Path | None = None

    @property
    def configured(self) -> bool:
        return self.path is not None

    @classmethod
    def empty(cls) -> TrustPolicy:
        return cls()

    @classmethod
    def load(cls, path: Path) -> TrustPolicy:
        """Read and check the whole store; TrustFileError (a ValueError) names what is wrong."""
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise TrustFileError(f"cannot read the CAP trust store {path}: {exc.strerror or exc}") from None
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise TrustFileError(f"CAP trust store {path} is not TOML: {exc}") from None
        _only(data, {"default", "sender"}, f"CAP trust store {path}")
        default = _requirement(data.get("default", "optional"), f"CAP trust store {path}: default")
        entries = data.get("sender", [])
        if not isinstance(entries, list):
            raise TrustFileError(f"CAP trust store {path}: [[sender]] must be tables")
        senders: dict[str, SenderTrust] = {}
        for n, entry in enumerate(entries, start=1):
            where = f"CAP trust store {path}: sender #{n}"
            if not isinstance(entry, dict):
                raise TrustFileError(f"{where} is not a table")
            trust = _sender(entry, path.parent, where)
            if trust.sender in senders:
                raise TrustFileError(f"{where}: sender {trust.sender!r} is listed twice")
            senders[trust.sender] = trust
        return cls(default, senders, path)


def load_trust(settings: Settings) -> TrustPolicy:
    """The trust store every door uses: ``settings.cap_trust_file``, or empty when none is set."""
    if settings.cap_trust_file is None:
        return TrustPolicy.empty()
    return TrustPolicy.load(settings.cap_trust_file)


def _only(table: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:  # a typo such as allow_sha_1 must not pass silently
        raise TrustFileError(f"{where}: unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")


def _requirement(value: object, where: str) -> Requirement:
    try:
        return Requirement(str(value)) if isinstance(value, str) else Requirement("")
    except ValueError:
        raise TrustFileError(f'{where} must be "required" or "optional", not {value!r}') from None


def _sender(entry: Mapping[str, Any], folder: Path, where: str) -> SenderTrust:
    _only(entry, {"sender", "signatures", "certificates", "allow_sha1"}, where)
    sender = entry.get("sender")
    if not isinstance(sender, str) or not sender:
        raise TrustFileError(f"{where}: sender must be the CAP <sender> value")
    where = f"{where} ({sender})"
    signatures = _requirement(entry.get("signatures", "required"), f"{where}: signatures")
    allow_sha1 = entry.get("allow_sha1", False)
    if not isinstance(allow_sha1, bool):
        raise TrustFileError(f"{where}: allow_sha1 must be true or false")
    files = entry.get("certificates")
    if not isinstance(files, list) or not files or not all(isinstance(f, str) and f for f in files):
        raise TrustFileError(f"{where}: certificates must list at least one PEM file")
    keys: list[TrustedKey] = []
    for name in files:
        keys.extend(_read_pem(folder / name, where))
    return SenderTrust(sender, signatures, tuple(keys), allow_sha1)


def _read_pem(path: Path, where: str) -> list[TrustedKey]:
    """Every certificate and bare public key in one PEM file (at least one, or TrustFileError)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise TrustFileError(f"{where}: cannot read {path}: {exc.strerror or exc}") from None
    keys: list[TrustedKey] = []
    try:
        if b"-----BEGIN CERTIFICATE-----" in text:
            for cert in x509.load_pem_x509_certificates(text):
                keys.append(TrustedKey(_subject(cert), _spki(cert.public_key()), cert))
        for block in text.split(b"-----BEGIN PUBLIC KEY-----")[1:]:
            pem = b"-----BEGIN PUBLIC KEY-----" + block.split(b"-----END PUBLIC KEY-----")[0]
            key = load_pem_public_key(pem + b"-----END PUBLIC KEY-----\n")
            keys.append(TrustedKey(f"public key in {path.name}", _spki(key)))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise TrustFileError(f"{where}: {path} holds an unreadable certificate or key: {exc}") from None
    if not keys:
        raise TrustFileError(f"{where}: {path} holds no PEM certificate or public key")
    return keys


def _spki(key: PublicKeyTypes) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _subject(cert: x509.Certificate) -> str:
    cns = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    if cns:
        return str(cns[0].value)
    return cert.subject.rfc4514_string() or f"certificate serial {cert.serial_number}"


# ---------------------------------------------------------------------------------------------------
# Verification


def _parser() -> etree.XMLParser:
    # No entity, no DTD, no network: parse_cap refused DTDs already; this is the second line.
    return etree.XMLParser(resolve_entities=False, load_dtd=False, no_network=True, huge_tree=False)


class _Verifier(XMLVerifier):
    """signxml's verifier with one correction: inclusive canonicalisation of an element that is not
    the root of its tree. libxml2 2.14 (lxml 6) writes a spurious ``xmlns=""`` on the grandchildren
    of such an element when an ancestor has a default namespace, so the ``SignedInfo`` of a CAP
    signature (inside ``<alert xmlns="urn:oasis:...">``) canonicalises wrongly and conformant
    signatures (the USGS ones, inclusive C14N) fail. The element is copied out as the root of a tree
    of its own, carrying every namespace in scope, which is what inclusive C14N of a subtree means."""

    def _c14n(
        self, nodes: Any, algorithm: CanonicalizationMethod, inclusive_ns_prefixes: Any = None
    ) -> bytes:
        exclusive = algorithm.value.startswith("http://www.w3.org/2001/10/xml-exc-c14n#")
        if not exclusive and isinstance(nodes, etree._Element) and nodes.getparent() is not None:
            nodes = _detached(nodes)
        out: bytes = super()._c14n(nodes, algorithm=algorithm, inclusive_ns_prefixes=inclusive_ns_prefixes)
        return out


def _detached(node: etree._Element) -> etree._Element:
    apex = etree.Element(node.tag, attrib=dict(node.attrib), nsmap=node.nsmap)
    apex.text = node.text
    for child in node:
        apex.append(copy.deepcopy(child))
    return etree.fromstring(etree.tostring(apex), _parser())


def _config(allow_sha1: bool, at: datetime | None) -> SignatureConfiguration:
    methods = frozenset(m for m in SignatureMethod if not m.name.startswith("HMAC"))
    digests = frozenset(DigestAlgorithm)
    if not allow_sha1:
        methods = frozenset(m for m in methods if "SHA1" not in m.name)
        digests = frozenset(d for d in digests if "SHA1" not in d.name)
    return SignatureConfiguration(
        location="./",  # a child of <alert>, nowhere else
        expect_references=1,
        signature_methods=methods,
        digest_algorithms=digests,
        verification_time=at,
    )


def verify_signature(
    raw: bytes, sender: str, policy: TrustPolicy, *, at: datetime | None = None
) -> SignatureCheck:
    """Check the XML signature of an alert already accepted by ``parse_cap``, for its ``sender``.

    ``at``: the time certificates must be valid at (default: now). Raises InvalidContent(reason)
    for every refusal (see the module docstring); returns verified, unsigned or unchecked."""
    try:
        root = etree.fromstring(raw, _parser())
    except etree.XMLSyntaxError as exc:
        raise InvalidContent(f"XML signature check: not XML: {exc}") from None
    signatures = list(root.iter(_SIGNATURE))
    entry = policy.senders.get(sender)
    requirement = entry.signatures if entry is not None else policy.default
    if not signatures:
        if policy.configured and requirement is Requirement.REQUIRED:
            raise InvalidContent(f"unsigned CAP alert: sender {sender!r} must sign its alerts (trust store)")
        return SignatureCheck(SignatureStatus.UNSIGNED)
    if entry is None:
        if policy.configured and requirement is Requirement.REQUIRED:
            raise InvalidContent(
                f"CAP signature cannot be checked: the trust store has no key for sender {sender!r}"
            )
        return UNCHECKED
    signature = _the_signature(root, signatures)
    _check_schema(signature)
    _check_algorithms(signature, entry)
    return _verify(raw, root, signature, entry, at)


def _the_signature(root: etree._Element, signatures: Sequence[etree._Element]) -> etree._Element:
    """The one signature, enveloped over the whole alert, or InvalidContent saying what it is instead."""
    if len(signatures) > 1:
        raise InvalidContent(
            f"CAP alert carries {len(signatures)} XML signatures: exactly one, over the whole alert, is accepted"
        )
    [signature] = signatures
    if signature.getparent() is not root:
        parent = signature.getparent()
        where = etree.QName(parent).localname if parent is not None else "?"
        raise InvalidContent(
            f"XML signature inside <{where}>: it must be a child of <alert> and sign the whole alert"
        )
    signed_info = signature.find(f"{{{DS}}}SignedInfo")
    if signed_info is None:
        raise InvalidContent("XML signature has no SignedInfo")
    references = signed_info.findall(f"{{{DS}}}Reference")
    if len(references) != 1:
        raise InvalidContent(
            f'XML signature has {len(references)} references: exactly one, over the whole alert (URI=""), is accepted'
        )
    [reference] = references
    uri = reference.get("URI")
    if uri != "":
        raise InvalidContent(
            f'XML signature covers only part of the alert (Reference URI={uri!r}); it must sign the whole alert (URI="")'
        )
    algorithms = [
        t.get("Algorithm") or "" for t in reference.iterfind(f"{{{DS}}}Transforms/{{{DS}}}Transform")
    ]
    other = [a for a in algorithms if a != ENVELOPED and a not in _C14N_METHODS]
    if other:
        raise InvalidContent(
            f"XML signature transform {other[0]!r} refused: only enveloped-signature and canonicalisation"
        )
    if ENVELOPED not in algorithms:
        raise InvalidContent("XML signature is not enveloped (no enveloped-signature transform)")
    return signature


def _check_schema(signature: etree._Element) -> None:
    """The signature against the XML-DSig schema (signxml's copy of it), with one allowance: an ``Id``
    on ``<Signature>`` that is not an xs:ID (Canada's NAADS writes ``Id="NAADS Signature"``) is left
    out. Nothing can refer to it, since the only reference accepted is URI="", and it is not signed."""
    detached = etree.fromstring(etree.tostring(signature), _parser())
    ident = detached.get("Id")
    if ident is not None and not _NCNAME.fullmatch(ident):
        del detached.attrib["Id"]
    try:
        _Verifier().validate_schema(detached)  # type: ignore[no-untyped-call]  # signxml leaves it untyped
    except etree.DocumentInvalid as exc:
        raise InvalidContent(f"XML signature is not valid XML-DSig: {_line(exc)}") from None


def _check_algorithms(signature: etree._Element, entry: SenderTrust) -> None:
    if entry.allow_sha1:
        return
    used = [
        e.get("Algorithm") or "" for e in signature.iter(f"{{{DS}}}SignatureMethod", f"{{{DS}}}DigestMethod")
    ]
    for algorithm in used:
        if algorithm.rsplit("#", 1)[-1].lower().endswith("sha1"):
            raise InvalidContent(
                f"XML signature uses SHA-1 ({algorithm.rsplit('#', 1)[-1]}), which the trust store does not "
                f"allow for sender {entry.sender!r} (allow_sha1 = true accepts it)"
            )


def _embedded_keys(signature: etree._Element) -> list[tuple[str, bytes, x509.Certificate | None]]:
    """The keys the signature's KeyInfo names: (description, SPKI DER, certificate or None)."""
    found: list[tuple[str, bytes, x509.Certificate | None]] = []
    key_info = signature.find(f"{{{DS}}}KeyInfo")
    if key_info is None:
        return found
    try:
        for element in key_info.iterfind(f"{{{DS}}}X509Data/{{{DS}}}X509Certificate"):
            cert = x509.load_der_x509_certificate(b64decode(element.text or ""))
            found.append((_subject(cert), _spki(cert.public_key()), cert))
        for element in key_info.iterfind(f"{{{DS}}}KeyValue/{{{DS}}}RSAKeyValue"):
            modulus = element.findtext(f"{{{DS}}}Modulus") or ""
            exponent = element.findtext(f"{{{DS}}}Exponent") or ""
            numbers = rsa.RSAPublicNumbers(_long(exponent), _long(modulus))
            found.append(("an RSA key (KeyValue)", _spki(numbers.public_key()), None))
        for element in key_info.iterfind(f"{{{DSIG11}}}DEREncodedKeyValue"):
            found.append(("a DER key", _spki(load_der_public_key(b64decode(element.text or ""))), None))
    except (ValueError, binascii.Error, UnsupportedAlgorithm) as exc:
        raise InvalidContent(f"XML signature KeyInfo holds an unreadable key or certificate: {exc}") from None
    return found


def _long(text: str) -> int:
    return int.from_bytes(b64decode("".join(text.split())), "big")


# What a refused verification raises: signxml's errors, lxml's (the XML-DSig schema), cryptography's
# own InvalidSignature (signxml lets it through on the KeyValue path), ValueError (bad base64, a
# malformed number). Each becomes the reason of the refusal; nothing else is caught.
_REFUSED: Final = (SignXMLException, etree.LxmlError, CryptoInvalidSignature, ValueError)


def _verify(
    raw: bytes, root: etree._Element, signature: etree._Element, entry: SenderTrust, at: datetime | None
) -> SignatureCheck:
    config = _config(entry.allow_sha1, at)
    has_x509 = signature.find(f"{{{DS}}}KeyInfo/{{{DS}}}X509Data") is not None
    errors: list[tuple[TrustedKey, Exception]] = []
    for key in entry.keys:
        try:
            if key.certificate is not None:
                result = _one(
                    _Verifier().verify(
                        raw,
                        x509_cert=key.certificate,
                        parser=_parser(),
                        expect_config=config,
                        validate_schema=False,
                    )
                )
            elif has_x509:  # a bare key cannot stand in for the certificate the signature names
                continue
            else:
                bare = replace(config, require_x509=False)
                result = _one(
                    _Verifier().verify(raw, parser=_parser(), expect_config=bare, validate_schema=False)
                )
                if _spki(load_pem_public_key(result.signature_key)) != key.spki:
                    continue  # verified, but with the KeyValue's own key, not this trusted one
        except _REFUSED as exc:
            errors.append((key, exc))
            continue
        _check_whole(root, result.signed_xml)
        signer = _subject(key.certificate) if key.certificate is not None else None
        return SignatureCheck(SignatureStatus.VERIFIED, signer)
    raise InvalidContent(_refusal(signature, entry, errors))


def _one(result: VerifyResult | list[VerifyResult]) -> VerifyResult:
    assert not isinstance(result, list)  # expect_references=1 gives one result
    return result


def _check_whole(root: etree._Element, signed: etree._Element | None) -> None:
    """What signxml reports as signed must be the whole alert without its signature."""
    whole = copy.deepcopy(root)
    for sig in list(whole.iter(_SIGNATURE)):
        _remove_keeping_tail(sig)
    if signed is None or etree.tostring(signed, method="c14n") != etree.tostring(whole, method="c14n"):
        raise InvalidContent("XML signature does not cover the whole alert")


def _remove_keeping_tail(element: etree._Element) -> None:
    parent = element.getparent()
    assert parent is not None
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)


def _refusal(
    signature: etree._Element, entry: SenderTrust, errors: Sequence[tuple[TrustedKey, Exception]]
) -> str:
    """The one reason for a signature no trusted key verified, the most telling first."""
    sender = entry.sender
    for _, exc in errors:
        if isinstance(exc, InvalidDigest):  # a trusted key signed; the content is not what it signed
            return f"XML signature does not verify: the alert was changed after sender {sender!r} signed it"
    trusted = {k.spki for k in entry.keys}
    embedded = _embedded_keys(signature)
    if embedded and not any(spki in trusted for _, spki, _ in embedded):
        return f"untrusted signer: the alert is signed by {embedded[0][0]}, not by a trusted key of sender {sender!r}"
    for key, exc in errors:
        if isinstance(exc, InvalidCertificate):
            return f"trusted certificate {key.name} of sender {sender!r} cannot be used: {_line(exc)}"
    for _, exc in errors:
        if isinstance(exc, InvalidInput):
            return f"XML signature refused: {_line(exc)}"
    return f"XML signature does not verify with any trusted key of sender {sender!r} (altered, or signed by another key)"


def _line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= 300 else text[:297] + "..."
