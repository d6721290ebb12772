"""Alert planning: lane rules, VN-DVHC zones, exercises to test zones only, Update/Cancel, dry-run JSON."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from helpers import SHARED

from schemas.cap import parse_cap
from schemas.cap_model import (
    Alert,
    Area,
    Category,
    Certainty,
    Info,
    MsgType,
    Reference,
    Scope,
    Severity,
    Status,
    Urgency,
)
from schemas.errors import InvalidContent
from schemas.registry import Registry, build_targets
from schemas.settings import Settings
from schemas.topics import Channel
from streams.alerts.lane import EMERGENCY_MAX_DAYS, plan_records
from streams.alerts.plan import (
    NotForBroadcast,
    dry_run_json,
    exercise,
    is_emergency,
    lane_of,
    plan_alert,
    zones_of,
)

SAMPLE = SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap"
TESTDATA = SHARED / "standards" / "cap" / "testdata"
ICT = timezone(timedelta(hours=7))
SENT = datetime(2026, 9, 17, 5, 30, tzinfo=ICT)

CONFIG = {
    "loudspeaker": {
        "zones": [{"id": "zone:8", "active": False}],
        "test_zones": [
            {"id": "zone:test-ha-noi", "name": "Thử Hà Nội", "province_code": 1},
            {"id": "zone:test-ha-tinh", "name": "Thử Hà Tĩnh", "province_code": 42},
            {"id": "zone:test-off", "name": "Tắt", "province_code": 42, "active": False},
        ],
    },
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.of(build_targets(CONFIG))


@pytest.fixture(scope="module")
def no_test_zones() -> Registry:
    return Registry.of(build_targets({}))


def wards_of(*provinces: int) -> list[int]:
    """Computed from the official list directly, not through the registry."""
    from vietnam_provinces import Ward

    return sorted(int(w.code) for w in Ward.iter_all() if int(w.province_code) in provinces)


def info(
    urgency: Urgency = Urgency.IMMEDIATE,
    severity: Severity = Severity.EXTREME,
    codes: tuple[str, ...] = ("42",),
    language: str = "vi-VN",
    expires: datetime | None = None,
    other: tuple[tuple[str, str], ...] = (),
) -> Info:
    area = Area("khu vực", tuple(("VN-DVHC", c) for c in codes) + other)
    return Info(
        language,
        (Category.MET,),
        "Bão",
        urgency,
        severity,
        Certainty.OBSERVED,
        expires=expires,
        areas=(area,),
    )


def alert(
    *infos: Info,
    status: Status = Status.ACTUAL,
    msg_type: MsgType = MsgType.ALERT,
    scope: Scope = Scope.PUBLIC,
    references: tuple[Reference, ...] = (),
) -> Alert:
    return Alert("A-1", "s@example.vn", SENT, status, msg_type, scope, references, infos, "1.2", "0" * 64)


# -- the sample ---------------------------------------------------------------------------------


def test_sample_typhoon_reaches_exactly_the_147_wards_of_42_and_44(registry: Registry) -> None:
    plan = plan_alert(parse_cap(SAMPLE.read_bytes()), registry)
    expected = wards_of(42, 44)
    assert len(expected) == 147
    assert [z.ward_code for z in plan.zones] == expected
    assert all(not z.test and z.channel is Channel.LOUDSPEAKER for z in plan.zones)
    out = dry_run_json(plan)
    assert {k: out[k] for k in ("identifier", "status", "exercise", "lane", "zones")} == {
        "identifier": "VN-NCHMF-2026-0917-BAO05-01",
        "status": "Actual",
        "exercise": False,
        "lane": "emergency",
        "zones": expected,
    }
    assert out["targets"]["loudspeaker"] == [f"zone:{w}" for w in expected]
    # this registry has no page, group or archive: the zones only (tests/unit/alerts/test_alert_channels.py)
    assert out["targets"]["fanpage"] == out["targets"]["zalo"] == out["targets"]["archive"] == []
    assert orjson.loads(orjson.dumps(out)) == out  # JSON-ready as is
    assert plan.expires == datetime(2026, 9, 18, 5, 30, tzinfo=ICT)


# -- lanes --------------------------------------------------------------------------------------

EMERGENCY = {
    (u, s) for u in (Urgency.IMMEDIATE, Urgency.EXPECTED) for s in (Severity.EXTREME, Severity.SEVERE)
}


@pytest.mark.parametrize("urgency", list(Urgency))
@pytest.mark.parametrize("severity", list(Severity))
def test_lane_table(urgency: Urgency, severity: Severity) -> None:
    lane = lane_of(alert(info(urgency, severity)))
    assert lane == ("emergency" if (urgency, severity) in EMERGENCY else "priority")
    assert is_emergency(info(urgency, severity)) == ((urgency, severity) in EMERGENCY)


def test_the_most_urgent_info_wins_whatever_its_language() -> None:
    minor = info(Urgency.FUTURE, Severity.MINOR)
    severe_en = info(Urgency.EXPECTED, Severity.SEVERE, language="en-US")
    assert lane_of(alert(minor, severe_en)) == "emergency"
    assert lane_of(alert(minor, info(Urgency.PAST, Severity.EXTREME))) == "priority"
    assert lane_of(alert()) == "priority"  # no info at all


def test_cancel_takes_the_emergency_lane_update_its_own() -> None:
    ref = (Reference("s@example.vn", "A-0", SENT),)
    assert (
        lane_of(alert(info(Urgency.PAST, Severity.MINOR), msg_type=MsgType.CANCEL, references=ref))
        == "emergency"
    )
    assert lane_of(alert(msg_type=MsgType.CANCEL, references=ref)) == "emergency"
    downgrade = alert(info(Urgency.PAST, Severity.MINOR), msg_type=MsgType.UPDATE, references=ref)
    assert lane_of(downgrade) == "priority"


@pytest.mark.parametrize(
    ("name", "lane"),
    [
        ("wcatwc-warning.cap", "emergency"),
        ("weather.cap", "emergency"),
        ("australia.cap", "priority"),
        ("canada.cap", "priority"),
        ("earthquake.cap", "priority"),
    ],
)
def test_lanes_of_real_alerts(name: str, lane: str) -> None:
    assert lane_of(parse_cap((TESTDATA / name).read_bytes())) == lane


# -- zones --------------------------------------------------------------------------------------


def test_ward_code_selects_that_ward(registry: Registry) -> None:
    zones = zones_of(alert(info(codes=("00004",))), registry)
    assert [(z.id, z.ward_code, z.province_code) for z in zones] == [("zone:4", 4, 1)]


def test_province_and_ward_codes_combine_without_duplicates(registry: Registry) -> None:
    inside = str(wards_of(42)[0]).zfill(5)
    zones = zones_of(
        alert(info(codes=("42", inside, "00025")), info(codes=("42",), language="en-US")), registry
    )
    assert [z.ward_code for z in zones] == sorted(wards_of(42) + [25])


def test_province_and_ward_codes_overlap_so_width_decides(registry: Registry) -> None:
    # 4 is Cao Bằng and Phường Ba Đình; 25 is Phú Thọ and Phường Giảng Võ: the data really overlaps.
    assert {z.province_code for z in zones_of(alert(info(codes=("04",))), registry)} == {4}
    assert len(zones_of(alert(info(codes=("04",))), registry)) == len(wards_of(4))
    assert [z.ward_code for z in zones_of(alert(info(codes=("00025",))), registry)] == [25]
    for code in ("4", "425", "0004", "000004"):
        with pytest.raises(InvalidContent, match=f"VN-DVHC code '{code}': write a province with 2 digits"):
            zones_of(alert(info(codes=(code,))), registry)


@pytest.mark.parametrize(
    ("codes", "why"),
    [
        (("70",), "VN-DVHC code '70': no province with code 70"),
        (("99999",), "VN-DVHC code '99999': no ward with code 99999"),
        (("42", "abc"), "VN-DVHC code 'abc' is not a number"),
        (("",), "VN-DVHC code '' is not a number"),
        (("٤٢",), "is not a number"),  # Arabic-Indic digits are digits to Python, not to DVHC
        (("00008",), "every targeted zone is inactive"),
    ],
)
def test_bad_codes_refuse_the_alert(registry: Registry, codes: tuple[str, ...], why: str) -> None:
    with pytest.raises(InvalidContent, match=why):
        plan_alert(alert(info(codes=codes)), registry)


def test_inactive_zones_are_left_out_of_a_province(registry: Registry) -> None:
    zones = zones_of(alert(info(codes=("01",))), registry)
    assert 8 not in {z.ward_code for z in zones} and len(zones) == len(wards_of(1)) - 1


def test_no_vn_dvhc_area_is_refused(registry: Registry) -> None:
    for foreign in ("weather.cap", "no_optional_fields.cap", "australia.cap"):
        with pytest.raises(
            InvalidContent, match="no VN-DVHC area: refusing to alert every commune by default"
        ):
            plan_alert(parse_cap((TESTDATA / foreign).read_bytes()), registry)
    with pytest.raises(InvalidContent, match="no VN-DVHC area"):
        zones_of(alert(info(codes=(), other=(("SAME", "006109"),))), registry)


def test_geocode_whitespace_is_tolerated(registry: Registry) -> None:
    area = Area("x", ((" VN-DVHC\n", "\n  44 "),))
    one = replace(info(), areas=(area,))
    assert [z.ward_code for z in zones_of(alert(one), registry)] == wards_of(44)


# -- status: exercises and what is never broadcast ----------------------------------------------


@pytest.mark.parametrize("status", [Status.EXERCISE, Status.TEST])
def test_exercise_and_test_go_to_test_zones_only(registry: Registry, status: Status) -> None:
    plan = plan_alert(alert(info(codes=("42", "44")), status=status), registry)
    assert plan.exercise is True and exercise(alert(status=status)) is True
    assert [z.id for z in plan.zones] == ["zone:test-ha-tinh"]  # the inactive test zone is left out
    assert all(z.test for z in plan.zones)
    out = dry_run_json(plan)
    assert {k: out[k] for k in ("identifier", "status", "exercise", "lane", "zones")} == {
        "identifier": "A-1",
        "status": status.value,
        "exercise": True,
        "lane": "emergency",
        "zones": ["zone:test-ha-tinh"],
    }
    assert out["targets"]["loudspeaker"] == ["zone:test-ha-tinh"]


def test_exercise_outside_any_test_province_goes_to_every_test_zone(registry: Registry) -> None:
    plan = plan_alert(alert(info(codes=("44",)), status=Status.EXERCISE), registry)
    assert [z.id for z in plan.zones] == ["zone:test-ha-noi", "zone:test-ha-tinh"]
    assert not any(z.ward_code for z in plan.zones)


def test_exercise_ward_selects_the_test_zone_of_its_province(registry: Registry) -> None:
    plan = plan_alert(alert(info(codes=("00004",)), status=Status.TEST), registry)
    assert [z.id for z in plan.zones] == ["zone:test-ha-noi"]


def test_exercise_is_checked_like_the_real_thing(registry: Registry) -> None:
    with pytest.raises(InvalidContent, match="no province with code 70"):
        plan_alert(alert(info(codes=("70",)), status=Status.EXERCISE), registry)
    with pytest.raises(InvalidContent, match="no VN-DVHC area"):
        plan_alert(alert(info(codes=()), status=Status.EXERCISE), registry)


def test_exercise_without_test_zones_is_refused(no_test_zones: Registry) -> None:
    with pytest.raises(InvalidContent, match="status Exercise: no test zones configured"):
        plan_alert(alert(info(), status=Status.EXERCISE), no_test_zones)


def test_test_zone_with_a_ward_code_prints_it() -> None:
    reg = Registry.of(
        build_targets(
            {
                "loudspeaker": {
                    "test_zones": [
                        {"id": "zone:test-ba-dinh", "name": "t", "province_code": 1, "ward_code": 4}
                    ]
                }
            }
        )
    )
    plan = plan_alert(alert(info(codes=("01",)), status=Status.TEST), reg)
    assert dry_run_json(plan)["zones"] == [4] and plan.zones[0].test


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"status": Status.SYSTEM}, "status System: not for broadcast"),
        ({"status": Status.DRAFT}, "status Draft: not for broadcast"),
        ({"msg_type": MsgType.ACK}, "msgType Ack: not for broadcast"),
        ({"msg_type": MsgType.ERROR}, "msgType Error: not for broadcast"),
        ({"scope": Scope.RESTRICTED}, "scope Restricted: not for public broadcast"),
        ({"scope": Scope.PRIVATE}, "scope Private: not for public broadcast"),
    ],
)
def test_never_broadcast(registry: Registry, change: dict[str, object], why: str) -> None:
    with pytest.raises(NotForBroadcast, match=why) as caught:
        plan_alert(replace(alert(info()), **change), registry)  # type: ignore[arg-type]
    assert isinstance(caught.value, InvalidContent)  # callers that only know InvalidContent stay safe


def test_actual_is_not_an_exercise() -> None:
    assert exercise(alert()) is False


# -- Update and Cancel --------------------------------------------------------------------------

REFS = (Reference("s@example.vn", "A-0", SENT), Reference("s@example.vn", "A-00", SENT))


def test_update_replaces_its_references(registry: Registry) -> None:
    plan = plan_alert(alert(info(codes=("44",)), msg_type=MsgType.UPDATE, references=REFS), registry)
    assert (plan.msg_type, plan.references_ids, plan.lane) == (MsgType.UPDATE, ("A-0", "A-00"), "emergency")
    assert [z.ward_code for z in plan.zones] == wards_of(44)


def test_cancel_without_area_stops_the_referenced_alerts_everywhere(registry: Registry) -> None:
    plan = plan_alert(alert(msg_type=MsgType.CANCEL, references=REFS), registry)
    assert (plan.lane, plan.zones, plan.references_ids) == ("emergency", [], ("A-0", "A-00"))
    assert dry_run_json(plan)["zones"] == []
    with pytest.raises(InvalidContent, match="no province with code 70"):  # an area given is still checked
        plan_alert(alert(info(codes=("70",)), msg_type=MsgType.CANCEL, references=REFS), registry)


def test_cancel_parsed_from_xml(registry: Registry) -> None:
    raw = (
        SAMPLE.read_bytes()
        .replace(b"<msgType>Alert</msgType>", b"<msgType>Cancel</msgType>")
        .replace(
            b"<scope>Public</scope>",
            b"<scope>Public</scope><references>canhbao@nchmf.example.vn,VN-NCHMF-2026-0917-BAO05-00,"
            b"2026-09-17T04:30:00+07:00</references>",
        )
    )
    plan = plan_alert(parse_cap(raw), registry)
    assert plan.msg_type is MsgType.CANCEL and plan.references_ids == ("VN-NCHMF-2026-0917-BAO05-00",)
    assert len(plan.zones) == 147


def test_expires_is_the_latest_of_the_deciding_infos(registry: Registry) -> None:
    soon, later, latest = (SENT + timedelta(hours=h) for h in (1, 2, 3))
    plan = plan_alert(
        alert(info(expires=soon), info(expires=later), info(Urgency.FUTURE, Severity.MINOR, expires=latest)),
        registry,
    )
    assert plan.lane == "emergency" and plan.expires == later
    assert plan_alert(alert(info(Urgency.FUTURE, Severity.MINOR, expires=latest)), registry).expires == latest
    assert plan_alert(alert(info()), registry).expires is None


# -- how long the emergency lane repeats (issue 12) ---------------------------------------------------


@pytest.mark.parametrize(
    ("expires_in", "repeats_for"),
    [
        (
            timedelta(days=EMERGENCY_MAX_DAYS),
            timedelta(days=EMERGENCY_MAX_DAYS),
        ),  # at the bound: as the alert says
        (
            timedelta(days=EMERGENCY_MAX_DAYS, seconds=1),
            timedelta(days=EMERGENCY_MAX_DAYS),
        ),  # past it: the bound
        (
            datetime(2199, 12, 31, 23, tzinfo=timezone(timedelta(hours=-14))) - SENT,
            timedelta(days=EMERGENCY_MAX_DAYS),
        ),
    ],
)
def test_an_emergency_repeats_for_at_most_the_bound(
    registry: Registry, expires_in: timedelta, repeats_for: timedelta
) -> None:
    typhoon = alert(info(expires=SENT + expires_in))
    records, commands, _ = plan_records(typhoon, plan_alert(typhoon, registry), Settings(), SENT, None, None)
    assert commands == []  # the emergency lane: one record for all the zones
    [record] = records
    assert datetime.fromisoformat(orjson.loads(record.value or b"")["expires_at"]) == SENT + repeats_for
