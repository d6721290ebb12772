"""Packing bulletins into a zone's windows: table tests of each rule, then properties."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.loudspeaker.scheduler import (
    Bulletin,
    DaySchedule,
    Reason,
    correction_for,
    default_expiry,
    emergency_now,
    schedule_day,
    schedule_days,
)
from schemas.models import Priority
from schemas.windows import ZoneWindows

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
UTC = UTC
MONDAY = date(2025, 6, 2)
ZONE = "zone:26734"
WINDOWS = ZoneWindows(ZONE)  # 05:30-06:15 and 17:00-17:45, Monday..Saturday
N, P, E = Priority.NORMAL, Priority.PRIORITY, Priority.EMERGENCY


def at(hh: int, mm: int = 0, ss: int = 0, day: date = MONDAY) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=HCM)


SUNDAY_EVENING = at(20, day=MONDAY - timedelta(days=1))


def bulletin(
    bid: str,
    priority: Priority = N,
    duration_s: float = 600,
    published_at: datetime = SUNDAY_EVENING,
    expires_at: datetime | None = None,
    uri: str | None = None,
    version: int = 1,
) -> Bulletin:
    return Bulletin(
        bulletin_id=bid,
        uri=uri or f"urn:lantoa:article:{bid}",
        version=version,
        priority=priority,
        title=f"Bản tin {bid}",
        duration_s=duration_s,
        published_at=published_at,
        expires_at=expires_at or default_expiry(published_at),
        audio_path=f"{bid}.mp3",
    )


def plan(bulletins: list[Bulletin], day: date = MONDAY, **kwargs: object) -> DaySchedule:
    return schedule_day(ZONE, WINDOWS, bulletins, day, **kwargs)  # type: ignore[arg-type]


def order(day: DaySchedule) -> list[tuple[str, str, int]]:
    return [(s.bulletin_id, f"{s.start:%H:%M:%S}", s.window_index) for s in day]


def reasons(day: DaySchedule) -> dict[str, Reason]:
    return {u.bulletin_id: u.reason for u in day.unplaced}


# --- ordering ----------------------------------------------------------------------------------


def test_priority_goes_before_normal_even_if_published_later() -> None:
    day = plan([bulletin("n1", N), bulletin("p1", P, published_at=at(4))])
    assert order(day) == [("p1", "05:30:00", 0), ("n1", "05:40:00", 0)]


def test_same_priority_plays_in_publish_order_then_uri() -> None:
    day = plan(
        [
            bulletin("b", published_at=at(3)),
            bulletin("a", published_at=at(3)),
            bulletin("c", published_at=at(2)),
        ]
    )
    assert [s.bulletin_id for s in day] == ["c", "a", "b"]


def test_slot_length_is_the_duration_rounded_up_to_seconds() -> None:
    day = plan([bulletin("a", duration_s=61.2), bulletin("b", duration_s=30, published_at=at(4))])
    assert order(day) == [("a", "05:30:00", 0), ("b", "05:31:02", 0)]
    assert day.slots[0].duration_s == 61.2
    assert all(s.start.tzinfo is HCM for s in day)


def test_a_priority_too_big_for_the_rest_is_passed_over_and_a_small_one_fills_the_gap() -> None:
    day = plan(
        [
            bulletin("n-big", N, duration_s=2000),
            bulletin("p-big", P, duration_s=1200, published_at=at(4)),
            bulletin("n-small", N, duration_s=300, published_at=at(4, 30)),
        ]
    )
    # 05:30 p-big (20 min), then n-big (33 min) does not fit the 25 min left: n-small does.
    assert order(day) == [("p-big", "05:30:00", 0), ("n-small", "05:50:00", 0), ("n-big", "17:00:00", 1)]


# --- carry-over and expiry ---------------------------------------------------------------------


def test_what_does_not_fit_moves_to_the_next_window() -> None:
    day = plan([bulletin(f"b{i}", duration_s=1000, published_at=at(1, i)) for i in range(3)])
    assert order(day) == [("b0", "05:30:00", 0), ("b1", "05:46:40", 0), ("b2", "17:00:00", 1)]


def test_what_does_not_fit_today_carries_over_to_the_next_day() -> None:
    items = [bulletin(f"b{i}", duration_s=1000, published_at=at(1, i)) for i in range(5)]
    monday = plan(items)
    assert [s.bulletin_id for s in monday] == ["b0", "b1", "b2", "b3"]
    assert reasons(monday) == {"b4": Reason.CARRIED_OVER}
    assert [u.bulletin_id for u in monday.carried_over] == ["b4"]
    mon, tue = schedule_days(ZONE, WINDOWS, items, MONDAY, 2)
    assert mon == monday
    assert order(tue) == [("b4", "05:30:00", 0)]
    # Played on Monday, so replanning Tuesday from what actually played gives the same.
    assert plan(items, MONDAY + timedelta(days=1), played={"b0", "b1", "b2", "b3"}) == tue


def test_sunday_is_skipped_saturday_leftovers_play_on_monday() -> None:
    saturday = MONDAY + timedelta(days=5)
    items = [bulletin(f"b{i}", duration_s=2000, published_at=at(1, i, day=saturday)) for i in range(3)]
    sat, sun, mon = schedule_days(ZONE, WINDOWS, items, saturday, 3)
    assert [s.bulletin_id for s in sat] == ["b0", "b1"]
    assert sun.windows == () and sun.slots == () and [u.bulletin_id for u in sun.carried_over] == ["b2"]
    assert [(s.bulletin_id, s.start) for s in mon] == [("b2", at(5, 30, day=saturday + timedelta(days=2)))]


def test_a_bulletin_must_end_before_it_expires() -> None:
    day = plan(
        [
            bulletin("ends-late", duration_s=1200, expires_at=at(5, 45)),
            bulletin("fits", duration_s=600, published_at=at(1), expires_at=at(5, 45)),
        ]
    )
    assert order(day) == [("fits", "05:30:00", 0)]
    assert reasons(day) == {"ends-late": Reason.EXPIRED}


def test_expired_before_the_evening_window_is_dropped_when_the_morning_is_full() -> None:
    day = plan([bulletin("full", duration_s=2700), bulletin("noon", published_at=at(1), expires_at=at(12))])
    assert [s.bulletin_id for s in day] == ["full"]
    assert [u.bulletin_id for u in day.expired] == ["noon"]


def test_already_expired_is_reported_not_scheduled() -> None:
    day = plan([bulletin("old", published_at=at(8, day=MONDAY - timedelta(days=10)))])
    assert day.slots == () and reasons(day) == {"old": Reason.EXPIRED}


def test_published_during_a_window_plays_from_its_publication() -> None:
    day = plan([bulletin("late", published_at=at(17, 10, 0))])
    assert order(day) == [("late", "17:10:00", 1)]


def test_default_expiry() -> None:
    assert default_expiry(at(8)) == at(8, day=MONDAY + timedelta(days=3))
    assert default_expiry(at(8), 0.5) == at(20)
    with pytest.raises(ValueError):
        default_expiry(at(8), 0)
    with pytest.raises(ValueError):
        default_expiry(datetime(2025, 6, 2, 8))


# --- versions, retraction, corrections ---------------------------------------------------------


def test_only_the_newest_version_of_a_uri_is_scheduled() -> None:
    v1 = bulletin("a-v1", uri="urn:a", version=1)
    v2 = bulletin("a-v2", uri="urn:a", version=2, published_at=at(5, 31))
    morning = plan([v1], now=at(5))
    assert order(morning) == [("a-v1", "05:30:00", 0)]
    # v2 arrives before v1 started: the unplayed slot now plays v2 (available at 05:31:00).
    replanned = plan([v1, v2], now=at(5, 20), previous=morning)
    assert order(replanned) == [("a-v2", "05:31:00", 0)]
    assert reasons(replanned) == {"a-v1": Reason.SUPERSEDED}


def test_a_newer_version_of_a_played_bulletin_is_broadcast_again() -> None:
    v1 = bulletin("a-v1", uri="urn:a", version=1)
    v2 = bulletin("a-v2", uri="urn:a", version=2, published_at=at(7))
    day = plan([v1, v2], played={"a-v1"}, now=at(7))
    assert order(day) == [("a-v2", "17:00:00", 1)]


def test_retraction_removes_unplayed_slots_and_needs_no_correction() -> None:
    a, b = bulletin("a"), bulletin("b", published_at=at(1))
    fix = correction_for(a, "Sai số liệu", 20, issued_at=at(5))
    day = plan([a, b, fix], now=at(5), retracted={a.uri: (1, at(5))})
    assert order(day) == [("b", "05:30:00", 0)]
    assert reasons(day) == {"a": Reason.RETRACTED, fix.bulletin_id: Reason.CORRECTION_NOT_NEEDED}


def test_retraction_after_play_schedules_the_correction_first() -> None:
    a, b = bulletin("a"), bulletin("b", published_at=at(1))
    fix = correction_for(a, "Sai số liệu", 20.5, issued_at=at(7))
    day = plan([a, b, fix], played={"a"}, now=at(7), retracted={a.uri: (1, at(7))})
    assert order(day) == [(fix.bulletin_id, "17:00:00", 1), ("b", "17:00:21", 1)]
    slot = day.slots[0]
    assert slot.correction and slot.uri == a.uri and slot.title == a.title
    assert fix.reason == "Sai số liệu" and fix.corrects == "a"


def test_a_correction_is_due_once_the_original_has_started() -> None:
    a = bulletin("a", duration_s=1200)
    morning = plan([a], now=at(5))
    fix = correction_for(a, "Nhầm địa điểm", 30, issued_at=at(5, 35))
    # a started at 05:30 (frozen by now=05:35) and is retracted while it plays.
    day = plan([a, fix], now=at(5, 35), previous=morning, retracted={a.uri: (1, at(5, 35))})
    assert order(day) == [("a", "05:30:00", 0), (fix.bulletin_id, "05:50:00", 0)]


def test_retraction_covers_versions_published_before_it_not_a_later_republication() -> None:
    v1 = bulletin("a-v1", uri="urn:a", version=1)
    v2 = bulletin("a-v2", uri="urn:a", version=2, published_at=at(2))
    assert plan([v1, v2], retracted={"urn:a": (1, at(3))}).slots == ()
    v3 = bulletin("a-v3", uri="urn:a", version=3, published_at=at(4))
    day = plan([v1, v2, v3], retracted={"urn:a": (1, at(3))})
    assert [s.bulletin_id for s in day] == ["a-v3"]


def test_correction_for_is_deterministic() -> None:
    a = bulletin("a", P)
    first, again = (
        correction_for(a, " lý do ", 15, issued_at=at(9)),
        correction_for(a, "lý do", 15, issued_at=at(9)),
    )
    assert first == again
    assert first.bulletin_id.startswith("a~correction-") and first.priority is P
    assert first.expires_at == default_expiry(at(9))
    with pytest.raises(ValueError):
        correction_for(a, "  ", 15)


# --- too long, emergencies, now ----------------------------------------------------------------


def test_a_bulletin_longer_than_every_window_is_unschedulable_never_truncated() -> None:
    day = plan([bulletin("long", duration_s=2700.2), bulletin("ok", duration_s=2700, published_at=at(1))])
    assert order(day) == [("ok", "05:30:00", 0)]
    assert [(u.bulletin_id, u.reason) for u in day.unschedulable] == [("long", Reason.TOO_LONG)]
    assert "2701 s" in day.unschedulable[0].detail


def test_a_bulletin_waits_for_a_window_long_enough() -> None:
    zone = ZoneWindows.from_config(ZONE, {"windows": ["06:00-06:30", "18:00-19:00"]})
    day = schedule_day(ZONE, zone, [bulletin("fifty", duration_s=3000)], MONDAY)
    assert [(s.bulletin_id, s.start, s.window_index) for s in day] == [("fifty", at(18), 1)]


def test_emergencies_are_left_to_the_emergency_lane() -> None:
    day = plan([bulletin("storm", E), bulletin("n")])
    assert [s.bulletin_id for s in day] == ["n"]
    assert reasons(day) == {"storm": Reason.EMERGENCY}


def test_emergency_now_plays_at_once_and_repeats_until_expiry() -> None:
    storm = bulletin("storm", E, duration_s=90.5, published_at=at(13, 58), expires_at=at(15))
    plays = emergency_now(ZONE, storm, at(14), repeat_interval_s=1200)
    assert plays.starts == (at(14), at(14, 20), at(14, 40))
    assert plays.plays[0].end == at(14, 1, 31) and plays.plays[0].window_index == -1
    assert emergency_now(ZONE, storm, at(14)).starts == (at(14),)
    assert emergency_now(ZONE, storm, at(14), 600, max_plays=2).starts == (at(14), at(14, 10))
    assert emergency_now(ZONE, storm, at(15), 600).plays == ()
    with pytest.raises(ValueError, match="shorter"):
        emergency_now(ZONE, storm, at(14), 60)
    with pytest.raises(ValueError, match="not emergency"):
        emergency_now(ZONE, bulletin("n"), at(14))


def test_now_freezes_what_started_and_new_priority_goes_next() -> None:
    n1, n2 = bulletin("n1", duration_s=1200), bulletin("n2", duration_s=600, published_at=at(1))
    morning = plan([n1, n2], now=at(5))
    assert order(morning) == [("n1", "05:30:00", 0), ("n2", "05:50:00", 0)]
    urgent = bulletin("p", P, duration_s=300, published_at=at(5, 40))
    replanned = plan([n1, n2, urgent], now=at(5, 40), previous=morning)
    assert order(replanned) == [("n1", "05:30:00", 0), ("p", "05:50:00", 0), ("n2", "05:55:00", 0)]


def test_nothing_new_is_placed_before_now() -> None:
    day = plan([bulletin("a")], now=at(5, 40, 0))
    assert order(day) == [("a", "05:40:00", 0)]
    assert order(plan([bulletin("a")], now=datetime(2025, 6, 1, 22, 40, 0, 500, tzinfo=UTC))) == [
        ("a", "05:40:01", 0)
    ]


# --- input errors ------------------------------------------------------------------------------


def test_identical_duplicates_collapse_conflicting_ones_raise() -> None:
    a = bulletin("a")
    assert plan([a, a]) == plan([a])
    with pytest.raises(ValueError, match="'a'"):
        plan([a, bulletin("a", duration_s=5)])


@pytest.mark.parametrize(
    "make",
    [
        lambda: bulletin("a", published_at=datetime(2025, 6, 1, 20)),
        lambda: bulletin("a", duration_s=0),
        lambda: bulletin("a", duration_s=float("nan")),
        lambda: Bulletin("", "urn:a", 1, N, "t", 1, at(1), at(2)),
        lambda: Bulletin("a", "urn:a", 1, N, "t", 1, at(1), at(2), correction=True),
    ],
)
def test_bad_bulletins_raise(make: object) -> None:
    with pytest.raises(ValueError):
        make()  # type: ignore[operator]


def test_mismatched_zone_previous_or_naive_now_raise() -> None:
    with pytest.raises(ValueError, match="zone:other"):
        schedule_day("zone:other", WINDOWS, [], MONDAY)
    with pytest.raises(ValueError, match="previous"):
        plan([], previous=plan([], day=MONDAY + timedelta(days=1)))
    with pytest.raises(ValueError, match="now"):
        plan([], now=datetime(2025, 6, 2, 5))


# --- properties --------------------------------------------------------------------------------

ZONE_CONFIGS = [
    {},
    {"windows": ["06:00-06:30", "18:00-18:45"]},
    {"windows": ["05:00-05:20", "11:00-11:10", "17:00-18:00"], "days": [1, 2, 3, 4, 5, 6, 7]},
]
DAY_START = datetime.combine(MONDAY, time(0), tzinfo=HCM)


@st.composite
def scenarios(
    draw: st.DrawFn, corrections: bool = True
) -> tuple[ZoneWindows, list[Bulletin], dict[str, object]]:
    zone = ZoneWindows.from_config(ZONE, draw(st.sampled_from(ZONE_CONFIGS)))
    count = draw(st.integers(0, 14))
    items: list[Bulletin] = []
    for i in range(count):
        published = DAY_START + timedelta(minutes=draw(st.integers(-3 * 24 * 60, 20 * 60)))
        lifetime = timedelta(minutes=draw(st.integers(10, 4 * 24 * 60)))
        items.append(
            Bulletin(
                bulletin_id=f"b{i:02d}",
                uri=f"urn:u{draw(st.integers(0, 11))}",
                version=draw(st.integers(1, 3)),
                priority=draw(st.sampled_from([N, N, P, E])),
                title=f"t{i}",
                duration_s=draw(st.floats(1, 3700, allow_nan=False)),
                published_at=draw(st.sampled_from([published, published.astimezone(UTC)])),
                expires_at=published + lifetime,
            )
        )
    if corrections and items:
        for original in draw(st.lists(st.sampled_from(items), max_size=2, unique_by=lambda b: b.bulletin_id)):
            issued = original.published_at + timedelta(hours=1)
            items.append(correction_for(original, "lý do", draw(st.floats(5, 120)), issued_at=issued))
    ids = [b.bulletin_id for b in items]
    uris = sorted({b.uri for b in items})
    kwargs: dict[str, object] = {
        "played": set(draw(st.lists(st.sampled_from(ids), max_size=4))) if ids else set(),
        "now": draw(st.none() | st.integers(0, 24 * 60).map(lambda m: DAY_START + timedelta(minutes=m))),
        "retracted": {
            u: (draw(st.integers(0, 3)), DAY_START + timedelta(minutes=draw(st.integers(-24 * 60, 24 * 60))))
            for u in (draw(st.lists(st.sampled_from(uris), max_size=2)) if uris else [])
        },
    }
    return zone, items, kwargs


def _run(zone: ZoneWindows, items: list[Bulletin], kwargs: dict[str, object]) -> DaySchedule:
    return schedule_day(ZONE, zone, items, MONDAY, **kwargs)  # type: ignore[arg-type]


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(scenarios())
def test_slots_fit_windows_never_overlap_and_respect_publication_and_expiry(
    scenario: tuple[ZoneWindows, list[Bulletin], dict[str, object]],
) -> None:
    zone, items, kwargs = scenario
    day = _run(zone, items, kwargs)
    by_id = {b.bulletin_id: b for b in items}
    assert list(day.windows) == zone.windows_on(MONDAY)
    for earlier, later in zip(day.slots, day.slots[1:], strict=False):
        assert earlier.end <= later.start
    used = [0.0] * len(day.windows)
    for s in day:
        ws, we = day.windows[s.window_index]
        assert ws <= s.start < s.end <= we
        used[s.window_index] += (s.end - s.start).total_seconds()
        b = by_id[s.bulletin_id]
        assert s.end - s.start == b.length and b.length.total_seconds() >= b.duration_s
        assert b.published_at <= s.start and s.end <= b.expires_at
        assert b.priority is not E
        if kwargs["now"] is not None:
            assert s.start >= kwargs["now"]  # type: ignore[operator]
    assert all(u <= (we - ws).total_seconds() for u, (ws, we) in zip(used, day.windows, strict=True))
    # Every bulletin is accounted for exactly once: a slot, an unplaced reason, or already played.
    accounted = [s.bulletin_id for s in day] + [u.bulletin_id for u in day.unplaced]
    assert len(accounted) == len(set(accounted))
    assert set(accounted) | set(kwargs["played"]) >= set(by_id)  # type: ignore[arg-type]
    assert not {s.bulletin_id for s in day} & set(kwargs["played"])  # type: ignore[arg-type]
    # At most one version of a uri plays (corrections aside).
    uris = [s.uri for s in day if not s.correction]
    assert len(uris) == len(set(uris))


@PROPS
@given(scenarios())
def test_a_more_preferred_bulletin_is_only_passed_over_when_it_could_not_play_there(
    scenario: tuple[ZoneWindows, list[Bulletin], dict[str, object]],
) -> None:
    """Precisely: for a slot L starting at t in window w, every candidate H ranked before L
    (priority, then correction, publish time, uri) that is not placed at or before t was either
    not yet published at t, or would not have ended by min(end of w, H's expiry) starting at t.
    Candidates are the bulletins placed, carried over or expired (not retracted, superseded,
    too long, played, emergency)."""
    zone, items, kwargs = scenario
    day = _run(zone, items, kwargs)
    by_id = {b.bulletin_id: b for b in items}
    start_of = {s.bulletin_id: s.start for s in day}
    candidates = [by_id[i] for i in start_of] + [
        by_id[u.bulletin_id] for u in day.unplaced if u.reason in (Reason.CARRIED_OVER, Reason.EXPIRED)
    ]
    for slot in day:
        low = by_id[slot.bulletin_id]
        _, window_end = day.windows[slot.window_index]
        for high in candidates:
            if high.sort_key() >= low.sort_key():
                continue
            if high.bulletin_id in start_of and start_of[high.bulletin_id] <= slot.start:
                continue
            assert high.published_at > slot.start or slot.start + high.length > min(
                window_end, high.expires_at
            ), f"{high.bulletin_id} could have played at {slot.start} instead of {low.bulletin_id}"


@PROPS
@given(scenarios(), st.randoms(use_true_random=False))
def test_deterministic_under_input_order_and_idempotent(
    scenario: tuple[ZoneWindows, list[Bulletin], dict[str, object]], rnd: object
) -> None:
    zone, items, kwargs = scenario
    first = _run(zone, items, kwargs)
    shuffled = list(items)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert _run(zone, shuffled + shuffled[:2], kwargs) == first  # also replayed duplicates
    assert _run(zone, items, kwargs) == first
    assert _run(zone, items, {**kwargs, "previous": first}) == first


@PROPS
@given(scenarios(corrections=False), st.integers(0, 24 * 60))
def test_replanning_later_with_the_previous_plan_changes_nothing(
    scenario: tuple[ZoneWindows, list[Bulletin], dict[str, object]], minutes: int
) -> None:
    zone, items, kwargs = scenario
    first = _run(zone, items, kwargs)
    later = DAY_START + timedelta(minutes=minutes)
    if kwargs["now"] is not None:
        later = max(later, kwargs["now"])  # type: ignore[call-overload]
    finished = {s.bulletin_id for s in first if s.end <= later}
    again = _run(
        zone, items, {**kwargs, "now": later, "previous": first, "played": kwargs["played"] | finished}
    )  # type: ignore[operator]
    assert again.slots == first.slots
