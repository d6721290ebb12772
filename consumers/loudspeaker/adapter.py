"""Loudspeaker adapter (normal and priority lanes): zone schedules pushed to the platform.

A command names one zone and one article version. The adapter speaks the bulletin once
(``AudioRenderer``: content-addressed espeak-ng WAVs, single-flight in process, so the 3,321
commands of a national bulletin share one render), puts it into the zone's bulletin set, plans
today and tomorrow with the pure scheduler and PUTs each day's schedule to the platform
(idempotent by content: an unchanged plan is not even sent). A retraction withdraws the
bulletin (the scheduler drops its unplayed slots) and, when the platform reports it played (or
it is on air now), adds a short spoken correction. Emergencies are not planned here: they go
through ``consumers.loudspeaker.emergency`` (the emergency lane).

Per-zone state, and how it survives restarts
---------------------------------------------
A zone's schedule depends on every bulletin live in the zone, but a command only carries one.
The durable record is the runtime's ledger: each effect's ``detail`` becomes the ``live`` entry
``live|<uri>|<zone>`` (compacted), and here that detail is the zone entry of the article: the
bulletin's schedule facts (id, version, priority, title, spoken length, publish/expiry times,
audio), the ids of its earlier versions, the retraction and its correction. So the set of live
entries of a zone *is* the zone's bulletin set, written in the same acknowledged batch as the
receipt, before the offset commit, by the worker that owns the zone's partition.

- In memory: ``{zone: {uri: ZoneEntry}}``, updated only after the platform accepted the plan
  (a failed PUT leaves the state as it was; the retry recomputes).
- On the first command for a zone after a start, the zone is rebuilt from the ledger
  (``ZoneSource``; ``LedgerZoneSource`` reads the loudspeaker ledger topic's live entries once,
  keeping only those not long expired). Each command's ``Prior.detail`` (the runtime's fresh
  ledger view of that article in that zone) is merged in too; for one uri the higher
  (version, retracted) wins, as in the runtime.
- Another worker may have owned the zone meanwhile (a rebalance). The platform detects it:
  every PUT carries ``If-Match`` with the etag this worker last saw for that zone and day
  (``If-None-Match: *`` when it saw none), and the first day's body carries a digest of the
  zone's bulletin set, so any change to the set by anyone changes that day's etag. A 412 makes
  the adapter re-read the zone from the ledger (merging its own not-yet-written effects), fetch
  the current schedule, and plan again.
- Round trips: a zone new to this process and without ledger entries is not read first: its
  days are PUT with ``If-None-Match: *`` (a 412 there means a schedule exists after all: it is
  read and the zone planned again, without a ledger reload). Unchanged days are not sent.
- Played or not comes from the platform's play reports (``GET /plays``), not from our state:
  ``ok`` means played (never planned again; a retraction then gets a correction),
  ``interrupted`` with airtime means heard (a retraction gets a correction) but it is planned
  again while valid, ``offline`` means not heard. Reports are asked for only when a window (or a
  known slot) lies between the last fetch, or the first publication concerned, and now.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any, ClassVar, TypeVar

import aiohttp
import orjson

from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import PermanentDeliveryError, TransientDeliveryError
from consumers.loudspeaker.audio import AudioRenderer
from consumers.loudspeaker.bodies import body_digest, could_play, day_from_json, schedule_body
from consumers.loudspeaker.cap_audio import AudioPolicy
from consumers.loudspeaker.platform import (
    PlatformClient,
    ScheduleConflict,
    aware_time,
    platform_zone,
)
from consumers.loudspeaker.scheduler import (
    DEFAULT_EXPIRY_DAYS,
    Bulletin,
    DaySchedule,
    correction_for,
    default_expiry,
    schedule_days,
)
from consumers.loudspeaker.zones import (
    KEEP_EXPIRED_S,
    LedgerZoneSource,
    ZoneEntry,
    ZoneSource,
    merge,
    state_digest,
)
from schemas.errors import InvalidContent
from schemas.models import Action, Command, Outcome, Priority, Target
from schemas.secrets import SecretFile
from schemas.settings import Settings
from schemas.topics import Channel, Topic
from schemas.windows import ZoneWindows

# The platform client, the audio, the zone state and the schedule bodies live in their own modules
# (platform.py, audio.py, zones.py, bodies.py); their names stay importable from here.
__all__ = ["PLATFORM_SCOPE", "LoudspeakerAdapter", "correction_text", "from_settings"]

log = logging.getLogger(__name__)

UTC = UTC
PLATFORM_SCOPE = "loudspeaker-platform"
# Distinct bulletins and zone entries held once (``_shared``): a day's national bulletins are a few dozen.
INTERNED = 4096
_Held = TypeVar("_Held", Bulletin, ZoneEntry)


@dataclass
class _Known:
    """The schedule this worker last saw at the platform for one zone and day (etag None: none
    there). Only a digest of the body is kept (``body_digest``), and the plan."""

    etag: str | None
    body: bytes | None
    plan: DaySchedule | None


@dataclass
class _Plays:
    """The zone's play reports as last fetched: from ``since``, as of ``fetched_at``."""

    since: datetime
    fetched_at: datetime
    plays: list[dict[str, Any]]


@dataclass
class _Zone:
    entries: dict[str, ZoneEntry] = field(default_factory=dict)
    known: dict[date, _Known] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    plays: _Plays | None = None


class _Fetched(Exception):
    """A conditional PUT of a day never seen here (``If-None-Match: *``) found a schedule: it
    has been read into ``known`` now; plan again (no ledger reload: nothing we saw has changed)."""


# -- the adapter ------------------------------------------------------------------------------


def correction_text(title: str, reason: str) -> str:
    """What the loudspeakers say after a retracted bulletin aired. The reason is read only when
    it is written in Vietnamese (it has letters beyond ASCII): a system reason such as "retracted
    by the newsroom" stays in the records, never on air."""
    text = (
        f"Đính chính. Tin «{title}» đã phát trước đây được rút lại."
        if title
        else "Đính chính. Một tin đã phát trước đây được rút lại."
    )
    spoken = any(ch.isalpha() and not ch.isascii() for ch in reason)
    return f"{text} Lý do: {reason.rstrip('.')}." if reason and spoken else text


class LoudspeakerAdapter:
    """Plans and pushes zone schedules for publish/update/retract commands (see the module
    docstring). ``deliver`` raises the errors of consumers/delivery/errors.py (via ``PlatformClient``),
    ``InvalidContent`` for a command without speakable text, and never touches the offset."""

    channel: ClassVar[Channel] = Channel.LOUDSPEAKER
    min_interval_s: ClassVar[float] = 0.0

    def __init__(
        self,
        client: PlatformClient,
        renderer: AudioRenderer,
        targets: Callable[[str], Target | None],
        *,
        source: ZoneSource | None = None,
        clock: Callable[[], float] = time.time,
        days_ahead: int = 2,
        expiry_days: float = DEFAULT_EXPIRY_DAYS,
        plays_lookback_s: float = 7 * 86400.0,
        clock_margin_s: float = 120.0,
        audio_policy: AudioPolicy | None = None,
    ) -> None:
        self.client, self.renderer, self.targets, self.source = client, renderer, targets, source
        # A CAP alert's own audio on the priority lane (consumers/loudspeaker/cap_audio.py)
        self.audio_policy = audio_policy or AudioPolicy()
        self._http: aiohttp.ClientSession | None = None
        self.clock, self.days_ahead, self.expiry_days = clock, days_ahead, expiry_days
        self.plays_lookback_s = plays_lookback_s
        # How far the platform's clock may be ahead of ours (or behind) when deciding that nothing
        # can have played yet: a wider margin only costs a play-report GET now and then.
        self.clock_margin_s = clock_margin_s
        self._zones: dict[str, _Zone] = {}
        self._windows: dict[str, tuple[tuple[str, str], ZoneWindows]] = {}
        # One object per distinct bulletin and zone entry, shared by every zone that holds it (a
        # national article is the same bulletin, and mostly the same entry, in 3,321 zones).
        self._interned: OrderedDict[Bulletin | ZoneEntry, Any] = OrderedDict()
        self.conflicts = 0  # 412s seen (another writer touched a zone)

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession | None:
        if self._http is None and self.audio_policy.hosts:
            self._http = aiohttp.ClientSession()
        return self._http

    def rate_scope(self, target: str) -> str:
        # Tokens and rate limits belong to the platform, not to a zone: one pause for all.
        return PLATFORM_SCOPE

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    # -- effects ------------------------------------------------------------------------------

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        target = self.targets(command.target)
        if target is None or target.channel is not Channel.LOUDSPEAKER:
            raise PermanentDeliveryError(f"unknown loudspeaker zone {command.target}")
        if command.priority is Priority.EMERGENCY:
            return Effect(Outcome.SKIPPED, None, {"reason": "emergencies go through the emergency lane"})
        code = platform_zone(target.id, target)
        windows = self._zone_windows(target.id, code, target)
        zone = await self._zone(target.id)
        async with zone.lock:
            given = ZoneEntry.from_detail(prior.detail)
            if given is not None:
                merge(zone.entries, self._shared(given))
            reloaded, fetched = False, 0
            while True:
                try:
                    return await self._apply(command, zone, code, windows)
                except _Fetched:
                    fetched += 1  # at most once per day pushed: a fetched day is known from now on
                    if fetched > self.days_ahead:
                        raise AssertionError("a day fetched after a 412 stayed unknown") from None
                except ScheduleConflict as exc:
                    self.conflicts += 1
                    log.warning(
                        "zone %s changed at the platform (%s): reloading it", target.id, exc.current_etag
                    )
                    if reloaded:
                        raise TransientDeliveryError(
                            f"zone {target.id}: schedule keeps changing under us"
                        ) from exc
                    reloaded = True
                    await self._reload(target.id, zone)

    def _zone_windows(self, zone_id: str, code: str, target: Target) -> ZoneWindows:
        # Parsed once per zone and config (a targets reload brings a new config: parsed again).
        config = repr(sorted(target.config.items()))
        cached = self._windows.get(zone_id)
        if cached is not None and cached[0] == (code, config):
            return cached[1]
        try:
            windows = ZoneWindows.from_config(code, target.config)
        except ValueError as exc:
            raise PermanentDeliveryError(f"zone {zone_id}: {exc}", alert=True) from exc
        self._windows[zone_id] = ((code, config), windows)
        return windows

    @staticmethod
    def live_until(detail: dict[str, Any]) -> float | None:
        """When a zone's live entry stops mattering: its bulletin (and correction) expired
        KEEP_EXPIRED_S ago (as long as the zone source keeps it), so nothing of it plays any more,
        an update places a new bulletin and a late older version is expired too; the runtime's
        ledger sweeps the entry then. None for a detail that is no zone entry (a skipped effect):
        kept like any live entry."""
        entry = ZoneEntry.from_detail(detail)
        if entry is None:
            return None
        ends = [entry.bulletin.expires_at] + ([entry.correction.expires_at] if entry.correction else [])
        return max(e.timestamp() for e in ends) + KEEP_EXPIRED_S

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        return None  # every platform call is idempotent: delivering again is the reconciliation

    async def _zone(self, zone_id: str) -> _Zone:
        zone = self._zones.get(zone_id)
        if zone is None:
            zone = _Zone()
            if self.source is not None:
                for value in await self.source.entries(zone_id):
                    entry = ZoneEntry.from_detail(value.get("detail"))
                    if entry is not None:
                        merge(zone.entries, self._shared(entry))
            zone = self._zones.setdefault(zone_id, zone)
        return zone

    async def _reload(self, zone_id: str, zone: _Zone) -> None:
        zone.known.clear()
        if self.source is not None:
            for value in await self.source.entries(zone_id, fresh=True):
                entry = ZoneEntry.from_detail(value.get("detail"))
                if entry is not None:
                    merge(zone.entries, self._shared(entry))  # ours, not yet in the ledger, survive the merge

    async def _apply(self, command: Command, zone: _Zone, code: str, windows: ZoneWindows) -> Effect:
        now = self._now()
        # Entries past their expiry by KEEP_EXPIRED_S play nowhere: dropped here as the ledger sweeps
        # their live entries then (``live_until``) and the zone source skips them on a rebuild.
        horizon = now - timedelta(seconds=KEEP_EXPIRED_S)
        entries = {uri: e for uri, e in zone.entries.items() if not e.expired(horizon)}
        key = command.key
        old = entries.get(key.uri)
        if key.action is Action.RETRACT:
            if old is None:
                return Effect(Outcome.SKIPPED, None, {"reason": "nothing of this article in the zone"})
            if old.retracted_at is not None and (old.retracted_version or 0) >= key.version:
                return Effect(Outcome.DELETED, old.bulletin.bulletin_id, old.to_detail())
            entry = await self._retract(command, old, zone, code, windows, now)
            outcome = Outcome.DELETED
        else:
            if old is not None and old.rank() > (key.version, 0):
                # The zone entry stays in the detail: the ledger's live entry must keep describing the zone.
                return Effect(
                    Outcome.SKIPPED,
                    None,
                    {**old.to_detail(), "reason": f"version {old.rank()[0]} is already in the zone"},
                )
            bulletin = await self._bulletin(command, now)
            earlier = old.earlier if old is not None else ()
            if old is not None and old.bulletin.bulletin_id != bulletin.bulletin_id:
                earlier = (*earlier, old.bulletin.bulletin_id)
            entry = self._shared(ZoneEntry(bulletin, earlier))
            newer = old is not None and old.retracted_at is None and old.bulletin.version < key.version
            outcome = Outcome.UPDATED if newer else Outcome.DELIVERED
        # Keyed by the entry's own uri (one string with the shared entry), not the command's: a
        # national week is ~500,000 zone entries, and a fresh uri string each was ~90 bytes.
        entries[entry.uri] = entry
        plans = await self._push(zone, entries, code, windows, now)
        zone.entries = entries  # only now: a failed push leaves the zone as it was
        placed = [
            {"date": p.day.isoformat(), "start": s.start.isoformat(), "correction": s.correction}
            for p in plans
            for s in p.slots
            if s.uri == key.uri and s.start.astimezone(UTC) >= now
        ]
        # The external id is the bulletin id, the one the platform's slots carry (the zone is the
        # receipt's target): one string for a bulletin in all its zones.
        return Effect(outcome, entry.bulletin.bulletin_id, {**entry.to_detail(), "placed": placed})

    async def _bulletin(self, command: Command, now: datetime) -> Bulletin:
        payload = command.payload
        text = str(payload.get("text") or "").strip()
        if not text:
            raise InvalidContent("loudspeaker command without text")
        resource = payload.get("audio")
        if isinstance(resource, Mapping):  # a CAP alert's recording, before or instead of the text
            audio, _, refused = await self.renderer.render_alert(
                text, resource, self.audio_policy, self._session()
            )
            if refused:
                log.warning("%s: %s", command.key.uri[:200], refused)
        else:
            audio = await self.renderer.render(text)
        self.renderer.index(command.key.uri, command.key.version, audio)
        published = aware_time(command.published_at) or aware_time(command.issued_at) or now
        expires = aware_time(payload.get("expires_at")) or default_expiry(published, self.expiry_days)
        if expires <= published:
            expires = default_expiry(published, self.expiry_days)
        bid = (
            str(payload.get("bulletin_id") or "")
            or hashlib.sha256(f"{command.key.uri}\x00{command.key.version}\x00{text}".encode()).hexdigest()[
                :32
            ]
        )
        title = str(payload.get("title") or "").strip() or text.split("\n", 1)[0][:200]
        priority = Priority.PRIORITY if command.priority is Priority.PRIORITY else Priority.NORMAL
        return self._shared(
            Bulletin(
                bid,
                command.key.uri,
                command.key.version,
                priority,
                title,
                audio.duration_s,
                published,
                expires,
                audio.url,
                audio.path,
            )
        )

    def _shared(self, value: _Held) -> _Held:
        """The one object held for ``value`` (equal values are one object): bounded, most recent kept."""
        held: _Held | None = self._interned.get(value)
        if held is not None:
            self._interned.move_to_end(value)
            return held
        self._interned[value] = value
        if len(self._interned) > INTERNED:
            self._interned.popitem(last=False)
        return value

    async def _retract(
        self, command: Command, old: ZoneEntry, zone: _Zone, code: str, windows: ZoneWindows, now: datetime
    ) -> ZoneEntry:
        heard = await self._heard(zone, code, windows, old, now)
        correction = old.correction
        if heard is not None and correction is None:
            reason = str(command.payload.get("reason") or "").strip()
            audio = await self.renderer.render(correction_text(old.bulletin.title, reason))
            aired = replace(old.bulletin, bulletin_id=heard)
            correction = correction_for(
                aired,
                reason or "tin đã được rút lại",
                audio.duration_s,
                issued_at=now,
                expiry_days=self.expiry_days,
                audio_url=audio.url,
                audio_path=audio.path,
            )
        return self._shared(
            replace(old, retracted_version=command.key.version, retracted_at=now, correction=correction)
        )

    async def _heard(
        self, zone: _Zone, code: str, windows: ZoneWindows, entry: ZoneEntry, now: datetime
    ) -> str | None:
        """The newest of the article's bulletins listeners heard (played, cut, or on air now)."""
        ids = [*entry.earlier, entry.bulletin.bulletin_id]
        for known in zone.known.values():  # on air right now: not reported yet, but heard
            for s in known.plan.slots if known.plan else ():
                if s.bulletin_id in ids and s.start.astimezone(UTC) <= now < s.end.astimezone(UTC):
                    return s.bulletin_id
        since = min(
            now - timedelta(seconds=self.plays_lookback_s), entry.bulletin.published_at.astimezone(UTC)
        )
        # Earlier versions were published before this one, at times not kept: from ``since`` then.
        earliest = since if entry.earlier else entry.bulletin.published_at.astimezone(UTC)
        heard = [
            p
            for p in await self._plays(zone, code, windows, since, earliest, now)
            if p.get("bulletin_id") in ids
            and (
                p.get("result") == "ok"
                or (p.get("result") == "interrupted" and float(p.get("played_s") or 0) > 0)
            )
        ]
        return (
            str(max(heard, key=lambda p: ids.index(str(p["bulletin_id"])))["bulletin_id"]) if heard else None
        )

    async def _played(
        self, zone: _Zone, code: str, windows: ZoneWindows, entries: Mapping[str, ZoneEntry], now: datetime
    ) -> set[str]:
        """Bulletins not to plan again: played in full, or heard in part when since retracted (so
        that their corrections are planned)."""
        if not entries:
            return set()
        oldest = min(e.bulletin.published_at.astimezone(UTC) for e in entries.values())
        since = max(oldest, now - timedelta(seconds=self.plays_lookback_s))
        earliest = since if any(e.earlier for e in entries.values()) else oldest
        retracted = {
            bid
            for e in entries.values()
            if e.retracted_at is not None
            for bid in (*e.earlier, e.bulletin.bulletin_id)
        }
        played: set[str] = set()
        for p in await self._plays(zone, code, windows, since, earliest, now):
            bid, result = str(p.get("bulletin_id")), p.get("result")
            if result == "ok" or (
                bid in retracted and result == "interrupted" and float(p.get("played_s") or 0) > 0
            ):
                played.add(bid)
        return played

    async def _plays(
        self, zone: _Zone, code: str, windows: ZoneWindows, since: datetime, earliest: datetime, now: datetime
    ) -> list[dict[str, Any]]:
        """The zone's play reports from ``since``, asking the platform only when something can
        have played that we have not seen: nothing plays before ``earliest`` (the first moment
        any bulletin concerned was published) nor outside the zone's windows and known slots,
        and reports already fetched stay true. Each zone's fetch is kept (one list per zone)."""
        margin = timedelta(seconds=self.clock_margin_s)
        plans = [k.plan for k in zone.known.values() if k.plan is not None]
        cached = zone.plays
        start = max(since, earliest)  # nothing concerned can have played before
        if cached is None:
            if not could_play(windows, start - margin, now + margin, plans):
                return []
        elif cached.since <= start or not could_play(windows, start - margin, cached.since + margin, plans):
            if not could_play(windows, cached.fetched_at - margin, now + margin, plans):
                return cached.plays
        plays = await self.client.plays(code, since)
        zone.plays = _Plays(since, now, plays)
        return plays

    async def _known(self, zone: _Zone, code: str, day: date) -> _Known:
        """The platform's schedule for the day, read now (GET; a 404 is an empty day)."""
        current = await self.client.get_schedule(code, day)
        if current is None:
            known = _Known(None, None, None)
        else:
            try:
                plan: DaySchedule | None = day_from_json(current.body)
            except (KeyError, TypeError, ValueError) as exc:
                log.error(
                    "zone %s %s: the platform's schedule is not ours (%s); replacing it", code, day, exc
                )
                plan = None
            known = _Known(current.etag, body_digest(orjson.dumps(current.body)), plan)
        zone.known[day] = known
        return known

    async def _push(
        self, zone: _Zone, entries: Mapping[str, ZoneEntry], code: str, windows: ZoneWindows, now: datetime
    ) -> list[DaySchedule]:
        """Plan today and the next days and PUT each day whose body changed.

        Round trips: a day this worker has not seen is read first (GET) only when the zone had
        entries before (its schedules likely exist); a new zone's days are PUT at once with
        ``If-None-Match: *`` and, if one exists after all (412), read and planned again
        (``_Fetched``). Play reports are asked for only when something can have played
        (``_plays``). Bodies are encoded once (orjson) and compared by digest.

        Detecting other writers: every PUT is conditional on the etag last seen (or on none
        existing), and the first day's body carries the digest of the zone's bulletin set. Any
        change to the set therefore rewrites the first day (the first PUT of every push), so a
        worker with a stale set meets a 412 on it before it writes any day; later days carry
        no digest and are rewritten only when their plan changes.
        """
        live = {uri: e for uri, e in entries.items() if not e.expired(now)}
        today = now.astimezone(windows.tz).date()
        days = [today + timedelta(days=i) for i in range(self.days_ahead)]
        for old in [d for d in zone.known if d < today]:
            del zone.known[old]
        fetch = bool(zone.entries)  # before this command: the zone has been written to before
        known: dict[date, _Known | None] = {}
        for d in days:
            seen = zone.known.get(d)
            known[d] = seen if seen is not None or not fetch else await self._known(zone, code, d)
        bulletins = [b for e in live.values() for b in (e.bulletin, e.correction) if b is not None]
        retracted = {
            uri: (e.retracted_version or e.bulletin.version, e.retracted_at)
            for uri, e in live.items()
            if e.retracted_at is not None
        }
        played = await self._played(zone, code, windows, live, now)
        previous = {
            d: k.plan
            for d, k in known.items()
            if k is not None and k.plan is not None and k.plan.zone_id == code
        }
        try:
            plans = schedule_days(
                code,
                windows,
                bulletins,
                today,
                len(days),
                played,
                now,
                retracted=retracted,
                previous=previous,
            )
        except ValueError as exc:  # the scheduler refuses inconsistent input: never retry it, never crash
            raise InvalidContent(f"zone {code}: cannot schedule: {exc}") from None
        digest: str | None = state_digest(live)
        for plan in plans:
            raw = orjson.dumps(schedule_body(plan, digest))
            digest = None  # the first day only (see above)
            mark = body_digest(raw)
            seen = known[plan.day]
            if seen is not None and seen.body == mark:
                continue  # the platform has exactly this: nothing to send
            try:
                reply = await self.client.put_schedule(
                    code, plan.day, raw, if_match=None if seen is None else seen.etag
                )
            except ScheduleConflict:
                if seen is not None:
                    raise
                for d, k in known.items():  # the zone has schedules after all: read the days not seen
                    if k is None:
                        await self._known(zone, code, d)
                raise _Fetched() from None
            # Kept of the plan: its slots (the next plan's past, what is on air); not what it left out.
            zone.known[plan.day] = _Known(str(reply.get("etag") or ""), mark, replace(plan, unplaced=()))
        return plans


def from_settings(
    settings: Settings, targets: Callable[[str], Target | None], clock: Callable[[], float] = time.time
) -> LoudspeakerAdapter:
    """The adapter as the registry runs it: platform, token file, audio cache, ledger source
    (``clock``: the bench's week of national days runs it on a clock advanced a day per day)."""

    if settings.loudspeaker_token_file is None:
        raise SystemExit("LANTOA_LOUDSPEAKER_TOKEN_FILE is required for the loudspeaker adapter")
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
    ledger = Topic.ledger(Channel.LOUDSPEAKER)
    source = LedgerZoneSource(
        settings.kafka, settings.topic(ledger), settings.partitions(ledger), settings.client_id
    )
    return LoudspeakerAdapter(
        client, renderer, targets, source=source, clock=clock, audio_policy=AudioPolicy.from_env(os.environ)
    )
