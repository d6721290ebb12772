"""CAP 1.1 / 1.2 alerts: typed model and a parser that refuses DTDs, entities and external references.

`parse_cap(raw)` returns an `Alert` or raises `InvalidContent(reason)` with the first failure;
the checks follow the OASIS schemas in ``shared/standards/cap/schema`` (element order and
cardinality, enumerations, date-time patterns) plus the rules the CAP text adds on top of them
(identifier and sender characters, ``references`` triples, polygon and circle syntax,
``addresses`` for Private scope, ``ceiling`` only with ``altitude``). Pure: no I/O, nothing is
ever fetched (no DTD, no entity, no XInclude, no schemaLocation, no stylesheet is followed).

Version differences kept faithful to each schema:
- date-times: CAP 1.2 restricts xs:dateTime to ``YYYY-MM-DDThh:mm:ss±hh:mm`` (no ``Z``, no
  fractions); the CAP 1.1 schema says plain xs:dateTime, so ``Z`` and fractions are accepted
  there. Both require a timezone (the model only holds aware datetimes);
- responseType ``Avoid`` and ``AllClear`` exist only in 1.2; resource ``mimeType`` is required
  only in 1.2; altitude/ceiling are decimals only in 1.2;
- an enveloped XML signature after the last ``info`` is accepted in both versions (the 1.2
  schema says so; the 1.1 schema omits it although CAP 1.1 allows signing). It is not verified.
CAP 1.0 (namespace http://www.incident.com/cap/1.0) is refused with a reason.

The model (enumerations and records) is in ``schemas.cap_model``; its names are re-exported here.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from datetime import datetime, timedelta, timezone
from enum import StrEnum
from typing import Final, TypeVar
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException

from schemas.cap_model import (
    Alert,
    Area,
    Category,
    Certainty,
    Info,
    MsgType,
    Reference,
    Resource,
    Scope,
    Severity,
    Status,
    Urgency,
)
from schemas.errors import InvalidContent
from schemas.text import invisible_in, visible
from schemas.times import checked_instant

__all__ = ["MAX_CAP_BYTES", "parse_cap"]

# Real alerts are a few kB, signed ones ~25 kB; a national alert naming every one of the 3,321 wards
# by its geocode is ~260 kB. 1 MiB holds that four times over, and is refused the same way by the
# HTTP endpoint (413, before parsing), the CLI and the stream worker (alerts.cap takes 4 MB records,
# so an oversized one reaches the worker and is dead-lettered with this reason). Checking a 1 MiB
# alert takes ~0.3-2 s of CPU, which is why the endpoint parses off its event loop.
MAX_CAP_BYTES: Final = 1_048_576
NS_CAP_11: Final = "urn:oasis:names:tc:emergency:cap:1.1"
NS_CAP_12: Final = "urn:oasis:names:tc:emergency:cap:1.2"
NS_CAP_10: Final = "http://www.incident.com/cap/1.0"
NS_XMLDSIG: Final = "http://www.w3.org/2000/09/xmldsig#"
REFUSED_DTD: Final = "XML refused: DTD/entity declarations are not allowed"


_RESPONSE_TYPES_11: Final = frozenset(
    {"Shelter", "Evacuate", "Prepare", "Execute", "Monitor", "Assess", "None"}
)
_RESPONSE_TYPES_12: Final = _RESPONSE_TYPES_11 | {"Avoid", "AllClear"}


# Content models: (local name, minOccurs, maxOccurs; -1 = unbounded), in schema order.
_Model = tuple[tuple[str, int, int], ...]
_ALERT: Final[_Model] = (
    ("identifier", 1, 1),
    ("sender", 1, 1),
    ("sent", 1, 1),
    ("status", 1, 1),
    ("msgType", 1, 1),
    ("source", 0, 1),
    ("scope", 1, 1),
    ("restriction", 0, 1),
    ("addresses", 0, 1),
    ("code", 0, -1),
    ("note", 0, 1),
    ("references", 0, 1),
    ("incidents", 0, 1),
    ("info", 0, -1),
)
_INFO: Final[_Model] = (
    ("language", 0, 1),
    ("category", 1, -1),
    ("event", 1, 1),
    ("responseType", 0, -1),
    ("urgency", 1, 1),
    ("severity", 1, 1),
    ("certainty", 1, 1),
    ("audience", 0, 1),
    ("eventCode", 0, -1),
    ("effective", 0, 1),
    ("onset", 0, 1),
    ("expires", 0, 1),
    ("senderName", 0, 1),
    ("headline", 0, 1),
    ("description", 0, 1),
    ("instruction", 0, 1),
    ("web", 0, 1),
    ("contact", 0, 1),
    ("parameter", 0, -1),
    ("resource", 0, -1),
    ("area", 0, -1),
)
_RESOURCE_11: Final[_Model] = (
    ("resourceDesc", 1, 1),
    ("mimeType", 0, 1),
    ("size", 0, 1),
    ("uri", 0, 1),
    ("derefUri", 0, 1),
    ("digest", 0, 1),
)
_RESOURCE_12: Final[_Model] = (("resourceDesc", 1, 1), ("mimeType", 1, 1)) + _RESOURCE_11[2:]
_AREA: Final[_Model] = (
    ("areaDesc", 1, 1),
    ("polygon", 0, -1),
    ("circle", 0, -1),
    ("geocode", 0, -1),
    ("altitude", 0, 1),
    ("ceiling", 0, 1),
)
_PAIR: Final[_Model] = (("valueName", 1, 1), ("value", 1, 1))

_DECL = re.compile(rb"""\A(?:\xef\xbb\xbf)?\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z][A-Za-z0-9._-]*)["']""")
_DT_12 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})()([-+][0-9]{2}:[0-9]{2})"
)
_DT_11 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?(Z|[-+][0-9]{2}:[0-9]{2})?"
)
_DECIMAL = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_POINT = re.compile(rf"({_DECIMAL}),({_DECIMAL})")
_CIRCLE = re.compile(rf"({_DECIMAL}),({_DECIMAL})\s+({_DECIMAL})")
_INTEGER = re.compile(r"[-+]?[0-9]+")
_LANGUAGE = re.compile(r"[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*")
_FORBIDDEN_IN_ID = re.compile(r"[\s,<&]")
# Identifiers and senders (the alert's and its references'): real ones are under 110 characters.
MAX_ID_CHARS = 256

_E = TypeVar("_E", bound=StrEnum)


def parse_cap(raw: bytes) -> Alert:
    """Parse and validate one CAP 1.1/1.2 alert.

    Raises `InvalidContent` (never anything else) with the first failure: too large, bad
    encoding, DTD or entity declarations, not well-formed, not CAP 1.1/1.2, or a CAP rule.
    """
    if len(raw) > MAX_CAP_BYTES:
        raise InvalidContent(f"CAP alert too large: {len(raw)} bytes (limit {MAX_CAP_BYTES})")
    if not raw.strip():
        raise InvalidContent("empty document: not a CAP alert")
    _check_utf8(raw)
    root = _parse_xml(raw)
    ns, _, local = root.tag.rpartition("}")
    ns = ns.lstrip("{")
    if ns == NS_CAP_10:
        raise InvalidContent("CAP 1.0 is not supported: send CAP 1.1 or 1.2")
    if local != "alert" or ns not in (NS_CAP_11, NS_CAP_12):
        raise InvalidContent(f"not a CAP 1.1/1.2 alert: root element is {_show(root.tag)}")
    version = "1.2" if ns == NS_CAP_12 else "1.1"
    return _Parser(ns, version).alert(root, hashlib.sha256(raw).hexdigest())


def _check_utf8(raw: bytes) -> None:
    """Give a clear reason for bytes that claim (or default to) UTF-8 but are not."""
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return  # UTF-16 with a BOM: expat decodes and checks it
    declared = _DECL.match(raw)
    if declared and declared.group(1).lower().replace(b"_", b"-") not in (b"utf-8", b"utf8"):
        return  # declared otherwise (e.g. ISO-8859-1): the parser decodes it
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidContent(f"not valid UTF-8 at byte {exc.start}: {exc.reason}") from None


def _parse_xml(raw: bytes) -> Element:
    try:
        root: Element = DefusedET.fromstring(raw, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException:
        raise InvalidContent(REFUSED_DTD) from None
    except ParseError as exc:
        raise InvalidContent(f"not well-formed XML: {exc}") from None
    except (LookupError, ValueError) as exc:  # pyexpat: unknown or multi-byte declared encoding
        raise InvalidContent(f"unsupported XML encoding: {exc}") from None
    return root


def _show(tag: str) -> str:
    ns, _, local = tag.rpartition("}")
    return f"<{local}> in namespace {ns.lstrip('{')!r}" if ns else f"<{local}> without a namespace"


def _nfc(text: str | None) -> str:
    """Identifiers and codes (identifier, sender, references, geocodes): NFC, as at every door."""
    return unicodedata.normalize("NFC", text or "")


def _shown(text: str | None) -> str:
    """Texts read out or shown (event, headline, description, instruction, senderName,
    areaDesc): NFC and no invisible controls (schemas/text.py ``visible``)."""
    return visible(text or "")


class _Parser:
    """One parse: the namespace and version decide the models and the date-time rule."""

    def __init__(self, ns: str, version: str) -> None:
        self.ns = ns
        self.version = version

    def alert(self, root: Element, sha: str) -> Alert:
        kids = self._sequence(root, _ALERT, "alert", signature_allowed=True)
        identifier = self._token(kids["identifier"][0], "identifier")
        sender = self._token(kids["sender"][0], "sender")
        sent = self._datetime(self._leaf(kids["sent"][0]), "alert <sent>")
        status = self._enum(kids["status"][0], Status, "alert")
        msg_type = self._enum(kids["msgType"][0], MsgType, "alert")
        scope = self._enum(kids["scope"][0], Scope, "alert")
        for name in ("source", "restriction", "addresses", "code", "note", "incidents"):
            for e in kids[name]:
                self._leaf(e)  # simple types: text only
        if scope is Scope.PRIVATE and not any(self._leaf(e).strip() for e in kids["addresses"]):
            raise InvalidContent("alert: <addresses> is required when <scope> is Private")
        references: tuple[Reference, ...] = ()
        if kids["references"]:
            references = self._references(self._leaf(kids["references"][0]))
        elif msg_type is not MsgType.ALERT:
            raise InvalidContent(
                f"alert: msgType {msg_type.value} requires <references> (sender,identifier,sent)"
            )
        infos = tuple(self._info(e, i) for i, e in enumerate(kids["info"], 1))
        return Alert(identifier, sender, sent, status, msg_type, scope, references, infos, self.version, sha)

    def _info(self, elem: Element, n: int) -> Info:
        where = f"info #{n}"
        kids = self._sequence(elem, _INFO, where)
        language = "en-US"
        if kids["language"]:
            language = self._leaf(kids["language"][0]).strip()
            if not _LANGUAGE.fullmatch(language):
                raise InvalidContent(f"{where}: <language> {language!r} is not a language tag")
        categories = tuple(self._enum(e, Category, where) for e in kids["category"])
        allowed = _RESPONSE_TYPES_12 if self.version == "1.2" else _RESPONSE_TYPES_11
        for e in kids["responseType"]:
            if self._leaf(e) not in allowed:
                raise InvalidContent(
                    f"{where}: <responseType> {self._leaf(e)!r} is not one of {', '.join(sorted(allowed))} (CAP {self.version})"
                )
        for name in ("eventCode", "parameter"):
            for e in kids[name]:
                self._pair(e, f"{where} <{name}>")
        resource_model = _RESOURCE_12 if self.version == "1.2" else _RESOURCE_11
        resources: list[Resource] = []
        for e in kids["resource"]:
            res = self._sequence(e, resource_model, f"{where} <resource>")
            for leaf in (x for xs in res.values() for x in xs):
                self._leaf(leaf)
            if res["size"] and not _INTEGER.fullmatch(self._leaf(res["size"][0]).strip()):
                raise InvalidContent(
                    f"{where} <resource>: <size> {self._leaf(res['size'][0])!r} is not an integer"
                )

            def leaf_of(name: str, res: dict[str, list[Element]] = res) -> str | None:
                return self._leaf(res[name][0]).strip() if res[name] else None

            size = leaf_of("size")
            resources.append(
                Resource(
                    desc=_shown(leaf_of("resourceDesc") or ""),
                    mime_type=leaf_of("mimeType"),
                    size=int(size) if size else None,
                    uri=leaf_of("uri"),
                    deref="".join((leaf_of("derefUri") or "").split()) or None,
                    digest=leaf_of("digest"),
                )
            )

        def opt_text(name: str) -> str | None:
            return _shown(self._leaf(kids[name][0])) if kids[name] else None

        def opt_time(name: str) -> datetime | None:
            return self._datetime(self._leaf(kids[name][0]), f"{where} <{name}>") if kids[name] else None

        for name in ("audience", "web", "contact"):
            opt_text(name)  # leaves only: no child elements
        return Info(
            language=language,
            categories=categories,
            event=_shown(self._leaf(kids["event"][0])),
            urgency=self._enum(kids["urgency"][0], Urgency, where),
            severity=self._enum(kids["severity"][0], Severity, where),
            certainty=self._enum(kids["certainty"][0], Certainty, where),
            effective=opt_time("effective"),
            onset=opt_time("onset"),
            expires=opt_time("expires"),
            headline=opt_text("headline"),
            description=opt_text("description"),
            instruction=opt_text("instruction"),
            sender_name=opt_text("senderName"),
            areas=tuple(self._area(e, f"{where} area #{i}") for i, e in enumerate(kids["area"], 1)),
            resources=tuple(resources),
        )

    def _area(self, elem: Element, where: str) -> Area:
        kids = self._sequence(elem, _AREA, where)
        polygons = tuple(self._polygon(self._leaf(e), where) for e in kids["polygon"])
        circles = tuple(self._circle(self._leaf(e), where) for e in kids["circle"])
        geocodes = tuple(self._pair(e, f"{where} <geocode>") for e in kids["geocode"])
        for name in ("altitude", "ceiling"):
            if kids[name]:
                value = self._leaf(kids[name][0])
                if self.version == "1.2" and not re.fullmatch(_DECIMAL, value.strip()):
                    raise InvalidContent(f"{where}: <{name}> {value!r} is not a decimal number")
        if kids["ceiling"] and not kids["altitude"]:
            raise InvalidContent(f"{where}: <ceiling> may only be used with <altitude>")
        return Area(_shown(self._leaf(kids["areaDesc"][0])), geocodes, polygons, circles)

    # -- structure ---------------------------------------------------------------------------

    def _sequence(
        self, elem: Element, model: _Model, where: str, signature_allowed: bool = False
    ) -> dict[str, list[Element]]:
        """Check the children against a schema sequence; return them by local name."""
        found: dict[str, list[Element]] = {name: [] for name, _, _ in model}
        if (elem.text or "").strip():
            raise InvalidContent(f"{where}: unexpected text {(elem.text or '').strip()[:40]!r}")
        pos, in_signature = 0, False
        for child in elem:
            if (child.tail or "").strip():
                raise InvalidContent(f"{where}: unexpected text {(child.tail or '').strip()[:40]!r}")
            ns, _, local = child.tag.rpartition("}")
            ns = ns.lstrip("{")
            if signature_allowed and ns == NS_XMLDSIG:
                in_signature = True  # lax: an enveloped signature is carried, not verified
                continue
            if ns != self.ns:
                raise InvalidContent(f"{where}: unexpected element {_show(child.tag)}")
            if in_signature:
                raise InvalidContent(f"{where}: <{local}> after the XML signature")
            nxt = pos
            while nxt < len(model) and model[nxt][0] != local:
                nxt += 1
            if nxt == len(model):
                if local in found:
                    raise InvalidContent(f"{where}: <{local}> is out of schema order")
                raise InvalidContent(f"{where}: unknown element <{local}>")
            self._require(model[pos:nxt], found, where)
            pos = nxt
            _, _, most = model[pos]
            if most != -1 and len(found[local]) >= most:
                raise InvalidContent(f"{where}: <{local}> may appear only once")
            found[local].append(child)
        self._require(model[pos:], found, where)
        return found

    @staticmethod
    def _require(items: _Model, found: dict[str, list[Element]], where: str) -> None:
        for name, least, _ in items:
            if len(found[name]) < least:
                raise InvalidContent(f"{where}: required element <{name}> is missing")

    @staticmethod
    def _leaf(elem: Element) -> str:
        if len(elem):
            raise InvalidContent(f"<{elem.tag.rpartition('}')[2]}> must hold text, not elements")
        return elem.text or ""

    def _pair(self, elem: Element, where: str) -> tuple[str, str]:
        kids = self._sequence(elem, _PAIR, where)
        return _nfc(self._leaf(kids["valueName"][0])), _nfc(self._leaf(kids["value"][0]))

    # -- values ------------------------------------------------------------------------------

    def _enum(self, elem: Element, kind: type[_E], where: str) -> _E:
        name = elem.tag.rpartition("}")[2]
        value = self._leaf(elem)
        allowed = ", ".join(m.value for m in kind)
        if not value:
            raise InvalidContent(f"{where}: <{name}> is empty: must be one of {allowed}")
        try:
            return kind(value)
        except ValueError:
            raise InvalidContent(f"{where}: <{name}> {value[:40]!r} is not one of {allowed}") from None

    def _token(self, elem: Element, name: str) -> str:
        value = _nfc(self._leaf(elem))
        self._check_token(value, f"alert: <{name}>")
        # This alert's own identifier and sender must be visible text; its references are not
        # refused for it, so a Cancel still reaches an alert accepted before this rule.
        if (refused := invisible_in(value, f"alert: <{name}>")) is not None:
            raise InvalidContent(refused)
        return value

    @staticmethod
    def _check_token(value: str, what: str) -> None:
        if not value:
            raise InvalidContent(f"{what} is empty")
        if len(value) > MAX_ID_CHARS:
            # An identifier travels as a Kafka key, in every command, receipt, pending entry and
            # audit record of the alert: a 900 kB one (the alert may be 1 MiB) would overflow them.
            raise InvalidContent(
                f"{what} of {len(value):,} characters exceeds the {MAX_ID_CHARS}-character limit"
            )
        bad = _FORBIDDEN_IN_ID.search(value)
        if bad:
            raise InvalidContent(
                f"{what} {value[:60]!r} contains {bad.group()!r}: spaces, commas, '<' and '&' are not allowed"
            )

    def _references(self, text: str) -> tuple[Reference, ...]:
        triples = _nfc(text).split()
        if not triples:
            raise InvalidContent("alert: <references> is empty: it must hold sender,identifier,sent triples")
        refs = []
        for triple in triples:
            parts = triple.split(",")
            if len(parts) != 3:
                raise InvalidContent(
                    f"alert: <references> entry {triple[:80]!r} is not sender,identifier,sent"
                )
            sender, identifier, sent = parts
            self._check_token(sender, "alert: <references> sender")
            self._check_token(identifier, "alert: <references> identifier")
            refs.append(Reference(sender, identifier, self._datetime(sent, "alert: <references> sent")))
        return tuple(refs)

    def _datetime(self, text: str, what: str) -> datetime:
        value = text.strip()  # xs:dateTime collapses whitespace
        pattern = _DT_12 if self.version == "1.2" else _DT_11
        m = pattern.fullmatch(value)
        example = "2002-05-24T16:49:00-07:00"
        if not m:
            raise InvalidContent(
                f"{what} {value[:40]!r} is not a CAP {self.version} date-time like {example}"
            )
        year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
        fraction, zone = m.group(7), m.group(8)
        if not zone:
            raise InvalidContent(f"{what} {value!r} has no timezone offset (e.g. {example})")
        offset = timedelta(0)
        if zone != "Z":
            zh, zm = int(zone[1:3]), int(zone[4:6])
            if zm > 59 or zh > 14 or (zh == 14 and zm):
                raise InvalidContent(f"{what} {value!r} has an invalid timezone offset")
            offset = (1 if zone[0] == "+" else -1) * timedelta(hours=zh, minutes=zm)
        end_of_day = (hour, minute, second) == (24, 0, 0) and not (fraction or "").strip(".0")
        try:
            moment = datetime(
                year,
                month,
                day,
                0 if end_of_day else hour,
                minute,
                second,
                int((fraction or ".0")[1:7].ljust(6, "0")),
                tzinfo=timezone(offset),
            )
        except ValueError as exc:
            raise InvalidContent(f"{what} {value!r} is not a valid date-time: {exc}") from None
        checked_instant(moment, what)  # before the day is added: 9999-12-31T24:00:00 would overflow
        return moment + timedelta(days=1) if end_of_day else moment

    def _polygon(self, text: str, where: str) -> tuple[tuple[float, float], ...]:
        points = []
        for pair in text.split():
            m = _POINT.fullmatch(pair)
            if not m:
                raise InvalidContent(f"{where}: <polygon> point {pair[:40]!r} is not lat,lon")
            points.append(self._latlon(m.group(1), m.group(2), where, "polygon"))
        if len(points) < 4 or points[0] != points[-1]:
            raise InvalidContent(f"{where}: <polygon> needs at least 4 points, the first equal to the last")
        return tuple(points)

    def _circle(self, text: str, where: str) -> tuple[float, float, float]:
        m = _CIRCLE.fullmatch(text.strip())
        if not m:
            raise InvalidContent(f"{where}: <circle> {text.strip()[:40]!r} is not 'lat,lon radius'")
        lat, lon = self._latlon(m.group(1), m.group(2), where, "circle")
        radius = float(m.group(3))
        if radius < 0:
            raise InvalidContent(f"{where}: <circle> radius {radius} is negative")
        return lat, lon, radius

    @staticmethod
    def _latlon(lat_s: str, lon_s: str, where: str, name: str) -> tuple[float, float]:
        lat, lon = float(lat_s), float(lon_s)
        if not (-90 <= lat <= 90 and -180 <= lon <= 180):
            raise InvalidContent(f"{where}: <{name}> point {lat_s},{lon_s} is outside WGS 84 ranges")
        return lat, lon
