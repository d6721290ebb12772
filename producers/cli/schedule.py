"""``lantoa schedule ZONE [--date D] [--format json|ics|m3u]``: one zone's day, as it will air.

Where the schedule comes from: the loudspeaker platform (``GET /api/v1/zones/{zone}/schedules/
{date}``), not a local recomputation. The platform's copy is what the stations will actually
play: it is the adapter's last accepted plan, with the slots already aired frozen in it, and it
needs nothing but the platform's URL and token. Recomputing here would need the adapter's zone
state (the ledger's live entries), the play reports and the same ``now``, and could still
differ from what was pushed; a mismatch would only be confusing. A day the adapter never pushed
is reported as such (exit 1), never guessed.

ZONE is a target id (``zone:18073``), a ward code (``18073``, ``00004``) or a test zone's id;
the zone's time zone (for "today") and name (for the calendar) come from the targets registry.
Output: the JSON of ``consumers.loudspeaker.outputs.to_json`` plus ``platform`` (version, etag,
updated_at), an RFC 5545 calendar (DTSTAMP = when the platform got this version), or an M3U8
playlist of the audio URLs.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import date, datetime
from typing import IO, Any

import orjson

from consumers.loudspeaker.bodies import day_from_json
from consumers.loudspeaker.outputs import to_ics, to_json, to_m3u
from consumers.loudspeaker.platform import PlatformClient, PlatformSchedule, platform_zone
from producers.targets import local_registry
from schemas.models import Target
from schemas.secrets import SecretFile
from schemas.settings import Settings
from schemas.text import identifier
from schemas.topics import Channel
from schemas.windows import ZoneWindows

FORMATS = ("json", "ics", "m3u")


def resolve_zone(settings: Settings, zone: str) -> Target:
    """The loudspeaker zone ZONE names; ValueError when none does."""

    registry = local_registry(settings)
    for candidate in (zone, f"zone:{zone}"):
        found = registry.targets.get(candidate)
        if found is not None and found.channel is Channel.LOUDSPEAKER:
            return found
    if zone.isascii() and zone.isdigit():
        ward = registry.zone_of_ward(int(zone))
        if ward is not None:
            return ward
    raise ValueError(f"no loudspeaker zone {zone!r} in the targets registry (try zone:<ward code>)")


async def fetch(settings: Settings, code: str, day: date) -> PlatformSchedule | None:
    """The platform's schedule of one zone and day (None: nothing pushed). Raises the errors of
    ``PlatformClient`` (consumers/delivery/errors.py)."""

    token = SecretFile(settings.loudspeaker_token_file)
    client = PlatformClient(
        settings.loudspeaker_api_url, lambda: token.get("token"), timeout_s=settings.http_timeout_s
    )
    await client.start()
    try:
        return await client.get_schedule(code, day)
    finally:
        await client.close()


def render(found: PlatformSchedule, fmt: str, zone_name: str, audio_base_url: str) -> str:
    """The schedule in one of FORMATS (ICS as text: CRLF line ends kept)."""
    plan = day_from_json(found.body)
    if fmt == "json":
        data: dict[str, Any] = to_json(plan)
        data["platform"] = {"version": found.version, "etag": found.etag, "updated_at": found.updated_at}
        return orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n"
    if fmt == "ics":
        stamp = None
        if found.updated_at:
            try:
                stamp = datetime.fromisoformat(found.updated_at)
            except ValueError:
                stamp = None
        return to_ics(plan, zone_name, stamp).decode("utf-8")
    if fmt == "m3u":
        return to_m3u(plan, audio_base_url)
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")


def run(
    settings: Settings, zone: str, day: str | None = None, fmt: str = "json", out: IO[str] | None = None
) -> int:
    """The command: 0 printed, 1 no such zone or nothing pushed for that day, 2 bad arguments."""
    out = out or sys.stdout
    if settings.loudspeaker_token_file is None:
        print("LANTOA_LOUDSPEAKER_TOKEN_FILE is not set: the platform needs a token", file=sys.stderr)
        return 2
    try:
        target = resolve_zone(settings, identifier(zone))  # NFC, as the registry keeps ids
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    code = platform_zone(target.id, target)
    windows = ZoneWindows.from_config(code, target.config)
    try:
        wanted = date.fromisoformat(day) if day else datetime.now(windows.tz).date()
    except ValueError:
        print(f"--date {day!r} is not YYYY-MM-DD", file=sys.stderr)
        return 2
    found = asyncio.run(fetch(settings, code, wanted))
    if found is None:
        print(f"no schedule at the platform for {target.id} ({code}) on {wanted}", file=sys.stderr)
        return 1
    out.write(render(found, fmt, target.name, settings.loudspeaker_audio_base_url))
    return 0
