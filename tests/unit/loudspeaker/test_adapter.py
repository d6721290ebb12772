"""The loudspeaker adapter against the platform emulator, in process, on one ManualClock.

A small fake of the runtime's ledger (live entries keyed by article and zone, holding each
effect's detail) stands in for Kafka, so restarts and a second worker can be replayed exactly.
espeak-ng runs for real, through a wrapper that logs each invocation.
"""

from __future__ import annotations

import asyncio
import stat
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest

from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.loudspeaker.adapter import LoudspeakerAdapter
from consumers.loudspeaker.audio import AudioRenderer
from consumers.loudspeaker.bodies import day_from_json
from consumers.loudspeaker.platform import PlatformClient, platform_zone
from infra.local.emulators.common import ManualClock
from infra.local.emulators.loudspeaker import LoudspeakerEmulator
from producers.cli import schedule as schedule_cli
from schemas.models import Action, Command, IdempotencyKey, Priority, Target
from schemas.secrets import write_secret
from schemas.settings import Settings
from schemas.topics import Channel

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "platform-token"
DAY = date(2026, 9, 17)  # Thursday
AUDIO_BASE = "https://tin.example.vn/audio"
TEXT = "Ủy ban nhân dân xã thông báo lịch tiêm chủng mở rộng cho trẻ em vào sáng thứ Bảy."


def at(hh: int, mm: int = 0, ss: int = 0, day: date = DAY) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=HCM)


def zone(code: int) -> Target:
    return Target(f"zone:{code}", Channel.LOUDSPEAKER, f"Xã {code}", province_code=42, ward_code=code)


class FakeLedger:
    """The runtime's live entries: (uri, zone) → value, as DeliveryRuntime._done writes them."""

    def __init__(self) -> None:
        self.live: dict[tuple[str, str], dict[str, Any]] = {}

    def prior(self, cmd: Command) -> Prior:
        live = self.live.get((cmd.key.uri, cmd.target))
        if live is None:
            return Prior()
        return Prior(
            external_id=None if live["retracted"] else live["external_id"],
            version=live["version"],
            detail=live["detail"],
        )

    def done(self, cmd: Command, effect: Effect) -> None:
        self.live[(cmd.key.uri, cmd.target)] = {
            "kind": "live",
            "uri": cmd.key.uri,
            "version": cmd.key.version,
            "target": cmd.target,
            "external_id": effect.external_id,
            "retracted": cmd.key.action is Action.RETRACT,
            "detail": effect.detail,
        }

    async def entries(self, zone_id: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        return [v for (_, z), v in self.live.items() if z == zone_id]


@dataclass
class Rig:
    emulator: LoudspeakerEmulator
    clock: ManualClock
    ledger: FakeLedger
    targets: dict[str, Target]
    espeak_log: Path
    cache: Path
    adapters: list[LoudspeakerAdapter] = field(default_factory=list)

    async def adapter(self) -> LoudspeakerAdapter:
        """A new worker: empty memory, the same ledger, platform and audio cache."""
        assert self.emulator.base_url
        renderer = AudioRenderer(self.cache, AUDIO_BASE, executable=str(self.espeak_log.with_suffix(".sh")))
        adapter = LoudspeakerAdapter(
            PlatformClient(self.emulator.base_url, lambda: TOKEN, timeout_s=5),
            renderer,
            self.targets.get,
            source=self.ledger,
            clock=self.clock,
        )
        await adapter.start()
        self.adapters.append(adapter)
        return adapter

    async def deliver(self, adapter: LoudspeakerAdapter, cmd: Command) -> Effect:
        effect = await adapter.deliver(cmd, self.ledger.prior(cmd))
        self.ledger.done(cmd, effect)
        return effect

    def espeak_renders(self) -> int:
        if not self.espeak_log.exists():
            return 0
        return sum(1 for line in self.espeak_log.read_text().splitlines() if " -w " in f" {line} ")

    def slots(self, code: str, day: date = DAY) -> list[dict[str, Any]]:
        doc = self.emulator.schedule(code, day.isoformat())
        return [] if doc is None else list(doc.body["slots"])


def command(
    target: str,
    uri: str = "urn:lantoa:a1",
    version: int = 1,
    action: Action = Action.PUBLISH,
    text: str = TEXT,
    priority: Priority = Priority.NORMAL,
    published: datetime | None = None,
) -> Command:
    payload: dict[str, Any] = {
        "bulletin_id": f"b-{uri.rsplit(':', 1)[-1]}-v{version}",
        "title": f"Tin {uri} v{version}",
        "text": text,
        "language": "vi",
    }
    if action is Action.RETRACT:
        payload = {"reason": "thông tin chưa chính xác"}
    when = (published or at(4)).astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z")
    return Command(
        IdempotencyKey(uri, version, Channel.LOUDSPEAKER, target, action),
        priority,
        when,
        payload,
        published_at=when,
    )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    log = tmp_path / "espeak.log"
    wrapper = log.with_suffix(".sh")
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexec espeak-ng "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    clock = ManualClock(at(4).timestamp())
    emulator = LoudspeakerEmulator(tokens=[TOKEN], clock=clock)
    await emulator.start()
    targets = {t.id: t for t in (zone(c) for c in range(42001, 42031))}
    r = Rig(emulator, clock, FakeLedger(), targets, log, tmp_path / "audio")
    yield r
    for adapter in r.adapters:
        await adapter.close()
    await emulator.stop()


async def test_publish_pushes_the_bulletin_into_the_first_window(rig: Rig) -> None:
    adapter = await rig.adapter()
    effect = await rig.deliver(adapter, command("zone:42001"))
    assert (
        effect.outcome == "delivered" and effect.external_id == "b-a1-v1"
    )  # the bulletin id; the zone is the target
    [slot] = rig.slots("42001")
    assert slot["bulletin_id"] == "b-a1-v1" and slot["start"] == "2026-09-17T05:30:00+07:00"
    assert slot["audio_url"].startswith(AUDIO_BASE + "/") and slot["audio_url"].endswith(".wav")
    assert (rig.cache / slot["audio_path"]).is_file()
    assert effect.detail["placed"] == [{"date": "2026-09-17", "start": slot["start"], "correction": False}]
    assert rig.slots("42001", date(2026, 9, 18)) == []  # tomorrow pushed too, empty
    assert rig.emulator.schedule("42001", "2026-09-18") is not None


async def test_same_command_twice_changes_nothing_even_after_a_restart(rig: Rig) -> None:
    adapter = await rig.adapter()
    cmd = command("zone:42002")
    await rig.deliver(adapter, cmd)
    puts = rig.emulator.stats.count(path=f"PUT /api/v1/zones/42002/schedules/{DAY}")
    first = rig.emulator.schedule("42002", DAY.isoformat())
    await adapter.deliver(cmd, rig.ledger.prior(cmd))  # a redelivery (after an unknown outcome)
    assert rig.emulator.stats.count(path=f"PUT /api/v1/zones/42002/schedules/{DAY}") == puts  # not even sent
    restarted = await rig.adapter()  # a new worker: state from the ledger, schedule from the platform
    await restarted.deliver(cmd, rig.ledger.prior(cmd))
    doc = rig.emulator.schedule("42002", DAY.isoformat())
    assert doc is not None and first is not None and (doc.version, doc.etag) == (first.version, first.etag)


async def test_update_replaces_the_unplayed_slot(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42003"))
    effect = await rig.deliver(
        adapter,
        command(
            "zone:42003",
            version=2,
            action=Action.UPDATE,
            text="Bản cập nhật: lịch tiêm chủng dời sang chiều Chủ nhật.",
        ),
    )
    assert effect.outcome == "updated" and effect.detail["earlier"] == ["b-a1-v1"]
    assert [s["bulletin_id"] for s in rig.slots("42003")] == ["b-a1-v2"]
    assert {
        u["bulletin_id"] for u in rig.emulator.schedule("42003", DAY.isoformat()).body["unplaced"]
    } == set()  # type: ignore[union-attr]


async def test_update_after_the_first_version_played_goes_to_the_next_window(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42004"))
    rig.clock.set(at(7).timestamp())  # v1 aired at 05:30
    await rig.deliver(
        adapter, command("zone:42004", version=2, action=Action.UPDATE, text="Bản cập nhật ngắn.")
    )
    slots = rig.slots("42004")
    assert [(s["bulletin_id"], s["start"][11:16]) for s in slots] == [
        ("b-a1-v1", "05:30"),
        ("b-a1-v2", "17:00"),
    ]


async def test_retraction_before_airing_removes_the_slot(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42005"))
    await rig.deliver(adapter, command("zone:42005", uri="urn:lantoa:a2", published=at(4, 1)))
    effect = await rig.deliver(adapter, command("zone:42005", action=Action.RETRACT))
    assert effect.outcome == "deleted" and effect.detail["correction"] is None
    assert [s["bulletin_id"] for s in rig.slots("42005")] == ["b-a2-v1"]
    assert rig.espeak_renders() == 1  # both articles say the same: one audio; and no correction spoken


async def test_retraction_after_airing_schedules_a_correction(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42006"))
    rig.clock.set(at(8).timestamp())
    assert [p.result for p in rig.emulator.plays(zone="42006")] == ["ok"]
    effect = await rig.deliver(adapter, command("zone:42006", action=Action.RETRACT))
    correction = effect.detail["correction"]
    assert correction["corrects"] == "b-a1-v1" and correction["correction"]
    slots = rig.slots("42006")
    assert [(s["bulletin_id"], s["correction"], s["start"][11:16]) for s in slots] == [
        ("b-a1-v1", False, "05:30"),
        (correction["bulletin_id"], True, "17:00"),
    ]


async def test_retraction_while_on_air_also_gets_a_correction(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42007"))
    rig.clock.set(at(5, 30, 2).timestamp())
    effect = await rig.deliver(adapter, command("zone:42007", action=Action.RETRACT))
    assert effect.detail["correction"] is not None
    assert [s["correction"] for s in rig.slots("42007")] == [False, True]


async def test_one_render_for_thirty_zones(rig: Rig) -> None:
    adapter = await rig.adapter()
    cmds = [command(t) for t in rig.targets]
    effects = await asyncio.gather(*(adapter.deliver(c, Prior()) for c in cmds))
    assert {e.outcome for e in effects} == {"delivered"} and len(effects) == 30
    assert rig.espeak_renders() == 1 and adapter.renderer.renders == 1
    assert all(rig.slots(platform_zone(t)) for t in rig.targets)
    urls = {rig.slots(platform_zone(t))[0]["audio_url"] for t in rig.targets}
    assert len(urls) == 1
    other = await rig.adapter()  # another worker process: the disk cache still spares espeak-ng
    await other.deliver(command("zone:42001", uri="urn:lantoa:a1"), Prior())
    assert rig.espeak_renders() == 1


async def test_a_second_worker_is_detected_and_its_bulletins_kept(rig: Rig) -> None:
    b = await rig.adapter()
    await rig.deliver(b, command("zone:42008", uri="urn:lantoa:w"))
    a = await rig.adapter()  # e.g. after a rebalance: a takes the zone, then it comes back to b
    await rig.deliver(a, command("zone:42008", uri="urn:lantoa:x", published=at(4, 1)))
    await rig.deliver(b, command("zone:42008", uri="urn:lantoa:y", published=at(4, 2)))
    assert b.conflicts == 1
    assert [s["bulletin_id"] for s in rig.slots("42008")] == ["b-w-v1", "b-x-v1", "b-y-v1"]


async def test_platform_errors_map_to_the_runtime_errors(rig: Rig) -> None:
    adapter = await rig.adapter()
    rig.emulator.faults.add("server_error", path="/schedules/", count=1)
    with pytest.raises(TransientDeliveryError):
        await adapter.deliver(command("zone:42009"), Prior())
    assert rig.emulator.schedule("42009", DAY.isoformat()) is None
    rig.emulator.faults.add("rate_limit", path="/schedules/", count=1)
    with pytest.raises(TargetPaused) as paused:
        await adapter.deliver(command("zone:42009"), Prior())
    assert paused.value.retry_after == 5 and adapter.rate_scope("zone:42009") == adapter.rate_scope(
        "zone:42010"
    )
    await rig.deliver(adapter, command("zone:42009"))  # the retry: exactly one slot
    assert [s["bulletin_id"] for s in rig.slots("42009")] == ["b-a1-v1"]
    rig.emulator.expire_token(TOKEN)
    with pytest.raises(TargetPaused) as refused:
        await adapter.deliver(command("zone:42010"), Prior())
    assert refused.value.alert
    rig.emulator.add_token(TOKEN)
    rig.emulator.auto_create_zones = False
    with pytest.raises(PermanentDeliveryError) as unknown:
        await adapter.deliver(command("zone:42011"), Prior())
    assert unknown.value.alert and unknown.value.code == "zone_not_found"
    with pytest.raises(PermanentDeliveryError):
        await adapter.deliver(command("zone:nowhere"), Prior())


async def test_emergency_commands_are_left_to_the_emergency_lane(rig: Rig) -> None:
    adapter = await rig.adapter()
    effect = await adapter.deliver(command("zone:42012", priority=Priority.EMERGENCY), Prior())
    assert effect.outcome == "skipped" and rig.emulator.schedule("42012", DAY.isoformat()) is None


async def test_priority_goes_ahead_and_what_does_not_fit_carries_over(rig: Rig) -> None:
    adapter = await rig.adapter()
    long_text = " ".join(
        ["Thông báo về kế hoạch phòng chống thiên tai của xã trong mùa mưa bão năm nay."] * 40
    )
    await rig.deliver(adapter, command("zone:42013", uri="urn:lantoa:long", text=long_text))
    await rig.deliver(
        adapter,
        command("zone:42013", uri="urn:lantoa:urgent", priority=Priority.PRIORITY, published=at(4, 5)),
    )
    slots = rig.slots("42013")
    assert slots[0]["bulletin_id"] == "b-urgent-v1" and slots[0]["priority"] == "priority"
    assert {s["bulletin_id"] for s in slots} == {"b-urgent-v1", "b-long-v1"}
    plan = day_from_json(rig.emulator.schedule("42013", DAY.isoformat()).body)  # type: ignore[union-attr]
    assert plan.slots[0].start == at(5, 30)


# -- round trips ---------------------------------------------------------------------------------


def calls(rig: Rig, code: str) -> dict[str, int]:
    """Platform calls so far for one zone, by kind (GET of a missing schedule counted apart)."""
    out = {"GET": 0, "GET 404": 0, "PUT": 0, "plays": rig.emulator.stats.count(path="GET /api/v1/plays")}
    for key, outcomes in rig.emulator.stats.by_path.items():
        method, _, path = key.partition(" ")
        if f"/zones/{code}/schedules/" in path:
            for outcome, n in outcomes.items():
                out["GET 404" if method == "GET" and outcome == "error:not_found" else method] += n
    return out


async def test_a_new_zone_costs_one_conditional_put_per_day_and_no_reads(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42014"))
    assert calls(rig, "42014") == {
        "GET": 0,
        "GET 404": 0,
        "PUT": 2,
        "plays": 0,
    }  # nothing can have played yet
    await rig.deliver(adapter, command("zone:42014", uri="urn:lantoa:a2", published=at(4, 1)))
    assert calls(rig, "42014") == {
        "GET": 0,
        "GET 404": 0,
        "PUT": 3,
        "plays": 0,
    }  # tomorrow's plan is unchanged
    assert [s["bulletin_id"] for s in rig.slots("42014")] == ["b-a1-v1", "b-a2-v1"]
    today, tomorrow = (rig.emulator.schedule("42014", d.isoformat()) for d in (DAY, date(2026, 9, 18)))
    assert today is not None and tomorrow is not None
    assert "state" in today.body and "state" not in tomorrow.body  # the set's digest rides on the first day


async def test_a_schedule_unknown_to_the_ledger_is_read_and_kept(rig: Rig) -> None:
    """A worker PUT the schedule and died before the ledger heard of it: the retry's
    ``If-None-Match: *`` meets it, reads it and leaves it as it is (same plan, same version)."""
    first = await rig.adapter()
    cmd = command("zone:42015")
    await first.deliver(cmd, Prior())  # the effect, but no ledger entry
    before = rig.emulator.schedule("42015", DAY.isoformat())
    retry = await rig.adapter()
    effect = await rig.deliver(retry, cmd)
    after = rig.emulator.schedule("42015", DAY.isoformat())
    assert effect.outcome == "delivered" and before is not None and after is not None
    assert (after.version, after.etag) == (before.version, before.etag)
    assert [s["bulletin_id"] for s in rig.slots("42015")] == ["b-a1-v1"]
    assert retry.conflicts == 0  # a day never seen is not a conflict: no ledger reload
    assert (
        calls(rig, "42015")["PUT"] == 2 + 1 and calls(rig, "42015")["GET"] == 2
    )  # the 412, then both days read


async def test_play_reports_are_asked_for_once_something_can_have_played(rig: Rig) -> None:
    adapter = await rig.adapter()
    await rig.deliver(adapter, command("zone:42016"))
    rig.clock.set(
        at(4, day=date(2026, 9, 18)).timestamp()
    )  # the next day, before its windows: a1 aired yesterday
    await rig.deliver(
        adapter, command("zone:42016", uri="urn:lantoa:a2", published=at(4, 0, day=date(2026, 9, 18)))
    )
    assert calls(rig, "42016")["plays"] == 1
    today = [s["bulletin_id"] for s in rig.slots("42016", date(2026, 9, 18))]
    assert today == ["b-a2-v1"]  # played in full yesterday: never planned again
    await rig.deliver(
        adapter, command("zone:42016", uri="urn:lantoa:a3", published=at(4, 1, day=date(2026, 9, 18)))
    )
    assert calls(rig, "42016")["plays"] == 1  # no window since: the reports fetched still hold
    rig.clock.set(at(7, day=date(2026, 9, 18)).timestamp())
    effect = await rig.deliver(adapter, command("zone:42016", uri="urn:lantoa:a2", action=Action.RETRACT))
    assert calls(rig, "42016")["plays"] == 2  # one read for the retraction and the plan
    assert effect.detail["correction"] is not None  # a2 aired at 05:30


# -- lantoa schedule ---------------------------------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LoudspeakerEmulator, Settings]]:
    """An emulator on a thread of its own, so that the CLI can run its own event loop."""
    loop = asyncio.new_event_loop()
    emulator = LoudspeakerEmulator(tokens=[TOKEN])
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(emulator.start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert ready.wait(10)
    token = tmp_path / "token.json"
    write_secret(token, {"token": TOKEN})
    settings = Settings(
        loudspeaker_api_url=str(emulator.base_url),
        loudspeaker_token_file=token,
        loudspeaker_audio_base_url=AUDIO_BASE,
    )
    yield emulator, settings
    asyncio.run_coroutine_threadsafe(emulator.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def test_lantoa_schedule_reads_the_platform(
    served: tuple[LoudspeakerEmulator, Settings], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    emulator, settings = served
    target = schedule_cli.resolve_zone(settings, "18073")  # Phường Thành Sen, Hà Tĩnh
    code = platform_zone(target.id, target)
    adapter_clock = ManualClock(at(4).timestamp())
    renderer = AudioRenderer(tmp_path / "audio", AUDIO_BASE)

    async def publish() -> None:
        adapter = LoudspeakerAdapter(
            PlatformClient(settings.loudspeaker_api_url, lambda: TOKEN),
            renderer,
            {target.id: target}.get,
            clock=adapter_clock,
        )
        await adapter.start()
        try:
            await adapter.deliver(command(target.id), Prior())
        finally:
            await adapter.close()

    asyncio.run(publish())
    assert schedule_cli.run(settings, target.id, DAY.isoformat(), "json") == 0
    data = orjson.loads(capsys.readouterr().out)
    assert (
        data["zone"] == code
        and data["slots"][0]["bulletin_id"] == "b-a1-v1"
        and data["platform"]["version"] == 1
    )
    assert schedule_cli.run(settings, f"{target.ward_code:05d}", DAY.isoformat(), "ics") == 0
    ics = capsys.readouterr().out
    assert "BEGIN:VEVENT" in ics and "DTSTART;TZID=Asia/Ho_Chi_Minh:20260917T053000" in ics
    assert schedule_cli.run(settings, target.id, DAY.isoformat(), "m3u") == 0
    m3u = capsys.readouterr().out.splitlines()
    assert m3u[0] == "#EXTM3U" and m3u[1].startswith("#EXTINF:") and m3u[2].startswith(AUDIO_BASE)
    assert schedule_cli.run(settings, target.id, "2026-09-19", "json") == 1
    assert schedule_cli.run(settings, "zone:does-not-exist", None, "json") == 1
