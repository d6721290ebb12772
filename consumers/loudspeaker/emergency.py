"""The emergency push: one CAP emergency → one bulk pre-emption at the loudspeaker platform.

Used by the emergency lane (the consumer of ``distribution.emergency.commands``)::

    pusher = EmergencyPusher.from_settings(settings, targets)   # or EmergencyPusher(client, renderer)
    await pusher.start()
    result = await pusher.push(EmergencyPlan.from_record(value))  # action "start"
    await pusher.cancel(value["emergency_id"])                    # action "cancel"
    await pusher.close()

``push`` speaks the text once (the same content-addressed espeak-ng cache as the bulletins),
then POSTs every zone in one call (``max_zones_per_call``, 5,000 at the platform: the 3,321
zones of a national alert are one request; more zones go in concurrent chunks with ids
``<id>#2``, ``<id>#3``...). The platform pre-empts every cluster of those zones at once and
repeats every ``repeat_interval_s`` until ``expires_at``; ``replaces`` (a CAP Update's
references) stops the earlier alerts as the new one starts. Idempotent by id: pushing the same
plan again (a replay, a retry after a lost answer) is answered with the existing record and
never pre-empts twice, so the lane may retry freely. ``cancel`` (a CAP Cancel, for each id it
references) stops the repeats, chunks included; cancelling what the platform never had is not
an error (``found=False``).

Errors are those of consumers/delivery/errors.py, raised by ``PlatformClient``: ``TargetPaused`` (token
refused, rate limited: the platform as a whole), ``TransientDeliveryError`` (5xx, transport),
``PermanentDeliveryError`` (a refused body; unknown zones with ``alert``), ``InvalidContent``
(nothing speakable); ``TTSUnavailable`` is left to crash the worker. A text longer than Lantoa
speaks (``consumers.loudspeaker.tts.MAX_SPEECH_TEXT_CHARS``) is not refused, as a bulletin would be: an
emergency must air, so its start is spoken and ``PushResult.shortened`` says so.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp

from consumers.loudspeaker.audio import AudioRenderer
from consumers.loudspeaker.cap_audio import AudioPolicy
from consumers.loudspeaker.platform import PlatformClient, platform_zone
from schemas.errors import InvalidContent
from schemas.models import Target
from schemas.secrets import SecretFile
from schemas.settings import Settings
from schemas.times import checked_instant

__all__ = ["CancelResult", "EmergencyPlan", "EmergencyPusher", "PushResult", "chunk_id"]

UTC = UTC
REPEAT_GAP_S = 5.0  # silence kept between the end of one play and the next, at least
MAX_CHUNKS = 64  # cancel looks for at most this many chunks (320,000 zones)


def chunk_id(emergency_id: str, index: int) -> str:
    """The platform id of chunk ``index`` (0-based) of an emergency: the first is the id itself."""
    return emergency_id if index == 0 else f"{emergency_id}#{index + 1}"


def _aware(raw: Any, what: str) -> datetime:
    if isinstance(raw, datetime):
        moment = raw
    elif isinstance(raw, str):
        try:
            moment = datetime.fromisoformat(raw)
        except ValueError:
            raise InvalidContent(f"{what} {raw!r} is not an ISO 8601 time") from None
    else:
        raise InvalidContent(f"{what} is required")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidContent(f"{what} {raw!r} has no UTC offset")
    return checked_instant(moment, what)


@dataclass(frozen=True)
class EmergencyPlan:
    """What to pre-empt where: ``zones`` are target ids ("zone:42001"), as on the emergency topic."""

    emergency_id: str
    zones: tuple[str, ...]
    text: str
    expires_at: datetime
    repeat_interval_s: float
    headline: str = ""
    replaces: tuple[str, ...] = ()
    exercise: bool = False
    published_at: datetime | None = None
    audio: Mapping[str, Any] | None = None  # the alert's own audio resource (cap_audio.py)

    def __post_init__(self) -> None:
        if not self.emergency_id:
            raise InvalidContent("an emergency needs an id")
        if not self.zones:
            raise InvalidContent(f"emergency {self.emergency_id}: no zones")
        if not self.text.strip():
            raise InvalidContent(f"emergency {self.emergency_id}: nothing to say")
        if not math.isfinite(self.repeat_interval_s) or self.repeat_interval_s <= 0:
            raise InvalidContent(f"emergency {self.emergency_id}: repeat interval must be > 0")
        _aware(self.expires_at, "expires_at")

    @classmethod
    def from_record(cls, value: Mapping[str, Any]) -> EmergencyPlan:
        """From a ``distribution.emergency.commands`` value (schema emergency v1, action start).
        Raises ``InvalidContent`` when it cannot be aired (no text, no expiry, no zones)."""
        if value.get("action", "start") != "start":
            raise InvalidContent(
                f"emergency {value.get('emergency_id')}: a {value.get('action')} is not a push"
            )
        published = value.get("published_at")
        return cls(
            emergency_id=str(value.get("emergency_id") or ""),
            zones=tuple(str(z) for z in value.get("zones") or ()),
            text=str(value.get("text") or value.get("headline") or ""),
            expires_at=_aware(value.get("expires_at"), "expires_at"),
            repeat_interval_s=float(value.get("repeat_interval_s") or 0),
            headline=str(value.get("headline") or ""),
            replaces=tuple(str(r) for r in value.get("replaces") or ()),
            exercise=bool(value.get("exercise", False)),
            published_at=_aware(published, "published_at") if published else None,
            audio=value["audio"] if isinstance(value.get("audio"), Mapping) else None,
        )


@dataclass(frozen=True)
class PushResult:
    """What the platform did. ``duplicate``: it already had this id (nothing pre-empted again);
    ``skipped``: not sent ("expired"). ``elapsed_s``: render + POST(s), on the monotonic clock.
    ``shortened``: why the audio speaks only the start of the text (longer than Lantoa speaks)."""

    emergency_id: str
    zones: int
    platform_ids: tuple[str, ...]
    preempted_clusters: int
    duplicate: bool
    audio_url: str | None
    duration_s: float
    repeat_interval_s: float
    elapsed_s: float
    skipped: str | None = None
    shortened: str | None = None
    audio_refused: str | None = None  # why the alert's own audio resource was not aired


@dataclass(frozen=True)
class CancelResult:
    emergency_id: str
    found: bool
    platform_ids: tuple[str, ...]


class EmergencyPusher:
    """Pushes emergency plans to the platform in bulk (see the module docstring)."""

    def __init__(
        self,
        client: PlatformClient,
        renderer: AudioRenderer,
        *,
        targets: Callable[[str], Target | None] | None = None,
        clock: Callable[[], float] = time.time,
        max_zones_per_call: int = 5000,
        audio_policy: AudioPolicy | None = None,
    ) -> None:
        if max_zones_per_call < 1:
            raise ValueError("max_zones_per_call must be >= 1")
        self.client, self.renderer, self.targets = client, renderer, targets
        self.clock, self.max_zones_per_call = clock, max_zones_per_call
        self.audio_policy = audio_policy or AudioPolicy()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        targets: Callable[[str], Target | None] | None = None,
        audio_policy: AudioPolicy | None = None,
    ) -> EmergencyPusher:

        if settings.loudspeaker_token_file is None:
            raise SystemExit("LANTOA_LOUDSPEAKER_TOKEN_FILE is required for the emergency lane")
        token = SecretFile(settings.loudspeaker_token_file)
        client = PlatformClient(
            settings.loudspeaker_api_url, lambda: token.get("token"), timeout_s=settings.http_timeout_s
        )
        renderer = AudioRenderer(
            settings.loudspeaker_audio_dir,
            settings.loudspeaker_audio_base_url,
            voice=settings.loudspeaker_voice,
            speed_wpm=settings.loudspeaker_speed_wpm,
        )
        return cls(client, renderer, targets=targets, audio_policy=audio_policy)

    async def start(self) -> None:
        await self.client.start()
        if self.audio_policy.hosts:  # remote audio is fetched only from the allow-list
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        await self.client.close()
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _codes(self, zones: tuple[str, ...]) -> list[str]:
        codes = [platform_zone(z, self.targets(z) if self.targets else None) for z in zones]
        return list(dict.fromkeys(codes))

    async def push(self, plan: EmergencyPlan) -> PushResult:
        """Pre-empt every zone of the plan now; see the module docstring for errors."""
        started = time.monotonic()
        now = datetime.fromtimestamp(self.clock(), UTC)
        codes = self._codes(plan.zones)
        if plan.expires_at.astimezone(UTC) <= now:
            return PushResult(
                plan.emergency_id,
                len(codes),
                (),
                0,
                False,
                None,
                0.0,
                plan.repeat_interval_s,
                time.monotonic() - started,
                skipped="expired",
            )
        audio, shortened, refused = await self.renderer.render_alert(
            plan.text, plan.audio, self.audio_policy, self._session
        )
        # A play must end before the next starts; an interval shorter than the bulletin grows.
        interval = max(plan.repeat_interval_s, math.ceil(audio.duration_s) + REPEAT_GAP_S)
        chunks = [
            codes[i : i + self.max_zones_per_call] for i in range(0, len(codes), self.max_zones_per_call)
        ]
        bodies = [
            {
                "emergency_id": chunk_id(plan.emergency_id, n),
                "zones": chunk,
                "priority": "emergency",
                "audio_url": audio.url,
                "text": plan.text,
                "title": plan.headline,
                "duration_s": audio.duration_s,
                "repeat_interval_s": interval,
                "expires_at": plan.expires_at.isoformat(),
                "replaces": list(plan.replaces),
                "exercise": plan.exercise,
            }
            for n, chunk in enumerate(chunks)
        ]
        replies = await asyncio.gather(*(self.client.post_emergency(b) for b in bodies))
        for old in plan.replaces:  # an earlier alert pushed in chunks: stop its other chunks too
            await self._delete_chunks(old, first=1)
        return PushResult(
            emergency_id=plan.emergency_id,
            zones=len(codes),
            platform_ids=tuple(str(b["emergency_id"]) for b in bodies),
            preempted_clusters=sum(
                int(r.get("preempted_clusters") or 0) for r in replies if not r.get("duplicate")
            ),
            duplicate=all(bool(r.get("duplicate")) for r in replies),
            audio_url=audio.url,
            duration_s=audio.duration_s,
            repeat_interval_s=interval,
            elapsed_s=time.monotonic() - started,
            shortened=shortened,
            audio_refused=refused,
        )

    async def cancel(self, emergency_id: str) -> CancelResult:
        """Stop an emergency's repeats at every zone (all its chunks)."""
        stopped = await self._delete_chunks(emergency_id, first=0)
        return CancelResult(emergency_id, bool(stopped), tuple(stopped))

    async def _delete_chunks(self, emergency_id: str, *, first: int) -> list[str]:
        stopped: list[str] = []
        for n in range(first, MAX_CHUNKS):
            pid = chunk_id(emergency_id, n)
            if await self.client.delete_emergency(pid) is None:
                if n > 0 or first > 0:
                    break  # chunks are numbered without gaps: the first missing one ends them
                continue  # the first chunk is unknown: chunks of a bigger push may still exist
            stopped.append(pid)
        return stopped
