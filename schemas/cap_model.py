"""The typed model of a CAP alert (the enumerations of the CAP schemas and the frozen records
``Alert``, ``Info``, ``Area``, ``Reference``), as ``schemas.cap.parse_cap`` builds it. No I/O;
``schemas.cap`` re-exports every name."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

__all__ = [
    "Alert",
    "Area",
    "Category",
    "Certainty",
    "Info",
    "MsgType",
    "Reference",
    "Scope",
    "Severity",
    "Status",
    "Urgency",
]


class Status(StrEnum):
    ACTUAL = "Actual"
    EXERCISE = "Exercise"
    SYSTEM = "System"
    TEST = "Test"
    DRAFT = "Draft"


class MsgType(StrEnum):
    ALERT = "Alert"
    UPDATE = "Update"
    CANCEL = "Cancel"
    ACK = "Ack"
    ERROR = "Error"


class Scope(StrEnum):
    PUBLIC = "Public"
    RESTRICTED = "Restricted"
    PRIVATE = "Private"


class Category(StrEnum):
    GEO = "Geo"
    MET = "Met"
    SAFETY = "Safety"
    SECURITY = "Security"
    RESCUE = "Rescue"
    FIRE = "Fire"
    HEALTH = "Health"
    ENV = "Env"
    TRANSPORT = "Transport"
    INFRA = "Infra"
    CBRNE = "CBRNE"
    OTHER = "Other"


class Urgency(StrEnum):
    IMMEDIATE = "Immediate"
    EXPECTED = "Expected"
    FUTURE = "Future"
    PAST = "Past"
    UNKNOWN = "Unknown"


class Severity(StrEnum):
    EXTREME = "Extreme"
    SEVERE = "Severe"
    MODERATE = "Moderate"
    MINOR = "Minor"
    UNKNOWN = "Unknown"


class Certainty(StrEnum):
    OBSERVED = "Observed"
    LIKELY = "Likely"
    POSSIBLE = "Possible"
    UNLIKELY = "Unlikely"
    UNKNOWN = "Unknown"


@dataclass(frozen=True, slots=True)
class Reference:
    """One earlier message named in ``references`` (CAP: ``sender,identifier,sent``)."""

    sender: str
    identifier: str
    sent: datetime


@dataclass(frozen=True, slots=True)
class Area:
    """``geocodes`` are (valueName, value) pairs as written; polygons are closed (lat, lon) rings;
    circles are (lat, lon, radius_km)."""

    area_desc: str
    geocodes: tuple[tuple[str, str], ...] = ()
    polygons: tuple[tuple[tuple[float, float], ...], ...] = ()
    circles: tuple[tuple[float, float, float], ...] = ()


@dataclass(frozen=True, slots=True)
class Resource:
    """One ``resource`` of an info: ``deref`` is the ``derefUri`` content as written (base64, not
    decoded here: consumers/loudspeaker/cap_audio.py decodes, bounds and checks it)."""

    desc: str
    mime_type: str | None = None
    size: int | None = None
    uri: str | None = None
    deref: str | None = None
    digest: str | None = None


@dataclass(frozen=True, slots=True)
class Info:
    """One ``info`` block. ``language`` defaults to en-US as in the schema."""

    language: str
    categories: tuple[Category, ...]
    event: str
    urgency: Urgency
    severity: Severity
    certainty: Certainty
    effective: datetime | None = None
    onset: datetime | None = None
    expires: datetime | None = None
    headline: str | None = None
    description: str | None = None
    instruction: str | None = None
    sender_name: str | None = None
    areas: tuple[Area, ...] = ()
    resources: tuple[Resource, ...] = ()


@dataclass(frozen=True, slots=True)
class Alert:
    """A parsed, validated CAP alert. Text is Unicode NFC; datetimes are timezone-aware."""

    identifier: str
    sender: str
    sent: datetime
    status: Status
    msg_type: MsgType
    scope: Scope
    references: tuple[Reference, ...]
    infos: tuple[Info, ...]
    version: str  # "1.1" | "1.2"
    raw_sha256: str
