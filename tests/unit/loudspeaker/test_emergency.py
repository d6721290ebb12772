"""The emergency push against the platform emulator: the sample typhoon alert, repeats, Update,
Cancel, replays, chunks, and a national alert (3,321 zones) within a second."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from helpers import emergency_plan

from consumers.loudspeaker.audio import AudioRenderer
from consumers.loudspeaker.emergency import EmergencyPlan, EmergencyPusher, chunk_id
from consumers.loudspeaker.platform import PlatformClient, platform_zone
from infra.local.emulators.common import ManualClock
from infra.local.emulators.loudspeaker import LoudspeakerEmulator
from producers.targets import local_registry
from schemas.cap import parse_cap
from schemas.cap_model import Alert
from schemas.codec import decode
from schemas.registry import Registry
from schemas.settings import Settings
from streams.alerts.lane import plan_records
from streams.alerts.plan import AlertPlan, plan_alert

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "platform-token"
AUDIO_BASE = "https://tin.example.vn/audio"
ON_AIR = datetime(2026, 9, 17, 5, 31, tzinfo=HCM)  # the alert was sent at 05:30; a bulletin is playing
INTERVAL = 600.0


@pytest.fixture(scope="module")
def registry() -> Registry:
    return local_registry(Settings())


@pytest.fixture(scope="module")
def typhoon(shared_dir: Path, registry: Registry) -> tuple[Alert, AlertPlan]:
    alert = parse_cap((shared_dir / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_bytes())
    return alert, plan_alert(alert, registry)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(ON_AIR.timestamp())


@pytest.fixture
async def emulator(clock: ManualClock) -> AsyncIterator[LoudspeakerEmulator]:
    emu = LoudspeakerEmulator(tokens=[TOKEN], clock=clock)
    await emu.start()
    yield emu
    await emu.stop()


@pytest.fixture
async def pusher(
    emulator: LoudspeakerEmulator, clock: ManualClock, tmp_path: Path, registry: Registry
) -> AsyncIterator[EmergencyPusher]:
    assert emulator.base_url
    p = EmergencyPusher(
        PlatformClient(emulator.base_url, lambda: TOKEN),
        AudioRenderer(tmp_path / "audio", AUDIO_BASE),
        targets=registry.targets.get,
        clock=clock,
    )
    await p.start()
    yield p
    await p.close()


def plan_of(typhoon: tuple[Alert, AlertPlan]) -> EmergencyPlan:
    alert, plan = typhoon
    return emergency_plan(alert, plan, repeat_interval_s=INTERVAL, now=ON_AIR)


async def test_the_typhoon_alert_preempts_exactly_the_147_wards_of_provinces_42_and_44(
    typhoon: tuple[Alert, AlertPlan],
    emulator: LoudspeakerEmulator,
    pusher: EmergencyPusher,
    clock: ManualClock,
    registry: Registry,
) -> None:
    _, alert_plan = typhoon
    wards = {platform_zone(z.id, z) for z in registry.public_zones() if z.province_code in (42, 44)}
    assert len(wards) == 147 and {z.province_code for z in alert_plan.zones} == {42, 44}
    # One ward of Hà Tĩnh is on air with its morning bulletin when the alert comes in.
    on_air = sorted(wards)[0]
    clock.set(ON_AIR.replace(minute=0).timestamp())  # pushed at 05:00 (a slot put in the past never plays)
    await pusher.client.put_schedule(
        on_air,
        ON_AIR.date(),
        {
            "zone": on_air,
            "date": ON_AIR.date().isoformat(),
            "timezone": "Asia/Ho_Chi_Minh",
            "slots": [
                {
                    "bulletin_id": "morning-news",
                    "start": ON_AIR.replace(minute=30).isoformat(),
                    "end": ON_AIR.replace(minute=40).isoformat(),
                    "priority": "normal",
                    "audio_url": AUDIO_BASE + "/m.wav",
                    "title": "Bản tin sáng",
                }
            ],
        },
        if_match=None,
    )
    clock.set(ON_AIR.timestamp())

    plan = plan_of(typhoon)
    result = await pusher.push(plan)
    assert result.zones == 147 and result.platform_ids == (plan.emergency_id,) and not result.duplicate
    assert result.preempted_clusters == 1 and result.audio_url and result.duration_s > 5
    preempted = emulator.preemptions(plan.emergency_id)
    assert {p.zone for p in preempted} == wards and len(preempted) == 147  # exactly those, each once
    assert {p.at for p in preempted} == {ON_AIR.timestamp()}  # all at once
    assert [p.interrupted for p in preempted if p.zone == on_air] == ["morning-news"]
    [cut] = emulator.plays(zone=on_air, kind="scheduled")
    assert (cut.result, cut.played_s) == ("interrupted", 60.0)

    # Repeats every 10 minutes: at 05:31, 05:41, 05:51.
    clock.set((ON_AIR + timedelta(seconds=2 * INTERVAL + 120)).timestamp())
    plays = emulator.plays(kind="emergency")
    assert len(plays) == 3 * 147 and {p.result for p in plays} == {"ok"}
    assert sorted({p.started_at for p in plays}) == [ON_AIR.timestamp() + k * INTERVAL for k in range(3)]

    # A replay of the same alert (a retried command) changes nothing.
    again = await pusher.push(plan)
    assert (
        again.duplicate
        and again.preempted_clusters == 0
        and len(emulator.preemptions(plan.emergency_id)) == 147
    )

    # The Cancel stops the repeats everywhere.
    cancelled = await pusher.cancel(plan.emergency_id)
    assert cancelled.found and cancelled.platform_ids == (plan.emergency_id,)
    clock.advance(6 * 3600)
    assert len(emulator.plays(kind="emergency")) == 3 * 147
    assert emulator.emergency(plan.emergency_id).status(clock()) == "cancelled"  # type: ignore[union-attr]
    assert not (await pusher.cancel("VN-NCHMF-unknown")).found


async def test_the_record_of_the_alert_lane_is_what_is_pushed(
    typhoon: tuple[Alert, AlertPlan], pusher: EmergencyPusher, emulator: LoudspeakerEmulator
) -> None:
    alert, alert_plan = typhoon
    settings = Settings(emergency_repeat_s=INTERVAL)
    records, commands, _ = plan_records(
        alert, alert_plan, settings, ON_AIR, "2026-09-16T22:30:01.000Z", "ce-1"
    )
    # No loudspeaker command (the zones go in the one record); the other channels get theirs.
    assert {c.channel.value for c in commands} <= {"fanpage", "zalo", "archive"}
    assert all(c.priority.value == "emergency" for c in commands)
    [record] = records
    plan = EmergencyPlan.from_record(decode(record.value))
    assert plan.zones == tuple(z.id for z in alert_plan.zones) and len(plan.zones) == 147
    vi = next(i for i in alert.infos if (i.language or "").startswith("vi"))
    assert plan.headline == vi.headline and plan.text.startswith(vi.headline)
    assert plan.repeat_interval_s == INTERVAL and plan.published_at is not None
    result = await pusher.push(plan)
    assert result.zones == 147 and len({p.zone for p in emulator.preemptions(plan.emergency_id)}) == 147


async def test_update_replaces_and_expired_plans_are_not_sent(
    typhoon: tuple[Alert, AlertPlan],
    pusher: EmergencyPusher,
    emulator: LoudspeakerEmulator,
    clock: ManualClock,
) -> None:
    first = plan_of(typhoon)
    await pusher.push(first)
    clock.advance(20)  # its first play (about 40 s) is on air
    update = replace(
        first,
        emergency_id=first.emergency_id + "-02",
        replaces=(first.emergency_id,),
        text="Cập nhật: bão số 5 đã vào đất liền, tiếp tục sơ tán.",
    )
    result = await pusher.push(update)
    assert not result.duplicate
    assert {p.interrupted for p in emulator.preemptions(update.emergency_id)} == {
        first.emergency_id
    }  # on air: cut
    old = emulator.emergency(first.emergency_id)
    assert old is not None and old.status(clock()) == "replaced" and old.replaced_by == update.emergency_id
    stale = replace(first, emergency_id="old", expires_at=ON_AIR - timedelta(hours=1))
    skipped = await pusher.push(stale)
    assert skipped.skipped == "expired" and emulator.emergency("old") is None


async def test_more_zones_than_one_call_takes_go_in_chunks(
    typhoon: tuple[Alert, AlertPlan],
    pusher: EmergencyPusher,
    emulator: LoudspeakerEmulator,
    clock: ManualClock,
) -> None:
    pusher.max_zones_per_call = 50
    plan = plan_of(typhoon)
    result = await pusher.push(plan)
    ids = tuple(chunk_id(plan.emergency_id, n) for n in range(3))
    assert (
        result.platform_ids == ids == (plan.emergency_id, f"{plan.emergency_id}#2", f"{plan.emergency_id}#3")
    )
    assert sum(len({p.zone for p in emulator.preemptions(i)}) for i in ids) == 147
    cancelled = await pusher.cancel(plan.emergency_id)
    assert cancelled.platform_ids == ids
    assert {emulator.emergency(i).status(clock()) for i in ids} == {"cancelled"}  # type: ignore[union-attr]


async def test_a_national_alert_reaches_all_3321_zones_within_a_second(
    pusher: EmergencyPusher, emulator: LoudspeakerEmulator, registry: Registry
) -> None:
    zones = tuple(z.id for z in registry.public_zones())
    assert len(zones) == 3321
    plan = EmergencyPlan(
        "VN-NCHMF-national-test",
        zones,
        "Cảnh báo khẩn cấp toàn quốc: bão mạnh đổ bộ.",
        ON_AIR + timedelta(hours=6),
        INTERVAL,
        "Cảnh báo khẩn cấp",
    )
    await pusher.renderer.render(plan.text)  # speak it first: this measures the push itself
    started = time.perf_counter()
    result = await pusher.push(plan)
    elapsed = time.perf_counter() - started
    assert result.zones == 3321 and len(result.platform_ids) == 1
    assert len({p.zone for p in emulator.preemptions(plan.emergency_id)}) == 3321
    print(f"national emergency: 3,321 zones pre-empted in {elapsed * 1000:.0f} ms (one POST)")
    assert elapsed < 1.0
