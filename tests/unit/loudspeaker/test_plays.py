"""Play reports from the platform become receipts (played, interrupted, offline)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from helpers import emergency_plan

from consumers.loudspeaker.audio import AudioRenderer
from consumers.loudspeaker.emergency import EmergencyPlan, EmergencyPusher
from consumers.loudspeaker.platform import PlatformClient
from consumers.loudspeaker.plays import PlayReporter
from infra.kafka.outbox import OutRecord
from infra.local.emulators.common import ManualClock
from infra.local.emulators.loudspeaker import LoudspeakerEmulator
from producers.targets import local_registry
from schemas import contracts
from schemas.cap import parse_cap
from schemas.emergency import alert_uri
from schemas.settings import Settings
from streams.alerts.plan import plan_alert

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "t"
ON_AIR = datetime(2026, 9, 17, 5, 31, tzinfo=HCM)


@pytest.fixture
async def emulator() -> AsyncIterator[tuple[LoudspeakerEmulator, ManualClock]]:
    clock = ManualClock(ON_AIR.replace(minute=0).timestamp())
    emu = LoudspeakerEmulator(tokens=[TOKEN], clock=clock)
    await emu.start()
    yield emu, clock
    await emu.stop()


async def test_reports_become_receipts(
    emulator: tuple[LoudspeakerEmulator, ManualClock], tmp_path: Path, shared_dir: Path
) -> None:
    emu, clock = emulator
    assert emu.base_url
    client = PlatformClient(emu.base_url, lambda: TOKEN)
    await client.start()
    registry = local_registry(Settings())
    ward = f"{sorted(z.ward_code or 0 for z in registry.zones_of_province(42) or [])[0]:05d}"
    await client.put_schedule(
        ward,
        ON_AIR.date(),
        {
            "zone": ward,
            "date": ON_AIR.date().isoformat(),
            "timezone": "Asia/Ho_Chi_Minh",
            "slots": [
                {
                    "bulletin_id": "b-morning",
                    "uri": "urn:lantoa:article:morning",
                    "start": ON_AIR.replace(minute=30).isoformat(),
                    "end": ON_AIR.replace(minute=40).isoformat(),
                    "priority": "normal",
                    "audio_url": "https://x/m.wav",
                    "title": "Bản tin sáng",
                }
            ],
        },
        if_match=None,
    )
    clock.set(ON_AIR.timestamp())
    alert = parse_cap((shared_dir / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_bytes())
    plan = emergency_plan(alert, plan_alert(alert, registry), repeat_interval_s=600.0, now=ON_AIR)
    pusher = EmergencyPusher(
        client,
        AudioRenderer(tmp_path / "audio", "https://x/audio"),
        targets=registry.targets.get,
        clock=clock,
    )
    await pusher.push(plan)
    clock.set((ON_AIR + timedelta(minutes=12)).timestamp())  # two rounds of the emergency

    reporter = PlayReporter(Settings(), client)
    sent: list[OutRecord] = []

    async def collect(records: list[OutRecord]) -> None:
        sent.extend(records)

    reporter.outbox.send_all = collect  # type: ignore[method-assign, assignment]
    assert await reporter.poll_once() == len(sent) > 0
    receipts: list[dict[str, Any]] = [orjson.loads(r.value or b"") for r in sent]
    for r in receipts:
        contracts.check("receipt", r)
    by = Counter((r["uri"], r["outcome"]) for r in receipts)
    assert by[(alert_uri(plan.emergency_id), "played")] == 2 * 147
    assert by[("urn:lantoa:article:morning", "interrupted")] == 1  # the bulletin the typhoon cut
    assert len({r["receipt_id"] for r in receipts}) == len(receipts)
    try:
        assert await reporter.poll_once() == 0  # nothing twice
    finally:
        await client.close()


async def test_a_bulletin_id_clash_is_refused_not_a_crash(tmp_path: Path) -> None:
    """Two different bulletins claiming one id (a hand-made or fuzzed command): the second command
    is refused as invalid content (dead letter), the zone keeps what it had."""
    from consumers.delivery.base import Prior
    from consumers.loudspeaker.adapter import LoudspeakerAdapter
    from schemas.errors import InvalidContent
    from schemas.models import Action, Command, IdempotencyKey, Priority
    from schemas.topics import Channel

    clock = ManualClock(ON_AIR.timestamp())
    emu = LoudspeakerEmulator(tokens=[TOKEN], clock=clock)
    await emu.start()
    assert emu.base_url
    registry = local_registry(Settings())
    zone = sorted(registry.zones_of_province(42) or [], key=lambda t: t.id)[0]
    adapter = LoudspeakerAdapter(
        PlatformClient(emu.base_url, lambda: TOKEN),
        AudioRenderer(tmp_path / "audio", "https://x/audio"),
        registry.targets.get,
        clock=clock,
    )
    await adapter.start()
    try:

        def cmd(uri: str, text: str) -> Command:
            return Command(
                IdempotencyKey(uri, 1, Channel.LOUDSPEAKER, zone.id, Action.PUBLISH),
                Priority.NORMAL,
                ON_AIR.isoformat(),
                {"bulletin_id": "same-id", "title": text, "text": text},
                published_at=ON_AIR.isoformat(),
            )

        first = await adapter.deliver(cmd("urn:a", "Tin thứ nhất."), Prior())
        assert first.outcome == "delivered"
        with pytest.raises(InvalidContent, match="cannot schedule"):
            await adapter.deliver(cmd("urn:b", "Tin thứ hai, khác hẳn."), Prior())
        again = await adapter.deliver(cmd("urn:a", "Tin thứ nhất."), Prior())  # the zone is intact
        assert again.outcome == "delivered"
    finally:
        await adapter.close()
        await emu.stop()


async def test_a_bulletin_placed_after_the_first_play_of_the_day_still_gets_its_receipt(
    emulator: tuple[LoudspeakerEmulator, ManualClock],
) -> None:
    emu, clock = emulator
    assert emu.base_url
    client = PlatformClient(emu.base_url, lambda: TOKEN)
    await client.start()
    ward = (
        f"{sorted(z.ward_code or 0 for z in local_registry(Settings()).zones_of_province(42) or [])[0]:05d}"
    )

    def slot(bid: str, uri: str, minute: int) -> dict[str, Any]:
        return {
            "bulletin_id": bid,
            "uri": uri,
            "start": ON_AIR.replace(minute=minute).isoformat(),
            "end": ON_AIR.replace(minute=minute + 5).isoformat(),
            "priority": "normal",
            "audio_url": "https://x/a.wav",
            "title": bid,
        }

    def day(*slots: dict[str, Any]) -> dict[str, Any]:
        return {
            "zone": ward,
            "date": ON_AIR.date().isoformat(),
            "timezone": "Asia/Ho_Chi_Minh",
            "slots": list(slots),
        }

    first = slot("b-1", "urn:lantoa:article:first", 30)
    await client.put_schedule(ward, ON_AIR.date(), day(first), if_match=None)
    clock.set(ON_AIR.replace(minute=36).timestamp())
    reporter = PlayReporter(Settings(), client)
    sent: list[OutRecord] = []

    async def collect(records: list[OutRecord]) -> None:
        sent.extend(records)

    reporter.outbox.send_all = collect  # type: ignore[method-assign, assignment]
    try:
        await reporter.poll_once()
        # Later the same day another bulletin is placed in the zone, and airs.
        current = await client.get_schedule(ward, ON_AIR.date())
        assert current is not None
        await client.put_schedule(
            ward,
            ON_AIR.date(),
            day(first, slot("b-2", "urn:lantoa:article:second", 45)),
            if_match=current.etag,
        )
        clock.set(ON_AIR.replace(minute=51).timestamp())
        await reporter.poll_once()
        uris = Counter(orjson.loads(r.value or b"")["uri"] for r in sent)
        assert uris == Counter({"urn:lantoa:article:first": 1, "urn:lantoa:article:second": 1})
    finally:
        await client.close()
