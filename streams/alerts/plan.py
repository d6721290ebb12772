"""What a parsed CAP alert becomes: its lane, its zones, and whether it is an exercise. Pure.

Decisions (ARCHITECTURE invariant 6):
- Lane: an ``info`` with urgency Immediate/Expected *and* severity Extreme/Severe is an emergency
  info; the most urgent info wins, so one emergency info puts the whole alert on the emergency
  lane. Every info counts, whatever its language (a bilingual alert must not fall to the priority
  lane because its emergency text is in English). Everything else is a priority bulletin.
  A ``Cancel`` always takes the emergency lane: stopping a repeating emergency must never queue
  behind bulletins, whatever urgency the cancel's own infos carry.
- Update and Cancel: ``references_ids`` name the earlier alerts (by identifier, the key of
  alerts.cap) that stop on every lane before this plan takes effect. An Update then airs its own
  content on its own lane (an Update may downgrade an emergency to a priority bulletin).
- Zones: the union of every ``<geocode><valueName>VN-DVHC</valueName>`` of every area of every
  info. The code's width says what it is, as in the official DVHC lists: 2 digits a province
  (every ward of it), 5 digits a ward. Widths are not guessed: province and ward code spaces
  overlap (4, 8, 25 and 91 are both a province and a ward), so "4" is refused as ambiguous
  rather than sounding the sirens of Cao Bằng for a message meant for Phường Ba Đình ("00004").
  Codes are looked up in the registry; an unknown code refuses the whole alert. No VN-DVHC code at
  all refuses it too (never "every commune by default"), except for a Cancel, which stops the
  referenced alerts wherever they went (its zones are then empty).
- Status: Actual reaches public zones. Exercise and Test are exercises: the same checks run (the
  codes must resolve), then the zones are the registry's active test zones of the provinces
  concerned, or every test zone when none of them is in those provinces; never a public zone.
  No test zone configured refuses the exercise. System and Draft are never broadcast: they raise
  `NotForBroadcast`, as do msgType Ack/Error and scope Restricted/Private (loudspeakers,
  fanpages and Zalo groups are public).
- Other channels (issue 16): an Actual alert reaches, besides the zones, the fanpages and Zalo
  groups whose ``provinces`` meet the provinces of its zones (a warning reaches every page and
  group of its provinces: subject filters are for articles) and the archive; a national page or
  group (no ``provinces``) gets national alerts only (alerts whose zones are in every province).
  Exercise and Test reach the test targets of each channel instead (those of the provinces
  concerned, national test targets, else every one), never a public one; a channel without test
  targets gets nothing. ``withdrawn`` names, per channel, the targets of the same kind (public or
  test) outside the plan: an Update takes its earlier post back there, a Cancel everywhere (an
  adapter skips a target that never had it).
- One chain, one key: an alert, its Updates and its Cancel share the idempotency uri of the
  chain's ``root`` (the earliest-sent alert it references, else itself), and each carries a
  ``version`` from its ``sent`` time (epoch seconds, above every referenced one), so an Update
  edits the posts of the alert and a Cancel takes them back, in whatever order they arrive.
- ``dry_run_json`` prints ward codes as integers, sorted; a test zone without a ward code (the
  usual case: ``zone:test-ha-noi`` has only a province) is printed as its target id, after the
  integers, so an exercise never prints a public ward it will not reach.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

from schemas.cap_model import Alert, Info, MsgType, Scope, Severity, Status, Urgency
from schemas.errors import InvalidContent
from schemas.models import MAX_VERSION, Target
from schemas.registry import Registry, province_names
from schemas.topics import Channel

__all__ = [
    "DVHC",
    "AlertPlan",
    "Lane",
    "NotForBroadcast",
    "dry_run_json",
    "exercise",
    "is_emergency",
    "lane_of",
    "plan_alert",
    "root_of",
    "version_of",
    "zones_of",
]

Lane = Literal["emergency", "priority"]
DVHC: Final = "VN-DVHC"
_EMERGENCY_URGENCY: Final = frozenset({Urgency.IMMEDIATE, Urgency.EXPECTED})
_EMERGENCY_SEVERITY: Final = frozenset({Severity.EXTREME, Severity.SEVERE})
_PROVINCE_DIGITS: Final = 2
_WARD_DIGITS: Final = 5
OTHER_CHANNELS: Final = (Channel.FANPAGE, Channel.ZALO, Channel.ARCHIVE)


class NotForBroadcast(InvalidContent):
    """A valid CAP message that must never be aired (System/Draft, Ack/Error, non-Public scope).

    A subclass of `InvalidContent` so that any caller that only knows `InvalidContent` still
    does the safe thing (never retry, never air, dead-letter with the reason); a caller that
    knows it may acknowledge the message as ignored instead of dead-lettering it.
    """


@dataclass(frozen=True, slots=True)
class AlertPlan:
    """Where and how one alert goes. For Update/Cancel, the alerts named in ``references_ids``
    stop on every lane first. ``expires`` bounds the emergency repetition (None: not given)."""

    identifier: str
    status: Status
    exercise: bool
    lane: Lane
    zones: list[Target]
    msg_type: MsgType
    references_ids: tuple[str, ...]
    expires: datetime | None
    # fanpage, zalo and archive: the targets this message reaches, and those it withdraws from
    targets: Mapping[Channel, list[Target]] = field(default_factory=dict)
    withdrawn: Mapping[Channel, list[Target]] = field(default_factory=dict)
    root: str = ""  # the chain's identifier (see the module docstring); "" means ``identifier``
    version: int = 1


def is_emergency(info: Info) -> bool:
    return info.urgency in _EMERGENCY_URGENCY and info.severity in _EMERGENCY_SEVERITY


def lane_of(alert: Alert) -> Lane:
    """Emergency if it is a Cancel or any info is an emergency info (the most urgent wins)."""
    if alert.msg_type is MsgType.CANCEL or any(is_emergency(i) for i in alert.infos):
        return "emergency"
    return "priority"


def exercise(alert: Alert) -> bool:
    """True for Exercise/Test (test zones only), False for Actual.

    Raises `NotForBroadcast` for System and Draft, which are never aired anywhere.
    """
    if alert.status in (Status.SYSTEM, Status.DRAFT):
        raise NotForBroadcast(f"status {alert.status.value}: not for broadcast")
    return alert.status in (Status.EXERCISE, Status.TEST)


def _dvhc_codes(alert: Alert) -> list[str]:
    codes: list[str] = []
    for info in alert.infos:
        for area in info.areas:
            for name, value in area.geocodes:
                if name.strip() == DVHC and value.strip() not in codes:
                    codes.append(value.strip())
    return codes


@dataclass(frozen=True, slots=True)
class _Official:
    """Every official zone by province and by ward, active or not: an inactive zone is a known code
    that cannot play, not an unknown one (the registry's own indexes only hold active zones)."""

    by_province: dict[int, list[Target]]
    by_ward: dict[int, Target]

    @classmethod
    def of(cls, registry: Registry) -> _Official:
        by_province: dict[int, list[Target]] = {}
        by_ward: dict[int, Target] = {}
        for t in registry.targets.values():
            if t.channel is Channel.LOUDSPEAKER and not t.test and t.ward_code is not None:
                by_ward[t.ward_code] = t
                if t.province_code is not None:
                    by_province.setdefault(t.province_code, []).append(t)
        return cls(by_province, by_ward)

    def resolve(self, code: str) -> list[Target]:
        """The active zones of one VN-DVHC code; raises `InvalidContent` if the code is bad or unknown."""
        if not (code.isascii() and code.isdigit()):
            raise InvalidContent(f"{DVHC} code {code[:20]!r} is not a number")
        number = int(code)
        if len(code) == _PROVINCE_DIGITS:
            zones, what = self.by_province.get(number, []), "province"
        elif len(code) == _WARD_DIGITS:
            ward = self.by_ward.get(number)
            zones, what = ([ward] if ward else []), "ward"
        else:
            raise InvalidContent(
                f"{DVHC} code {code!r}: write a province with 2 digits (e.g. '42') and a ward with 5 (e.g. '00004'); "
                "other widths are ambiguous"
            )
        if not zones:
            raise InvalidContent(f"{DVHC} code {code!r}: no {what} with code {number}")
        return [t for t in zones if t.active]


def zones_of(alert: Alert, registry: Registry) -> list[Target]:
    """The public zones an alert targets, sorted by ward code.

    Raises `InvalidContent` for a malformed or unknown code, for no VN-DVHC code at all, and
    when every targeted zone is inactive.
    """
    codes = _dvhc_codes(alert)
    if not codes:
        raise InvalidContent(f"no {DVHC} area: refusing to alert every commune by default")
    official = _Official.of(registry)
    chosen: dict[str, Target] = {}
    for code in codes:
        for zone in official.resolve(code):
            chosen[zone.id] = zone
    if not chosen:
        raise InvalidContent(f"{DVHC} {', '.join(codes)}: every targeted zone is inactive")
    return sorted(chosen.values(), key=lambda t: (t.ward_code or 0, t.id))


def _test_zones(public: list[Target], registry: Registry, status: Status) -> list[Target]:
    tests = registry.test_targets(Channel.LOUDSPEAKER)
    if not tests:
        raise InvalidContent(
            f"status {status.value}: no test zones configured (an exercise never reaches public zones)"
        )
    provinces = {z.province_code for z in public}
    local = [t for t in tests if t.province_code in provinces]
    return sorted(local or tests, key=lambda t: t.id)


def root_of(alert: Alert) -> str:
    """The identifier an alert's chain is keyed by: the earliest-sent alert it references, else
    its own. (A chain whose later messages stop listing the first one starts a new key.)"""
    if not alert.references:
        return alert.identifier
    return min(alert.references, key=lambda r: (r.sent, r.identifier)).identifier


def version_of(alert: Alert) -> int:
    """Its version in the chain: ``sent`` in epoch seconds, and above every referenced alert's (an
    office's clock may lag the one that sent the original)."""
    version = int(alert.sent.timestamp())
    for ref in alert.references:
        version = max(version, int(ref.sent.timestamp()) + 1)
    return min(max(version, 1), MAX_VERSION)


def _meets(target: Target, provinces: set[int], national: bool) -> bool:
    return bool(provinces.intersection(target.provinces)) if target.provinces else national


def _other_targets(
    alert: Alert, zones: list[Target], registry: Registry, is_exercise: bool
) -> tuple[dict[Channel, list[Target]], dict[Channel, list[Target]]]:
    provinces = {z.province_code for z in zones if z.province_code is not None}
    every = {int(t.province_code) for t in registry.public_zones() if t.province_code is not None}
    national = bool(every) and every <= provinces
    reached: dict[Channel, list[Target]] = {}
    withdrawn: dict[Channel, list[Target]] = {}
    for channel in OTHER_CHANNELS:
        kind = [t for t in registry.channel_targets(channel) if t.test == is_exercise]
        if alert.msg_type is MsgType.CANCEL:
            chosen: list[Target] = []
        elif channel is Channel.ARCHIVE:
            chosen = kind
        elif is_exercise:
            chosen = [t for t in kind if not t.provinces or provinces.intersection(t.provinces)] or kind
        else:
            chosen = [t for t in kind if _meets(t, provinces, national)]
        ids = {t.id for t in chosen}
        reached[channel] = chosen
        withdrawn[channel] = [t for t in kind if t.id not in ids] if alert.references else []
    return reached, withdrawn


def plan_alert(alert: Alert, registry: Registry) -> AlertPlan:
    """Decide lane, zones and exercise flag. Raises `NotForBroadcast` or `InvalidContent`."""
    if alert.scope is not Scope.PUBLIC:
        raise NotForBroadcast(f"scope {alert.scope.value}: not for public broadcast")
    if alert.msg_type in (MsgType.ACK, MsgType.ERROR):
        raise NotForBroadcast(f"msgType {alert.msg_type.value}: not for broadcast")
    is_exercise = exercise(alert)
    if alert.msg_type is MsgType.CANCEL and not _dvhc_codes(alert):
        zones: list[Target] = []
    else:
        zones = zones_of(alert, registry)
    reached, withdrawn = _other_targets(alert, zones, registry, is_exercise)
    if zones and is_exercise:
        zones = _test_zones(zones, registry, alert.status)
    lane = lane_of(alert)
    deciding = [i for i in alert.infos if is_emergency(i)] if lane == "emergency" else list(alert.infos)
    ends = [i.expires for i in deciding if i.expires is not None]
    return AlertPlan(
        identifier=alert.identifier,
        status=alert.status,
        exercise=is_exercise,
        lane=lane,
        zones=zones,
        msg_type=alert.msg_type,
        references_ids=tuple(r.identifier for r in alert.references),
        expires=max(ends) if ends else None,
        targets=reached,
        withdrawn=withdrawn,
        root=root_of(alert),
        version=version_of(alert),
    )


def dry_run_json(plan: AlertPlan) -> dict[str, Any]:
    """``{"identifier", "status", "exercise", "lane", "zones", "targets"}`` for ``lantoa alert
    --dry-run --json``: ``targets`` has one list of target ids per channel (``loudspeaker`` the
    zones' ids, in the order of ``zones``), ``withdrawn`` those an Update or Cancel takes back."""
    wards = sorted(z.ward_code for z in plan.zones if z.ward_code is not None)
    named = sorted(z.id for z in plan.zones if z.ward_code is None)
    zones: list[int | str] = [*wards, *named]
    return {
        "identifier": plan.identifier,
        "status": plan.status.value,
        "exercise": plan.exercise,
        "lane": plan.lane,
        "zones": zones,
        "targets": {
            Channel.LOUDSPEAKER.value: [z.id for z in sorted(plan.zones, key=_zone_order)],
            **{c.value: [t.id for t in plan.targets.get(c, [])] for c in OTHER_CHANNELS},
        },
        "withdrawn": {c.value: [t.id for t in plan.withdrawn.get(c, [])] for c in OTHER_CHANNELS},
        "root": plan.root or plan.identifier,
        "version": plan.version,
    }


def _zone_order(zone: Target) -> tuple[int, int, str]:
    return (0, zone.ward_code, "") if zone.ward_code is not None else (1, 0, zone.id)


@dataclass(frozen=True)
class ApprovalScope:
    """Why an alert waits for a second person (the two-person rule, producers/approvals.py)."""

    reason: str
    provinces: tuple[int, ...]  # every province the alert reaches
    whole_provinces: tuple[int, ...]  # the provinces it reaches in every active official zone


def approval_needed(
    plan: AlertPlan, registry: Registry, max_zones: int, whole_province: bool
) -> ApprovalScope | None:
    """The scope that makes an Actual alert wait for approval, or None when it goes at once.

    Exercise and Test alerts (test zones only) and Cancels (sirens must stop at once) never wait;
    an Actual Alert or Update waits when it reaches more than ``max_zones`` zones or, with
    ``whole_province``, every active official zone of a province.
    """
    if plan.exercise or plan.status is not Status.ACTUAL or plan.msg_type is MsgType.CANCEL:
        return None
    chosen = {z.id for z in plan.zones}
    provinces = tuple(sorted({z.province_code for z in plan.zones if z.province_code is not None}))
    whole: tuple[int, ...] = ()
    if whole_province:
        whole = tuple(
            p
            for p in provinces
            if (zones := registry.zones_of_province(p)) and {z.id for z in zones} <= chosen
        )
    reasons = []
    if len(plan.zones) > max_zones:
        reasons.append(f"{len(plan.zones)} zones (more than {max_zones})")
    if whole:
        names = province_names()
        shown = ", ".join(f"{names.get(p, p)} ({p:02d})" for p in whole[:5])
        more = f" and {len(whole) - 5} more" if len(whole) > 5 else ""
        reasons.append(f"every zone of {shown}{more}")
    if not reasons:
        return None
    return ApprovalScope("Actual alert to " + " and ".join(reasons), provinces, whole)
