"""Zone windows parsed from registry config: defaults, overrides, validation, local datetimes."""

from __future__ import annotations

import tomllib
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas.models import Target
from schemas.topics import Channel
from schemas.windows import DEFAULT_TIMEZONE, Window, ZoneWindows

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TARGETS_TOML = Path(__file__).resolve().parents[3] / "infra" / "targets.toml"
MONDAY = date(2025, 6, 2)


def test_defaults_match_the_loudspeaker_section() -> None:
    section = tomllib.loads(TARGETS_TOML.read_text(encoding="utf-8"))["loudspeaker"]
    from_file = ZoneWindows.from_config("zone:1", {}, section)
    assert from_file == ZoneWindows("zone:1")
    assert [w.spec for w in from_file.windows] == ["05:30-06:15", "17:00-17:45"]
    assert from_file.days == (1, 2, 3, 4, 5, 6)
    assert from_file.timezone == DEFAULT_TIMEZONE


def test_zone_override_from_the_registry_shape() -> None:
    # schemas/registry.py merges the [loudspeaker] defaults with the zone override into config.
    config: dict[str, Any] = {
        "windows": ["18:00-18:45", "06:00-06:30"],
        "days": [1, 2, 3, 4, 5, 6],
        "timezone": "Asia/Ho_Chi_Minh",
    }
    target = Target("zone:4", Channel.LOUDSPEAKER, "Phường Ba Đình", 1, 4, config=config)
    zw = ZoneWindows.from_target(target)
    assert zw.zone_id == "zone:4"
    assert [w.spec for w in zw.windows] == ["06:00-06:30", "18:00-18:45"]  # sorted
    assert zw.longest_s == 45 * 60


def test_from_target_refuses_other_channels() -> None:
    with pytest.raises(ValueError, match="fanpage:x"):
        ZoneWindows.from_target(Target("fanpage:x", Channel.FANPAGE, "x"))


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"windows": ["5:30-06:15"]}, "'5:30-06:15'"),
        ({"windows": ["05:30-24:00"]}, "'05:30-24:00'"),
        ({"windows": ["05:60-06:15"]}, "'05:60-06:15'"),
        ({"windows": ["06:15-05:30"]}, "must end after"),
        ({"windows": ["05:30-05:30"]}, "must end after"),
        ({"windows": ["05:30 - 06:15"]}, "'05:30 - 06:15'"),
        ({"windows": [530]}, "530"),
        ({"windows": "05:30-06:15"}, "list"),
        ({"windows": []}, "no broadcast windows"),
        ({"windows": ["05:30-06:15", "06:00-06:30"]}, "overlap"),
        ({"days": [0]}, "day 0"),
        ({"days": [8]}, "day 8"),
        ({"days": [True]}, "day True"),
        ({"days": ["1"]}, "day '1'"),
        ({"days": [1, 1]}, "repeats"),
        ({"days": []}, "no broadcast days"),
        ({"days": 1}, "days must be a list"),
        ({"timezone": "Asia/Hanoi_Typo"}, "Asia/Hanoi_Typo"),
        ({"timezone": "../etc/passwd"}, "unknown time zone"),
        ({"timezone": 7}, "IANA"),
    ],
)
def test_bad_config_names_zone_and_value(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        ZoneWindows.from_config("zone:26734", config)
    assert "zone:26734" in str(info.value)
    assert fragment in str(info.value)


def test_adjacent_windows_are_allowed() -> None:
    zw = ZoneWindows.from_config("z", {"windows": ["06:00-06:30", "05:30-06:00"]})
    assert [w.spec for w in zw.windows] == ["05:30-06:00", "06:00-06:30"]


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ValueError, match="time order"):
        ZoneWindows("z", (Window(time(17), time(18)), Window(time(5), time(6))))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (MONDAY, [((5, 30), (6, 15)), ((17, 0), (17, 45))]),
        (MONDAY + timedelta(days=5), [((5, 30), (6, 15)), ((17, 0), (17, 45))]),  # Saturday
        (MONDAY + timedelta(days=6), []),  # Sunday: no broadcast
    ],
)
def test_windows_on(day: date, expected: list[tuple[tuple[int, int], tuple[int, int]]]) -> None:
    got = ZoneWindows("z").windows_on(day)
    assert got == [
        (datetime.combine(day, time(*a), tzinfo=HCM), datetime.combine(day, time(*b), tzinfo=HCM))
        for a, b in expected
    ]
    for start, end in got:
        assert start.tzinfo is HCM and end.tzinfo is HCM
        assert start.utcoffset() == timedelta(hours=7)


def test_windows_on_in_utc_terms() -> None:
    (first, _), _ = ZoneWindows("z").windows_on(MONDAY)
    assert first.astimezone(UTC) == datetime(2025, 6, 1, 22, 30, tzinfo=UTC)


def test_windows_across_a_dst_change_follow_the_clock() -> None:
    # Europe/Berlin springs forward at 02:00 on 2025-03-30: a 01:30-03:30 window lasts one hour.
    zw = ZoneWindows.from_config("z", {"windows": ["01:30-03:30"], "days": [7], "timezone": "Europe/Berlin"})
    ((start, end),) = zw.windows_on(date(2025, 3, 30))
    assert end.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=1)


def test_windows_between_spans_days() -> None:
    got = ZoneWindows("z").windows_between(MONDAY + timedelta(days=5), MONDAY + timedelta(days=7))
    assert [s.date() for s, _ in got] == [date(2025, 6, 7)] * 2 + [date(2025, 6, 9)] * 2
