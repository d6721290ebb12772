"""The play reporter's schedule cache stays small: only the newest days, each string held once."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace
from typing import Any

from consumers.loudspeaker.plays import KEEP_DAYS, PlayReporter
from schemas.settings import Settings


class Schedules:
    """A platform client whose schedules name the same national bulletins in every zone, each
    reply parsed afresh (new string objects, as from JSON)."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, date]] = []

    async def get_schedule(self, zone: str, day: date) -> Any:
        self.asked.append((zone, day))
        slots = [
            {
                "bulletin_id": "".join(["b-", day.isoformat(), f"-{i}"]),
                "uri": "".join(["urn:lantoa:article:", day.isoformat(), f"-{i}"]),
            }
            for i in range(3)
        ]
        return SimpleNamespace(body={"slots": slots})


def play(zone: str, day: str, i: int) -> dict[str, Any]:
    return {
        "zone": zone,
        "started_at": f"{day}T08:00:00+07:00",
        "bulletin_id": f"b-{day}-{i}",
        "result": "ok",
    }


async def test_only_the_newest_days_are_cached_and_bulletin_strings_are_shared() -> None:
    client = Schedules()
    reporter = PlayReporter(Settings(), client)  # type: ignore[arg-type]
    days = ["2026-12-01", "2026-12-02", "2026-12-03", "2026-12-04"]
    zones = [f"{z:05d}" for z in range(1, 6)]
    for day in days:
        for zone in zones:
            for i in range(3):
                assert await reporter._uri(play(zone, day, i)) == f"urn:lantoa:article:{day}-{i}"
    assert reporter.cached() == {d: len(zones) for d in days[-KEEP_DAYS:]}
    assert len(client.asked) == len(days) * len(zones)  # one schedule read per zone and day
    newest = reporter._slots[days[-1]]
    held = [next(iter(newest[z])) for z in zones]
    assert len({id(s) for s in held}) == 1, "a bulletin id in every zone is one string"
    assert len({id(newest[z][held[0]]) for z in zones}) == 1, "and so is its uri"
    # A late play of a day no longer cached is looked up again, and still answered.
    assert await reporter._uri(play(zones[0], days[0], 2)) == f"urn:lantoa:article:{days[0]}-2"
    assert set(reporter.cached()) == set(days[-KEEP_DAYS:])
