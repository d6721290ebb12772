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
  every PUT carries ``If-Match`` with the etag this worker last saw for that zone and day, and
  every schedule body carries a digest of the zone's bulletin set, so any change to the set by
  anyone changes the etag. A 412 makes the adapter re-read the zone from the ledger (merging
  its own not-yet-written effects), fetch the current schedule, and plan again.
- Played or not comes from the platform's play reports (``GET /plays``), not from our state:
  ``ok`` means played (never planned again; a retraction then gets a correction),
  ``interrupted`` with airtime means heard (a retraction gets a correction) but it is planned
  again while valid, ``offline`` means not heard.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Protocol
from urllib.parse import quote

import aiohttp
from aiokafka import AIOKafkaConsumer, TopicPartition

from consumers.base import Effect, Prior
from consumers.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.http import Reply, call
from consumers.ledger import LIVE_PREFIX
from consumers.loudspeaker.outputs import to_json
from consumers.loudspeaker.scheduler import (
    DEFAULT_EXPIRY_DAYS,
    Bulletin,
    DaySchedule,
    Reason,
    Slot,
    Unplaced,
    correction_for,
    default_expiry,
    schedule_days,
)
from consumers.loudspeaker.windows import ZoneWindows
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.models import Action, Command, Priority, Target
from schemas.settings import Settings
from schemas.topics import Channel, Topic
from streams.speech.tts import RenderedAudio, TTSRenderError, render_audio

log = logging.getLogger(__name__)

UTC = timezone.utc
PLATFORM_SCOPE = "loudspeaker-platform"
_WARD_ID = re.compile(r"zone:(\d+)")


def platform_zone(target_id: str, target: Target | None = None) -> str:
    """The platform's code for a zone: ``config.platform_zone`` when set, else the ward code on
    five digits as in VN-DVHC ("zone:4" → "00004"), else the id without ``zone:``."""
    if target is not None and target.config.get("platform_zone"):
        return str(target.config["platform_zone"])
    if target is not None and target.ward_code is not None:
        return f"{target.ward_code:05d}"
    m = _WARD_ID.fullmatch(target_id)
    return f"{int(m.group(1)):05d}" if m else target_id.removeprefix("zone:")


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _time(raw: Any) -> datetime | None:
    if not isinstance(raw, str) or not raw:
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


# -- the platform -----------------------------------------------------------------------------


class ScheduleConflict(Exception):
    """412: the zone's schedule changed since this worker last saw it (another writer)."""

    def __init__(self, current_etag: str | None) -> None:
        super().__init__(f"schedule changed (now {current_etag})")
        self.current_etag = current_etag


@dataclass(frozen=True)
class PlatformSchedule:
    etag: str
    version: int
    updated_at: str
    body: dict[str, Any]


class PlatformClient:
    """The loudspeaker platform's REST API; errors become consumers/errors.py classes.

    Every call is safe to resend (schedules are idempotent by content, emergencies by id,
    deletes by nature), so a lost answer is a ``TransientDeliveryError``, never an unknown
    outcome. Raises ``TargetPaused`` (401 token, 429 rate limit: platform-wide),
    ``TransientDeliveryError`` (5xx, transport), ``PermanentDeliveryError`` (other 4xx;
    ``alert`` for 403/404 zones), ``ScheduleConflict`` (412, schedules only).
    """

    def __init__(self, base_url: str, token: Callable[[], str | None], *, timeout_s: float = 10.0,
                 pause_on_token_s: float = 300.0, session: aiohttp.ClientSession | None = None) -> None:
        self.base = base_url.rstrip("/") + "/api/v1"
        self.token, self.timeout_s, self.pause_on_token_s = token, timeout_s, pause_on_token_s
        self._session = session
        self._own_session = session is None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    async def _call(self, method: str, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Reply:
        assert self._session is not None, "start() first"
        token = self.token()
        if not token:
            raise TargetPaused("no loudspeaker platform token configured", self.pause_on_token_s, code="no-token",
                               alert=True)
        hdrs = {"Authorization": f"Bearer {token}", **(headers or {})}
        return await call(self._session, method, self.base + path, mutating=False, timeout_s=self.timeout_s,
                          headers=hdrs, **kwargs)

    @staticmethod
    def _zone_path(zone: str, day: date) -> str:
        return f"/zones/{quote(zone, safe='')}/schedules/{day.isoformat()}"

    async def get_schedule(self, zone: str, day: date) -> PlatformSchedule | None:
        reply = await self._call("GET", self._zone_path(zone, day))
        if reply.status == 404 and self._code(reply) == "not_found":
            return None
        self.raise_for(reply)
        body = reply.body if isinstance(reply.body, dict) else {}
        return PlatformSchedule(str(body.get("etag") or reply.headers.get("ETag", "")), int(body.get("version", 0)),
                                str(body.get("updated_at", "")), dict(body.get("schedule") or {}))

    async def put_schedule(self, zone: str, day: date, body: dict[str, Any], *, if_match: str | None) -> dict[str, Any]:
        """PUT a day's schedule: ``If-Match`` the etag last seen, or ``If-None-Match: *`` when
        none was seen (a schedule appearing meanwhile is a conflict too)."""
        headers = {"If-Match": if_match} if if_match else {"If-None-Match": "*"}
        reply = await self._call("PUT", self._zone_path(zone, day), headers=headers, json=body)
        self.raise_for(reply)
        return dict(reply.body) if isinstance(reply.body, dict) else {}

    async def plays(self, zone: str, since: datetime) -> list[dict[str, Any]]:
        reply = await self._call("GET", "/plays", params={"zone": zone, "since": _iso(since)})
        self.raise_for(reply)
        plays = reply.body.get("plays") if isinstance(reply.body, dict) else None
        return [p for p in plays or [] if isinstance(p, dict)]

    async def post_emergency(self, body: dict[str, Any]) -> dict[str, Any]:
        reply = await self._call("POST", "/emergencies", json=body)
        self.raise_for(reply)
        return dict(reply.body) if isinstance(reply.body, dict) else {}

    async def delete_emergency(self, emergency_id: str) -> dict[str, Any] | None:
        """Stop an emergency; None when the platform does not know it."""
        reply = await self._call("DELETE", f"/emergencies/{quote(emergency_id, safe='')}")
        if reply.status == 404:
            return None
        self.raise_for(reply)
        return dict(reply.body) if isinstance(reply.body, dict) else {}

    @staticmethod
    def _code(reply: Reply) -> str:
        err = reply.body.get("error") if isinstance(reply.body, dict) else None
        return str(err.get("code", "")) if isinstance(err, dict) else ""

    def raise_for(self, reply: Reply) -> None:
        if reply.status < 300:
            return
        err = reply.body.get("error") if isinstance(reply.body, dict) else None
        err = err if isinstance(err, dict) else {}
        code = str(err.get("code") or reply.status)
        what = f"loudspeaker platform {reply.status} {code}: {str(err.get('message') or reply.body)[:200]}"
        if reply.status == 412:
            raise ScheduleConflict(err.get("current_etag"))
        if reply.status == 401:
            raise TargetPaused(f"token refused ({what})", self.pause_on_token_s, code=code, alert=True)
        if reply.status == 429:
            raise TargetPaused(f"rate limited ({what})", _retry_after(reply, err) or 5.0, code=code)
        if reply.status >= 500 or reply.status == 408:
            raise TransientDeliveryError(what, _retry_after(reply, err), code=code)
        raise PermanentDeliveryError(what, code=code, alert=reply.status in (403, 404))


def _retry_after(reply: Reply, err: Mapping[str, Any]) -> float | None:
    for raw in (reply.headers.get("Retry-After"), err.get("retry_after")):
        try:
            return float(raw) if raw is not None else None
        except (TypeError, ValueError):
            continue
    return None


# -- audio --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audio:
    """A rendered bulletin: where the platform fetches it, the file under the cache, its length."""

    url: str
    path: str
    duration_s: float
    sha256: str


class AudioRenderer:
    """Speaks texts with espeak-ng, once per text: on disk (``render_audio`` is content-addressed)
    and in process (single flight: concurrent zones asking for the same text wait for one render,
    later ones reuse the result). Rendering runs in a thread, so the event loop keeps serving.

    Raises ``InvalidContent`` (nothing to speak), ``TransientDeliveryError`` (espeak-ng failed or
    timed out) and lets ``TTSUnavailable`` through (no espeak-ng on this host: crash, fix it).
    """

    def __init__(self, cache_dir: Path, base_url: str, *, voice: str = "vi", speed_wpm: int = 150,
                 executable: str = "espeak-ng", memo_size: int = 1024) -> None:
        self.cache_dir, self.base_url = Path(cache_dir), base_url.rstrip("/")
        self.voice, self.speed_wpm, self.executable = voice, speed_wpm, executable
        self._memo: OrderedDict[str, asyncio.Future[Audio]] = OrderedDict()
        self._memo_size = memo_size
        self.renders = 0  # files espeak-ng wrote for this process (cache misses on disk)

    async def render(self, text: str) -> Audio:
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        pending = self._memo.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._memo[key] = pending
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
            try:
                rendered = await asyncio.to_thread(self._render, text)
            except asyncio.CancelledError:
                self._memo.pop(key, None)
                pending.cancel()
                raise
            except Exception as exc:
                self._memo.pop(key, None)  # a retry renders again
                pending.set_exception(exc)
                pending.exception()  # retrieved: the callers waiting on it re-raise it themselves
                raise
            if not rendered.cache_hit:
                self.renders += 1
            relative = rendered.path.relative_to(self.cache_dir.resolve()).as_posix()
            pending.set_result(Audio(f"{self.base_url}/{quote(relative)}", relative, rendered.duration_s,
                                     rendered.sha256))
        else:
            self._memo.move_to_end(key)
        return await asyncio.shield(pending)

    def index(self, uri: str, version: int, audio: Audio) -> None:
        """Name the rendered file by article version too, so the archive can store the audio
        the stations play (``audio_for``). One small pointer file, written once per version."""
        pointer = article_audio_pointer(self.cache_dir, uri, version)
        if not pointer.exists():
            pointer.parent.mkdir(parents=True, exist_ok=True)
            tmp = pointer.with_suffix(".tmp")
            tmp.write_text(audio.path)
            os.replace(tmp, pointer)

    def _render(self, text: str) -> RenderedAudio:
        try:
            return render_audio(text, voice=self.voice, speed_wpm=self.speed_wpm, cache_dir=self.cache_dir,
                                executable=self.executable)
        except TTSRenderError as exc:
            raise TransientDeliveryError(f"text-to-speech failed: {exc}") from exc


def article_audio_pointer(cache_dir: Path, uri: str, version: int) -> Path:
    return Path(cache_dir) / "by-article" / f"{hashlib.sha256(uri.encode()).hexdigest()}-v{version}.txt"


def audio_for(cache_dir: Path) -> Callable[[str, int], Path | None]:
    """The archive's audio lookup: (uri, version) → the WAV the loudspeaker channel rendered, if any."""

    def lookup(uri: str, version: int) -> Path | None:
        pointer = article_audio_pointer(cache_dir, uri, version)
        try:
            relative = pointer.read_text().strip()
        except FileNotFoundError:
            return None
        path = (Path(cache_dir) / relative).resolve()
        return path if path.is_file() and Path(cache_dir).resolve() in path.parents else None

    return lookup


# -- zone state ---------------------------------------------------------------------------------


def bulletin_json(b: Bulletin) -> dict[str, Any]:
    return {"bulletin_id": b.bulletin_id, "uri": b.uri, "version": b.version, "priority": b.priority.value,
            "title": b.title, "duration_s": b.duration_s, "published_at": _iso(b.published_at),
            "expires_at": _iso(b.expires_at), "audio_url": b.audio_url, "audio_path": b.audio_path,
            "correction": b.correction, "corrects": b.corrects, "reason": b.reason}


def bulletin_from_json(raw: Mapping[str, Any]) -> Bulletin:
    """Inverse of ``bulletin_json``; raises KeyError/ValueError on a malformed entry."""
    published, expires = _time(raw["published_at"]), _time(raw["expires_at"])
    if published is None or expires is None:
        raise ValueError("bulletin times must be aware ISO 8601")
    return Bulletin(str(raw["bulletin_id"]), str(raw["uri"]), int(raw["version"]), Priority(raw["priority"]),
                    str(raw.get("title") or ""), float(raw["duration_s"]), published, expires,
                    raw.get("audio_url"), raw.get("audio_path"), bool(raw.get("correction")), raw.get("corrects"),
                    raw.get("reason"))


@dataclass(frozen=True)
class ZoneEntry:
    """One article in one zone: what the scheduler needs of it, kept in the ledger's live detail."""

    bulletin: Bulletin
    earlier: tuple[str, ...] = ()  # bulletin ids of its earlier versions (they may have played)
    retracted_version: int | None = None
    retracted_at: datetime | None = None
    correction: Bulletin | None = None

    @property
    def uri(self) -> str:
        return self.bulletin.uri

    def rank(self) -> tuple[int, int]:
        version = max(self.bulletin.version, self.retracted_version or 0)
        return version, 1 if self.retracted_at is not None else 0

    def expired(self, now: datetime) -> bool:
        ends = [self.bulletin.expires_at] + ([self.correction.expires_at] if self.correction else [])
        return max(e.astimezone(UTC) for e in ends) <= now.astimezone(UTC)

    def to_detail(self) -> dict[str, Any]:
        return {"bulletin": bulletin_json(self.bulletin), "earlier": list(self.earlier),
                "retracted": None if self.retracted_at is None else
                {"version": self.retracted_version, "at": _iso(self.retracted_at)},
                "correction": None if self.correction is None else bulletin_json(self.correction)}

    @classmethod
    def from_detail(cls, detail: Mapping[str, Any] | None) -> ZoneEntry | None:
        """None for a detail that is not a zone entry (a skipped effect) or is unreadable."""
        if not isinstance(detail, Mapping) or not isinstance(detail.get("bulletin"), Mapping):
            return None
        try:
            retracted = detail.get("retracted") or None
            correction = detail.get("correction")
            return cls(bulletin_from_json(detail["bulletin"]), tuple(str(e) for e in detail.get("earlier") or ()),
                       int(retracted["version"]) if retracted else None,
                       _time(retracted["at"]) if retracted else None,
                       bulletin_from_json(correction) if isinstance(correction, Mapping) else None)
        except (KeyError, TypeError, ValueError) as exc:
            log.error("unreadable loudspeaker zone entry (%s): %s", type(exc).__name__, exc)
            return None


def merge(entries: dict[str, ZoneEntry], entry: ZoneEntry) -> None:
    """Keep the newer of two entries for one uri: higher version, then the retraction."""
    known = entries.get(entry.uri)
    if known is None or entry.rank() > known.rank():
        entries[entry.uri] = entry


def state_digest(entries: Mapping[str, ZoneEntry]) -> str:
    """A short digest of a zone's bulletin set, carried in every schedule body so that any change
    to the set (by any worker) changes the platform's etag."""
    parts = sorted((e.uri, e.bulletin.version, e.bulletin.bulletin_id, e.retracted_version or 0,
                    e.correction.bulletin_id if e.correction else "") for e in entries.values())
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:16]


class ZoneSource(Protocol):
    """Where a zone's bulletin set is rebuilt from: the ``live`` ledger values of the zone."""

    async def entries(self, zone_id: str, *, fresh: bool = False) -> list[dict[str, Any]]: ...


class LedgerZoneSource:
    """Reads the loudspeaker ledger topic (compacted) for zone entries.

    The first call reads every partition once and indexes live entries by zone, dropping those
    expired more than ``keep_expired_s`` ago; ``fresh=True`` re-reads the partition the zone's
    entries live in (all partitions when unknown). ``partitions`` is the ledger's partition count
    from configuration (the count the topic was created with, as for the runtime).
    """

    def __init__(self, bootstrap: str, topic: str, partitions: int, client_id: str, *,
                 keep_expired_s: float = 86400.0, clock: Callable[[], float] = time.time) -> None:
        self.bootstrap, self.topic, self.partitions, self.client_id = bootstrap, topic, partitions, client_id
        self.keep_expired_s, self.clock = keep_expired_s, clock
        self._by_zone: dict[str, dict[str, dict[str, Any]]] = {}
        self._partition_of: dict[str, int] = {}
        self._loaded = False
        self._lock = asyncio.Lock()

    async def entries(self, zone_id: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        async with self._lock:
            if not self._loaded:
                await self._read(None)
                self._loaded = True
            elif fresh:
                p = self._partition_of.get(zone_id)
                await self._read(None if p is None else {p})
        return list(self._by_zone.get(zone_id, {}).values())

    async def _read(self, partitions: set[int] | None) -> None:
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    client_id=f"{self.client_id}-loudspeaker-zones")
        await consumer.start()
        try:
            known = set(range(self.partitions))
            chosen = sorted(known if partitions is None else known & partitions)
            tps = [TopicPartition(self.topic, p) for p in chosen]
            if not tps:
                return
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            found: dict[str, dict[str, dict[str, Any]]] = {}
            where: dict[str, int] = {}
            remaining = {tp for tp in tps if end[tp] > 0}
            while remaining:
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=20000)
                for tp, recs in batch.items():
                    for rec in recs:
                        key = rec.key.decode("utf-8", "replace") if rec.key else ""
                        if key.startswith(LIVE_PREFIX):
                            self._apply(found, where, tp.partition, key, rec.value)
                for tp in list(remaining):
                    if await consumer.position(tp) >= end[tp]:
                        remaining.discard(tp)
            stale = [z for z, p in self._partition_of.items() if p in set(chosen)]
            for zone in stale:
                self._by_zone.pop(zone, None)
                self._partition_of.pop(zone, None)
            horizon = datetime.fromtimestamp(self.clock() - self.keep_expired_s, UTC)
            for zone, by_uri in found.items():
                kept = {u: v for u, v in by_uri.items()
                        if (e := ZoneEntry.from_detail(v.get("detail"))) is not None and not e.expired(horizon)}
                if kept:
                    self._by_zone[zone] = kept
                    self._partition_of[zone] = where[zone]
            log.info("loudspeaker zones: %d zones rebuilt from %s partitions %s", len(found), self.topic, chosen)
        finally:
            await consumer.stop()

    @staticmethod
    def _apply(found: dict[str, dict[str, dict[str, Any]]], where: dict[str, int], partition: int, key: str,
               raw: bytes | None) -> None:
        _, _, rest = key.partition(LIVE_PREFIX)
        uri, _, zone = rest.rpartition("|")
        if raw is None:  # tombstone
            found.get(zone, {}).pop(uri, None)
            return
        try:
            value = decode(raw)
        except InvalidContent:
            log.error("unreadable loudspeaker ledger entry %s (partition %d)", key, partition)
            return
        if isinstance(value, dict):
            found.setdefault(zone, {})[uri] = value
            where[zone] = partition


# -- schedules as JSON ------------------------------------------------------------------------


def schedule_body(plan: DaySchedule, digest: str) -> dict[str, Any]:
    """What is PUT for a zone and day: the JSON output without its planning time (so that the
    same plan is the same body, byte for byte) plus the digest of the zone's bulletin set."""
    body = to_json(plan)
    body.pop("as_of", None)
    body["state"] = digest
    return body


def day_from_json(body: Mapping[str, Any]) -> DaySchedule:
    """A DaySchedule back from a schedule body (``schedule_body``/``to_json``). Raises
    KeyError/ValueError on a body that is not one."""
    zone = str(body["zone"])

    def moment(raw: Any) -> datetime:
        parsed = _time(raw)
        if parsed is None:
            raise ValueError(f"not an aware time: {raw!r}")
        return parsed

    slots = tuple(
        Slot(zone, str(s["bulletin_id"]), str(s["uri"]), int(s["version"]), Priority(s["priority"]),
             moment(s["start"]), moment(s["end"]), int(s["window_index"]), str(s.get("title") or ""),
             bool(s.get("correction")), float(s.get("duration_s") or 0.0), s.get("audio_url"), s.get("audio_path"))
        for s in body.get("slots") or ())
    unplaced = tuple(Unplaced(str(u["bulletin_id"]), str(u["uri"]), int(u["version"]), Reason(u["reason"]),
                              str(u.get("detail") or "")) for u in body.get("unplaced") or ())
    windows = tuple((moment(w["start"]), moment(w["end"])) for w in body.get("windows") or ())
    return DaySchedule(zone, date.fromisoformat(str(body["date"])), str(body["timezone"]), windows, slots, unplaced)


@dataclass
class _Known:
    """The schedule this worker last saw at the platform for one zone and day."""

    etag: str | None
    body: dict[str, Any] | None
    plan: DaySchedule | None


@dataclass
class _Zone:
    entries: dict[str, ZoneEntry] = field(default_factory=dict)
    known: dict[date, _Known] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


# -- the adapter ------------------------------------------------------------------------------


def correction_text(title: str, reason: str) -> str:
    """What the loudspeakers say after a retracted bulletin aired. The reason is read only when
    it is written in Vietnamese (it has letters beyond ASCII): a system reason such as "retracted
    by the newsroom" stays in the records, never on air."""
    text = f"Đính chính. Tin «{title}» đã phát trước đây được rút lại." if title else \
        "Đính chính. Một tin đã phát trước đây được rút lại."
    spoken = any(ch.isalpha() and not ch.isascii() for ch in reason)
    return f"{text} Lý do: {reason.rstrip('.')}." if reason and spoken else text


class LoudspeakerAdapter:
    """Plans and pushes zone schedules for publish/update/retract commands (see the module
    docstring). ``deliver`` raises the errors of consumers/errors.py (via ``PlatformClient``),
    ``InvalidContent`` for a command without speakable text, and never touches the offset."""

    channel: ClassVar[Channel] = Channel.LOUDSPEAKER
    min_interval_s: ClassVar[float] = 0.0

    def __init__(self, client: PlatformClient, renderer: AudioRenderer, targets: Callable[[str], Target | None], *,
                 source: ZoneSource | None = None, clock: Callable[[], float] = time.time, days_ahead: int = 2,
                 expiry_days: float = DEFAULT_EXPIRY_DAYS, plays_lookback_s: float = 7 * 86400.0) -> None:
        self.client, self.renderer, self.targets, self.source = client, renderer, targets, source
        self.clock, self.days_ahead, self.expiry_days = clock, days_ahead, expiry_days
        self.plays_lookback_s = plays_lookback_s
        self._zones: dict[str, _Zone] = {}
        self.conflicts = 0  # 412s seen (another writer touched a zone)

    async def start(self) -> None:
        await self.client.start()

    async def close(self) -> None:
        await self.client.close()

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
            return Effect("skipped", None, {"reason": "emergencies go through the emergency lane"})
        code = platform_zone(target.id, target)
        try:
            windows = ZoneWindows.from_config(code, target.config)
        except ValueError as exc:
            raise PermanentDeliveryError(f"zone {target.id}: {exc}", alert=True) from exc
        zone = await self._zone(target.id)
        async with zone.lock:
            given = ZoneEntry.from_detail(prior.detail)
            if given is not None:
                merge(zone.entries, given)
            for attempt in (1, 2):
                try:
                    return await self._apply(command, zone, code, windows)
                except ScheduleConflict as exc:
                    self.conflicts += 1
                    log.warning("zone %s changed at the platform (%s): reloading it", target.id, exc.current_etag)
                    if attempt == 2:
                        raise TransientDeliveryError(f"zone {target.id}: schedule keeps changing under us") from exc
                    await self._reload(target.id, zone)
        raise AssertionError("unreachable")

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
                        merge(zone.entries, entry)
            zone = self._zones.setdefault(zone_id, zone)
        return zone

    async def _reload(self, zone_id: str, zone: _Zone) -> None:
        zone.known.clear()
        if self.source is not None:
            for value in await self.source.entries(zone_id, fresh=True):
                entry = ZoneEntry.from_detail(value.get("detail"))
                if entry is not None:
                    merge(zone.entries, entry)  # ours, not yet in the ledger, survive the merge

    async def _apply(self, command: Command, zone: _Zone, code: str, windows: ZoneWindows) -> Effect:
        now = self._now()
        entries = dict(zone.entries)
        key = command.key
        old = entries.get(key.uri)
        if key.action is Action.RETRACT:
            if old is None:
                return Effect("skipped", None, {"reason": "nothing of this article in the zone"})
            if old.retracted_at is not None and (old.retracted_version or 0) >= key.version:
                return Effect("deleted", f"{code}/{old.bulletin.bulletin_id}", old.to_detail())
            entry = await self._retract(command, old, zone, code, now)
            outcome = "deleted"
        else:
            if old is not None and old.rank() > (key.version, 0):
                # The zone entry stays in the detail: the ledger's live entry must keep describing the zone.
                return Effect("skipped", None, {**old.to_detail(), "reason": f"version {old.rank()[0]} is already in the zone"})
            bulletin = await self._bulletin(command, now)
            earlier = old.earlier if old is not None else ()
            if old is not None and old.bulletin.bulletin_id != bulletin.bulletin_id:
                earlier = (*earlier, old.bulletin.bulletin_id)
            entry = ZoneEntry(bulletin, earlier)
            newer = old is not None and old.retracted_at is None and old.bulletin.version < key.version
            outcome = "updated" if newer else "delivered"
        entries[key.uri] = entry
        plans = await self._push(zone, entries, code, windows, now)
        zone.entries = entries  # only now: a failed push leaves the zone as it was
        placed = [{"date": p.day.isoformat(), "start": s.start.isoformat(), "correction": s.correction}
                  for p in plans for s in p.slots if s.uri == key.uri and s.start.astimezone(UTC) >= now]
        return Effect(outcome, f"{code}/{entry.bulletin.bulletin_id}", {**entry.to_detail(), "placed": placed})

    async def _bulletin(self, command: Command, now: datetime) -> Bulletin:
        payload = command.payload
        text = str(payload.get("text") or "").strip()
        if not text:
            raise InvalidContent("loudspeaker command without text")
        audio = await self.renderer.render(text)
        self.renderer.index(command.key.uri, command.key.version, audio)
        published = _time(command.published_at) or _time(command.issued_at) or now
        expires = _time(payload.get("expires_at")) or default_expiry(published, self.expiry_days)
        if expires <= published:
            expires = default_expiry(published, self.expiry_days)
        bid = str(payload.get("bulletin_id") or "") or hashlib.sha256(
            f"{command.key.uri}\x00{command.key.version}\x00{text}".encode()).hexdigest()[:32]
        title = str(payload.get("title") or "").strip() or text.split("\n", 1)[0][:200]
        priority = Priority.PRIORITY if command.priority is Priority.PRIORITY else Priority.NORMAL
        return Bulletin(bid, command.key.uri, command.key.version, priority, title, audio.duration_s, published,
                        expires, audio.url, audio.path)

    async def _retract(self, command: Command, old: ZoneEntry, zone: _Zone, code: str, now: datetime) -> ZoneEntry:
        heard = await self._heard(zone, code, old, now)
        correction = old.correction
        if heard is not None and correction is None:
            reason = str(command.payload.get("reason") or "").strip()
            audio = await self.renderer.render(correction_text(old.bulletin.title, reason))
            aired = replace(old.bulletin, bulletin_id=heard)
            correction = correction_for(aired, reason or "tin đã được rút lại", audio.duration_s, issued_at=now,
                                        expiry_days=self.expiry_days, audio_url=audio.url, audio_path=audio.path)
        return replace(old, retracted_version=command.key.version, retracted_at=now, correction=correction)

    async def _heard(self, zone: _Zone, code: str, entry: ZoneEntry, now: datetime) -> str | None:
        """The newest of the article's bulletins listeners heard (played, cut, or on air now)."""
        ids = [*entry.earlier, entry.bulletin.bulletin_id]
        for known in zone.known.values():  # on air right now: not reported yet, but heard
            for s in known.plan.slots if known.plan else ():
                if s.bulletin_id in ids and s.start.astimezone(UTC) <= now < s.end.astimezone(UTC):
                    return s.bulletin_id
        since = min(now - timedelta(seconds=self.plays_lookback_s), entry.bulletin.published_at.astimezone(UTC))
        heard = [p for p in await self.client.plays(code, since) if p.get("bulletin_id") in ids
                 and (p.get("result") == "ok" or (p.get("result") == "interrupted" and float(p.get("played_s") or 0) > 0))]
        return str(max(heard, key=lambda p: ids.index(str(p["bulletin_id"])))["bulletin_id"]) if heard else None

    async def _played(self, code: str, entries: Mapping[str, ZoneEntry], now: datetime) -> set[str]:
        """Bulletins not to plan again: played in full, or heard in part when since retracted (so
        that their corrections are planned)."""
        if not entries:
            return set()
        oldest = min(e.bulletin.published_at.astimezone(UTC) for e in entries.values())
        since = max(oldest, now - timedelta(seconds=self.plays_lookback_s))
        retracted = {bid for e in entries.values() if e.retracted_at is not None
                     for bid in (*e.earlier, e.bulletin.bulletin_id)}
        played: set[str] = set()
        for p in await self.client.plays(code, since):
            bid, result = str(p.get("bulletin_id")), p.get("result")
            if result == "ok" or (bid in retracted and result == "interrupted" and float(p.get("played_s") or 0) > 0):
                played.add(bid)
        return played

    async def _known(self, zone: _Zone, code: str, day: date) -> _Known:
        known = zone.known.get(day)
        if known is None:
            current = await self.client.get_schedule(code, day)
            if current is None:
                known = _Known(None, None, None)
            else:
                try:
                    plan = day_from_json(current.body)
                except (KeyError, TypeError, ValueError) as exc:
                    log.error("zone %s %s: the platform's schedule is not ours (%s); replacing it", code, day, exc)
                    plan = None
                known = _Known(current.etag, current.body, plan)
            zone.known[day] = known
        return known

    async def _push(self, zone: _Zone, entries: Mapping[str, ZoneEntry], code: str, windows: ZoneWindows,
                    now: datetime) -> list[DaySchedule]:
        live = {uri: e for uri, e in entries.items() if not e.expired(now)}
        today = now.astimezone(windows.tz).date()
        days = [today + timedelta(days=i) for i in range(self.days_ahead)]
        for old in [d for d in zone.known if d < today]:
            del zone.known[old]
        known = {d: await self._known(zone, code, d) for d in days}
        bulletins = [b for e in live.values() for b in (e.bulletin, e.correction) if b is not None]
        retracted = {uri: (e.retracted_version or e.bulletin.version, e.retracted_at)
                     for uri, e in live.items() if e.retracted_at is not None}
        played = await self._played(code, live, now)
        previous = {d: k.plan for d, k in known.items() if k.plan is not None and k.plan.zone_id == code}
        plans = schedule_days(code, windows, bulletins, today, len(days), played, now, retracted=retracted,
                              previous=previous)
        digest = state_digest(live)
        for plan in plans:
            body = schedule_body(plan, digest)
            seen = known[plan.day]
            if seen.body == body:
                continue  # the platform has exactly this: nothing to send
            reply = await self.client.put_schedule(code, plan.day, body, if_match=seen.etag)
            zone.known[plan.day] = _Known(str(reply.get("etag") or ""), body, plan)
        return plans


def from_settings(settings: Settings, targets: Callable[[str], Target | None]) -> LoudspeakerAdapter:
    """The adapter as the registry runs it: platform, token file, audio cache, ledger source."""
    from consumers.fanpage import SecretFile

    if settings.loudspeaker_token_file is None:
        raise SystemExit("LANTOA_LOUDSPEAKER_TOKEN_FILE is required for the loudspeaker adapter")
    token = SecretFile(settings.loudspeaker_token_file)
    client = PlatformClient(settings.loudspeaker_api_url, lambda: token.get("token"), timeout_s=settings.http_timeout_s)
    renderer = AudioRenderer(settings.loudspeaker_audio_dir, settings.loudspeaker_audio_base_url,
                             voice=settings.loudspeaker_voice, speed_wpm=settings.loudspeaker_speed_wpm)
    ledger = Topic.ledger(Channel.LOUDSPEAKER)
    source = LedgerZoneSource(settings.kafka_bootstrap, settings.topic(ledger), settings.partitions(ledger),
                              settings.client_id)
    return LoudspeakerAdapter(client, renderer, targets, source=source)
