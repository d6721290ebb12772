"""JSON, iCalendar and M3U8 renderings of a day's schedule."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import icalendar
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.loudspeaker.outputs import PRODID, ics_uid, to_ics, to_json, to_m3u
from consumers.loudspeaker.scheduler import (
    Bulletin,
    DaySchedule,
    correction_for,
    default_expiry,
    schedule_day,
)
from schemas.models import Priority
from schemas.windows import ZoneWindows

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
MONDAY = date(2025, 6, 2)
ZONE = "zone:4"
ZONE_NAME = "Phường Ba Đình"
BASE = "https://media.lantoa.example/audio/"


def at(hh: int, mm: int = 0, day: date = MONDAY) -> datetime:
    return datetime.combine(day, time(hh, mm), tzinfo=HCM)


def bulletin(
    bid: str, priority: Priority, duration_s: float, published_at: datetime, **extra: object
) -> Bulletin:
    return Bulletin(
        bulletin_id=bid,
        uri=f"urn:lantoa:article:{bid}",
        version=2,
        priority=priority,
        title=extra.pop("title", f"Thông báo lịch tiêm chủng mở rộng đợt {bid} tại nhà văn hóa tổ dân phố"),  # type: ignore[arg-type]
        duration_s=duration_s,
        published_at=published_at,
        expires_at=default_expiry(published_at),
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture
def day() -> DaySchedule:
    played = bulletin("old", Priority.NORMAL, 60, at(4, day=MONDAY - timedelta(days=1)), audio_path="old.mp3")
    items = [
        bulletin("n1", Priority.NORMAL, 900.4, at(1), audio_path="2025/06/n1 bản tin.mp3"),
        bulletin("p1", Priority.PRIORITY, 600, at(2), audio_url="https://cdn.example/p1.mp3"),
        bulletin(
            "n2", Priority.NORMAL, 1800, at(3), audio_path="n2.mp3", title="Tin\nnhiều dòng, có dấu phẩy"
        ),
        correction_for(played, "Sai giờ", 25, issued_at=at(4), audio_path="fix.mp3"),
    ]
    zone = ZoneWindows.from_config(ZONE, {"windows": ["06:00-06:30", "18:00-18:45"]})
    return schedule_day(
        ZONE, zone, items, MONDAY, played={"old"}, now=at(4, 30), retracted={played.uri: (2, at(4))}
    )


def test_fixture_schedule(day: DaySchedule) -> None:
    assert [(s.bulletin_id.split("~")[0], f"{s.start:%H:%M:%S}") for s in day] == [
        ("p1", "06:00:00"),
        ("old", "06:10:00"),  # the correction: first among normal bulletins
        ("n1", "06:10:25"),
        ("n2", "18:00:00"),
    ]


def test_json_shape(day: DaySchedule) -> None:
    out = to_json(day)
    assert json.loads(json.dumps(out)) == out  # JSON-ready as is
    assert out["zone"] == ZONE and out["date"] == "2025-06-02" and out["timezone"] == "Asia/Ho_Chi_Minh"
    assert out["as_of"] == "2025-06-02T04:30:00+07:00"
    first = out["slots"][0]
    assert first == {
        "bulletin_id": "p1",
        "uri": "urn:lantoa:article:p1",
        "version": 2,
        "priority": "priority",
        "title": first["title"],
        "correction": False,
        "window_index": 0,
        "start": "2025-06-02T06:00:00+07:00",
        "end": "2025-06-02T06:10:00+07:00",
        "duration_s": 600,
        "audio_url": "https://cdn.example/p1.mp3",
        "audio_path": None,
    }
    assert [w["used_s"] for w in out["windows"]] == [600 + 25 + 901, 1800]
    assert [w["capacity_s"] for w in out["windows"]] == [1800, 2700]
    assert out["totals"]["slots"] == 4
    assert out["totals"]["seconds"] == 600 + 901 + 25 + 1800
    assert out["totals"]["by_priority"] == {"priority": 1, "normal": 3}
    assert out["totals"]["corrections"] == 1
    assert out["totals"]["unplaced"]["retracted"] == 0 and out["totals"]["unplaced"]["too_long"] == 0


def _raw_lines(ics: bytes) -> list[bytes]:
    assert ics.endswith(b"\r\n")
    lines = ics.split(b"\r\n")[:-1]
    for line in lines:
        assert b"\n" not in line and b"\r" not in line
        assert len(line) <= 75, line
    return lines


def test_ics_is_rfc5545_and_round_trips(day: DaySchedule) -> None:
    ics = to_ics(day, ZONE_NAME)
    lines = _raw_lines(ics)
    assert lines[0] == b"BEGIN:VCALENDAR" and lines[-1] == b"END:VCALENDAR"
    assert any(line.startswith(b" ") for line in lines)  # long Vietnamese titles were folded
    assert b"DTSTART;TZID=Asia/Ho_Chi_Minh:20250602T060000" in lines

    cal = icalendar.Calendar.from_ical(ics)
    assert str(cal["PRODID"]) == PRODID
    assert str(cal["VERSION"]) == "2.0"
    assert str(cal["CALSCALE"]) == "GREGORIAN"
    assert str(cal["METHOD"]) == "PUBLISH"
    assert str(cal["X-WR-CALNAME"]) == f"Lịch phát thanh {ZONE_NAME}"
    assert str(cal["X-WR-TIMEZONE"]) == "Asia/Ho_Chi_Minh"
    (vtz,) = cal.walk("VTIMEZONE")
    assert str(vtz["TZID"]) == "Asia/Ho_Chi_Minh"
    assert vtz.walk("STANDARD")[0]["TZOFFSETTO"].td == timedelta(hours=7)

    events = cal.walk("VEVENT")
    assert len(events) == len(day.slots)
    uids = [str(e["UID"]) for e in events]
    assert len(set(uids)) == len(uids)
    assert uids[0] == "p1-zone:4-20250602T0600@lantoa"
    for event, slot in zip(events, day.slots, strict=True):
        assert event["DTSTART"].params["TZID"] == "Asia/Ho_Chi_Minh"
        assert event.decoded("DTSTART") == slot.start and event.decoded("DTEND") == slot.end
        assert event.decoded("DTSTAMP") == at(4, 30).astimezone(UTC)
        assert str(event["CATEGORIES"].cats[0]) == slot.priority.value
        description = str(event["DESCRIPTION"])
        assert slot.uri in description and f"version: {slot.version}" in description
        expected = ("Đính chính: " if slot.correction else "") + slot.title
        assert str(event["SUMMARY"]) == expected


def test_ics_is_byte_stable_and_uids_survive_a_replan(day: DaySchedule) -> None:
    assert to_ics(day, ZONE_NAME) == to_ics(day, ZONE_NAME)
    stamp = datetime(2025, 6, 2, 0, 0, tzinfo=UTC)
    assert b"DTSTAMP:20250602T000000Z" in to_ics(day, ZONE_NAME, stamp=stamp)
    # Same plan made later (nothing changed): same slots, so the same UIDs.
    zone = ZoneWindows.from_config(ZONE, {"windows": ["06:00-06:30", "18:00-18:45"]})
    items = [
        bulletin("n1", Priority.NORMAL, 900.4, at(1), audio_path="2025/06/n1 bản tin.mp3"),
        bulletin("p1", Priority.PRIORITY, 600, at(2), audio_url="https://cdn.example/p1.mp3"),
    ]
    later = schedule_day(ZONE, zone, items, MONDAY, now=at(5))
    assert {ics_uid(s) for s in later} <= {ics_uid(s) for s in day}


def test_ics_of_an_empty_day_still_declares_the_time_zone() -> None:
    empty = schedule_day(ZONE, ZoneWindows(ZONE), [], MONDAY + timedelta(days=6))
    cal = icalendar.Calendar.from_ical(to_ics(empty, ZONE_NAME))
    assert cal.walk("VEVENT") == [] and len(cal.walk("VTIMEZONE")) == 1
    assert b"DTSTAMP" not in to_ics(empty, ZONE_NAME)


def test_m3u(day: DaySchedule) -> None:
    text = to_m3u(day, BASE)
    fix = day.slots[1].bulletin_id
    assert text.splitlines() == [
        "#EXTM3U",
        "#EXTINF:600,Thông báo lịch tiêm chủng mở rộng đợt p1 tại nhà văn hóa tổ dân phố",
        "https://cdn.example/p1.mp3",
        "#EXTINF:25,Đính chính: Thông báo lịch tiêm chủng mở rộng đợt old tại nhà văn hóa tổ dân phố",
        "https://media.lantoa.example/audio/fix.mp3",
        "#EXTINF:901,Thông báo lịch tiêm chủng mở rộng đợt n1 tại nhà văn hóa tổ dân phố",
        "https://media.lantoa.example/audio/2025/06/n1%20b%E1%BA%A3n%20tin.mp3",
        "#EXTINF:1800,Tin nhiều dòng, có dấu phẩy",
        "https://media.lantoa.example/audio/n2.mp3",
    ]
    assert fix.startswith("old~correction-")
    assert text.endswith("\n") and "\r" not in text
    text.encode("utf-8")


def test_m3u_refuses_slots_without_audio_and_relative_base() -> None:
    b = bulletin("x", Priority.NORMAL, 60, at(1))
    day = schedule_day(ZONE, ZoneWindows(ZONE), [b], MONDAY)
    with pytest.raises(ValueError, match="no audio"):
        to_m3u(day, BASE)
    with pytest.raises(ValueError, match="absolute"):
        to_m3u(day, "audio/")


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(list(Priority)[:2]),
            st.floats(1, 900, allow_nan=False),
            st.text(
                alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=120
            ),
        ),
        max_size=8,
    )
)
def test_any_schedule_renders_to_valid_folded_ics(entries: list[tuple[Priority, float, str]]) -> None:
    items = [
        bulletin(f"b{i}", p, d, at(1, i), title=title, audio_path=f"b{i}.mp3")
        for i, (p, d, title) in enumerate(entries)
    ]
    day = schedule_day(ZONE, ZoneWindows(ZONE), items, MONDAY)
    ics = to_ics(day, ZONE_NAME)
    _raw_lines(ics)
    events = icalendar.Calendar.from_ical(ics).walk("VEVENT")
    assert [str(e["UID"]) for e in events] == [ics_uid(s) for s in day]
    assert len(to_m3u(day, BASE).splitlines()) == 1 + 2 * len(day.slots)
