"""Archive channel adapter: every article version as S3 objects, and takedowns that keep history.

Layout in the bucket (``<h>`` = SHA-256 of the article uri in hex, so no byte of the uri ever
reaches a key, and no uri can leave its own prefix)::

    <prefix>articles/<h>/manifest.json        uri, versions, objects (size, SHA-256, VersionId), takedowns
    <prefix>articles/<h>/v<N>/document.json   the ninjs document, canonical JSON (sorted keys)
    <prefix>articles/<h>/v<N>/index.html      a Vietnamese reading page: plain text only, escaped, CSP
    <prefix>articles/<h>/v<N>/bulletin.html   a printable internal bulletin with the QR code
    <prefix>articles/<h>/v<N>/qr.png          QR code (error level M) of the public URL
    <prefix>articles/<h>/v<N>/audio.wav       the loudspeaker's WAV byte for byte, when rendered (streamed)
    <prefix>articles/<h>/v<N>/cap.xml         a CAP alert's XML as received, signature intact
    <prefix>alerts/active.json, feed.atom      the public feed of the alerts in force (consumers/archive/feed.py)

A CAP alert (uri ``urn:lantoa:cap:…``, streams/alerts/render.py) is archived like an article,
one version per message of its chain, and listed in the feed unless it is an exercise. Its Cancel
is a retraction that *marks* it: the pages say the warning was cancelled, while its document
and CAP XML stay readable (a warning once given is a public record), and it leaves the feed.

Idempotence: each object carries its SHA-256 (``x-amz-meta-sha256`` and the verified
``x-amz-checksum-sha256``). An object the manifest does not know yet for this version is written
at once with ``If-None-Match: *``: the store refuses it when the key exists, and only then is the
key HEADed (same checksum: skipped; a takedown marker: left alone). An object the manifest
already records (a replay) is HEADed first and skipped when the checksum matches, so a replay
uploads nothing; replacements are written with ``If-Match: <etag>``. No replayed command creates
an object version. The manifest is written last, conditional on the ETag it was read with at
the start of the command (read again only when another writer got in between), and converges:
replaying yields the same bytes, and the PUT is skipped.

Retraction writes a takedown marker over every public object of the article (its older
versions stay in the bucket's version history, optionally under legal hold) and records the
takedown in the manifest. A publish of a version at or below a takedown is skipped, so a replay
of old commands never brings a retracted article back.

Errors (see consumers/delivery/errors.py and consumers/archive/store.py for the mapping): unreachable
store, 5xx, throttling → TransientDeliveryError; refused credentials, missing bucket →
TargetPaused(alert=True) (the commands wait while ops fix it instead of being dead-lettered); a
command without a usable document or public URL → InvalidContent; different content for an
archived version → PermanentDeliveryError(code="VersionConflict", alert=True). Writes are
verified, so a timeout after a request left is retried as transient: the next attempt finds what
was written. ``start()`` waits for an unreachable store (see there) instead of failing.

The configuration is in consumers/archive/config.py, the S3 primitives in
consumers/archive/store.py, the pages, QR code and takedown markers in
consumers/archive/render.py and the manifest merges in consumers/archive/manifest.py (pure).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
import unicodedata
import weakref
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, TypeVar

from consumers.archive.config import ArchiveConfig
from consumers.archive.feed import AlertFeed
from consumers.archive.manifest import (
    manifest_bytes,
    merge_takedown,
    merge_version,
    new_manifest,
    parse_manifest,
    recorded_names,
    status_of,
    takedown_covering,
)
from consumers.archive.render import (
    article_view,
    canonical_json,
    clean_text,
    render_bulletin,
    render_index,
    render_qr,
    render_takedown,
    valid_public_url,
)
from consumers.archive.store import Blob, Race, S3ObjectStore, StoreUnavailable, blob, file_blob
from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from schemas import metrics
from schemas.article import squash
from schemas.cap import MAX_CAP_BYTES
from schemas.emergency import ALERT_URI_PREFIX
from schemas.errors import InvalidContent
from schemas.models import Action, Command, Outcome
from schemas.topics import Channel

__all__ = ["ArchiveAdapter", "article_hash", "article_prefix"]

log = logging.getLogger(__name__)

DEFAULT_REASON: Final = "retracted by the newsroom"
CANCELLED_TITLE: Final = "Cảnh báo đã được hủy"
ALERT_RECORD: Final = frozenset({"document.json", "cap.xml"})  # what a Cancel leaves readable

Sleep = Callable[[float], Awaitable[None]]
_T = TypeVar("_T")
_Read = tuple[dict[str, Any] | None, bytes, str | None]  # a manifest as read: parsed, raw bytes, ETag


def article_hash(uri: str) -> str:
    """SHA-256 of the uri's UTF-8 bytes, in hex: the only part of a key derived from the uri."""
    return hashlib.sha256(uri.encode("utf-8", "surrogatepass")).hexdigest()


def article_prefix(prefix: str, uri: str) -> str:
    return f"{prefix}articles/{article_hash(uri)}/"


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def start_delay(config: ArchiveConfig, attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Wait before start attempt ``attempt + 1`` (1-based ``attempt``): exponential from the first
    delay up to the cap, jittered to 50-100% so restarted workers do not knock in step."""
    ceiling = min(config.start_retry_cap_s, config.start_retry_first_s * 2.0 ** max(0, attempt - 1))
    return ceiling * (0.5 + 0.5 * rng())


class ArchiveAdapter:
    """The archive channel (see the module docstring for the layout and the guarantees).

    Every version is archived, also one arriving after a newer one (held in a retry tier while S3
    was away): ``keeps_every_version`` tells the runtime not to skip it as superseded.

    ``client`` is a boto3 S3 client to use instead of building one from the config (tests).
    ``clock`` gives the times written into manifests and markers; ``sleep``, ``monotonic`` and
    ``rng`` drive the waits of ``start()`` (tests inject them).
    """

    channel: ClassVar[Channel] = Channel.ARCHIVE
    keeps_every_version: ClassVar[bool] = True

    def __init__(
        self,
        config: ArchiveConfig,
        client: Any | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        sleep: Sleep = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.config = config
        self.store = S3ObjectStore(config, client)
        self._clock = clock
        self._sleep, self._monotonic, self._rng = sleep, monotonic, rng
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.start_attempts = 0  # failed start attempts before the store answered (tests, logs)
        self._down_since: float | None = None  # monotonic time of the first failure of an outage
        self._pausing = False
        self.feed = AlertFeed(self.store, config.prefix, clock)
        self._feed_task: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the client, make sure the bucket exists with versioning (and object lock when
        legal hold is configured).

        While the store is unreachable or answers 5xx/throttling (TransientDeliveryError) this
        waits and tries again with jittered exponential backoff, logging each failure with the
        next wait; meanwhile ``lantoa_paused_targets{channel="archive"}`` is 1 (the archive has
        one target, the store) and nothing is consumed, so no command moves. It gives up and
        raises the last TransientDeliveryError only after ``config.start_deadline_s`` (None:
        never). Refused credentials (TargetPaused) and ArchiveConfigError raise at once: those
        need ops, and the worker stops with the reason.
        """
        began = self._monotonic()
        while True:
            try:
                await asyncio.to_thread(self.store.ensure_bucket)
            except TransientDeliveryError as exc:
                self.start_attempts += 1
                waited = self._monotonic() - began
                deadline = self.config.start_deadline_s
                if deadline is not None and waited >= deadline:
                    log.error(
                        "archive: S3 bucket %r still unreachable after %.0f s and %d attempts; giving up: %s",
                        self.config.bucket,
                        waited,
                        self.start_attempts,
                        exc.reason,
                    )
                    raise
                delay = start_delay(self.config, self.start_attempts, self._rng)
                if deadline is not None:
                    delay = max(0.0, min(delay, deadline - waited))
                metrics.PAUSED_TARGETS.labels(self.channel.value).set(1)
                log.warning(
                    "archive: S3 not ready at start (attempt %d, %.0f s so far): %s; not consuming, "
                    "next attempt in %.1f s",
                    self.start_attempts,
                    waited,
                    exc.reason,
                    delay,
                )
                await self._sleep(delay)
                continue
            if self._feed_task is None:
                self._feed_task = asyncio.create_task(self._refresh_feed(), name="archive-feed")
            if self.start_attempts:
                metrics.PAUSED_TARGETS.labels(self.channel.value).set(0)
                log.warning(
                    "archive: S3 bucket %r ready after %d failed attempts (%.0f s); consuming",
                    self.config.bucket,
                    self.start_attempts,
                    self._monotonic() - began,
                )
            return

    async def close(self) -> None:
        task, self._feed_task = self._feed_task, None
        if task is not None and not task.done():  # done: its loop ended already (asyncio.run)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(self.store.close)

    async def _refresh_feed(self) -> None:
        """Takes expired alerts out of the feed: at their expiry (to the second), and every
        ``feed_refresh_s`` anyway (repairing a feed a concurrent writer left behind)."""
        wait = self.config.feed_refresh_s
        while True:
            await asyncio.sleep(wait)  # not ``self._sleep``: tests drive start()'s waits with it
            wait = self.config.feed_refresh_s
            try:
                upcoming = await asyncio.to_thread(self.feed.refresh)
            except (TransientDeliveryError, TargetPaused, PermanentDeliveryError) as exc:
                log.warning("archive: the CAP feed could not be refreshed: %s", exc.reason)
                continue
            if upcoming is not None:
                left = (upcoming - self._clock()).total_seconds()
                wait = max(0.5, min(wait, left + 0.5))

    @property
    def client(self) -> Any:
        """The boto3 client (after start())."""
        return self.store.client

    # -- the protocol ------------------------------------------------------------------------

    def _lock(self, uri: str) -> asyncio.Lock:
        lock = self._locks.get(uri)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[uri] = lock
        return lock

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        """Archive one article version, or take the article down. Safe to replay.

        Raises the errors of the module docstring; while the store has been down for longer
        than ``config.outage_pause_after_s``, TargetPaused instead of TransientDeliveryError."""
        self._check(command)
        async with self._lock(command.key.uri):  # one manifest writer per article in this process
            if command.key.action is Action.RETRACT:
                return await self._watching(self._retract_sync, command)
            return await self._watching(self._publish_sync, command)

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        """The Effect when the manifest and the objects show the command's effect, else None."""
        self._check(command)
        async with self._lock(command.key.uri):
            return await self._watching(self._reconcile_sync, command)

    async def _watching(self, work: Callable[[Command], _T], command: Command) -> _T:
        """Run ``work`` in a thread, keeping track of how long the store has been down.

        A short outage stays transient (retried in process, then through the retry topics,
        counting attempts). Past ``outage_pause_after_s`` of failures with no success in
        between, the archive's one target (the store) is paused instead: the runtime parks the
        commands in the retry topics without counting attempts, so none is dead-lettered for an
        outage however long, and no command waits on a connect timeout meanwhile."""
        try:
            result = await asyncio.to_thread(work, command)
        except StoreUnavailable as exc:
            now = self._monotonic()
            if self._down_since is None:
                self._down_since = now
            down = now - self._down_since
            if down < self.config.outage_pause_after_s:
                raise
            if not self._pausing:
                self._pausing = True
                log.error(
                    "archive: S3 unavailable for %.0f s (%s): pausing the archive target; commands wait "
                    "in the retry topics until it answers",
                    down,
                    exc.reason,
                )
            raise TargetPaused(
                f"S3 unavailable for {down:.0f} s: {exc.reason}", self.config.outage_pause_s, code=exc.code
            ) from exc
        if self._down_since is not None:
            log.warning(
                "archive: S3 answers again after %.0f s of failures", self._monotonic() - self._down_since
            )
            self._down_since, self._pausing = None, False
        return result

    def _check(self, command: Command) -> None:
        if command.channel is not Channel.ARCHIVE:
            raise InvalidContent(f"not an archive command: channel {command.channel.value}")
        if not command.key.uri:
            raise InvalidContent("the command has no article uri")

    def _keys(self, uri: str) -> tuple[str, str]:
        root = article_prefix(self.config.prefix, uri)
        return root, root + "manifest.json"

    # -- manifest ----------------------------------------------------------------------------

    def _read_manifest(self, uri: str, key: str) -> tuple[dict[str, Any] | None, bytes, str | None]:
        got = self.store.get(key)
        if got is None:
            return None, b"", None
        raw, etag = got
        manifest = parse_manifest(raw, uri)
        if manifest is None:
            raise PermanentDeliveryError(
                f"{key} is not the manifest of {uri!r}: refusing to overwrite it",
                code="ManifestMismatch",
                alert=True,
            )
        return manifest, raw, etag

    def _update_manifest(
        self, uri: str, key: str, change: Callable[[dict[str, Any]], None], first: _Read | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Read, apply ``change``, write back if the bytes differ (conditionally). Returns the
        manifest and whether it was written.

        ``first``: the manifest as this command read it at its start, used for the first try when
        the write is conditional (a concurrent writer makes it fail, and then it is read again).
        """
        root = key[: -len("manifest.json")]
        for _ in range(5):
            if first is not None and self.store.conditional:
                manifest, raw, etag = first
            else:
                manifest, raw, etag = self._read_manifest(uri, key)
            first = None
            current = manifest if manifest is not None else new_manifest(uri, article_hash(uri), root)
            change(current)
            current["status"] = status_of(current)
            body = manifest_bytes(current)
            if body == raw:
                return current, False
            try:
                self.store.put(
                    key,
                    blob("manifest.json", body, "application/json; charset=utf-8"),
                    create=etag is None,
                    if_match=etag,
                )
            except Race:
                continue
            return current, True
        raise TransientDeliveryError(
            f"{key} kept changing under concurrent writers", self.config.retry_after_s
        )

    # -- publish / update --------------------------------------------------------------------

    def _render(self, command: Command, files: ExitStack) -> tuple[list[Blob], str, str]:
        """The objects of one version. The audio is opened (held by ``files``, which closes it)
        and streamed, never read whole: it is hashed and measured in chunks here and uploaded
        from the file (see ``S3ObjectStore.put``)."""
        payload = command.payload
        doc = payload.get("document") if isinstance(payload, dict) else None
        if not isinstance(doc, dict):
            raise InvalidContent("archive command without a ninjs document in payload.document")
        uri, version = command.key.uri, command.key.version
        doc_uri = doc.get("uri")
        if not isinstance(doc_uri, str) or unicodedata.normalize(
            "NFC", doc_uri.strip()
        ) != unicodedata.normalize("NFC", uri.strip()):
            raise InvalidContent(
                f"document uri {str(doc_uri)[:200]!r} is not the command's uri {uri[:200]!r}"
            )
        if str(doc.get("version")) != str(version):
            raise InvalidContent(
                f"document version {str(doc.get('version'))[:20]!r} is not the command's version {version}"
            )
        url = valid_public_url(payload.get("public_url"))
        ninjs_version = payload.get("ninjs_version")
        document = blob(
            "document.json", canonical_json(doc), "application/json; charset=utf-8", immutable=True
        )
        view = article_view(doc)
        blobs = [
            document,
            blob(
                "index.html",
                render_index(view, url, uri, version, document.sha256),
                "text/html; charset=utf-8",
            ),
            blob("bulletin.html", render_bulletin(view, url, version), "text/html; charset=utf-8"),
            blob("qr.png", render_qr(url), "image/png"),
        ]
        cap_xml = payload.get("cap_xml")
        if isinstance(cap_xml, str) and uri.startswith(ALERT_URI_PREFIX):
            raw_xml = cap_xml.encode("utf-8", "surrogatepass")
            if len(raw_xml) > MAX_CAP_BYTES:
                raise InvalidContent(
                    f"cap_xml of {len(raw_xml)} bytes (a CAP alert has {MAX_CAP_BYTES} at most)"
                )
            blobs.append(blob("cap.xml", raw_xml, "application/cap+xml; charset=utf-8", immutable=True))
        if self.config.audio_lookup is not None:
            path = self.config.audio_lookup(uri, version)
            if path is not None:
                try:
                    audio = file_blob("audio.wav", files.enter_context(path.open("rb")), "audio/wav")
                except OSError as exc:
                    raise TransientDeliveryError(
                        f"audio {path} unreadable: {exc.strerror}", self.config.retry_after_s
                    ) from exc
                blobs.append(audio)
        return blobs, url, str(ninjs_version) if isinstance(ninjs_version, str) else ""

    def _write_object(self, key: str, item: Blob, *, known: bool) -> tuple[dict[str, Any], bool] | None:
        """Make ``key`` hold ``item``. Returns (manifest record, written) or None when a takedown
        marker holds the key (never overwritten by a publish).

        ``known``: the manifest records this object, so it most likely exists: HEAD first and
        upload nothing when it matches. Otherwise try the conditional create at once; the store
        refuses it when the key exists, and the refusal brings the key's HEAD.
        """
        head = None
        looked = False
        if not known and self.store.conditional:
            try:
                return self._record(key, item, self.store.put(key, item, create=True)), True
            except Race as race:
                head, looked = race.head, race.head is not None
        for _ in range(3):
            if not looked:
                head = self.store.head(key)
            looked = False
            try:
                if head is None:
                    version_id = self.store.put(key, item, create=True)
                    written = True
                elif head.takedown:
                    return None
                elif head.sha256 == item.sha256 and head.size == item.size:
                    version_id, written = head.version_id or "", False
                elif item.immutable:
                    raise PermanentDeliveryError(
                        f"{key} already holds other content (sha256 {head.sha256}) for this version: "
                        "a new revision needs a new version number",
                        code="VersionConflict",
                        alert=True,
                    )
                else:  # a derived object rendered differently (new template, new audio): replace it
                    version_id = self.store.put(key, item, if_match=head.etag)
                    written = True
            except Race as race:
                head, looked = race.head, race.head is not None
                continue
            return self._record(key, item, version_id), written
        raise TransientDeliveryError(
            f"{key} kept changing under concurrent writers", self.config.retry_after_s
        )

    @staticmethod
    def _record(key: str, item: Blob, version_id: str) -> dict[str, Any]:
        return {
            "name": item.name,
            "key": key,
            "size": item.size,
            "sha256": item.sha256,
            "content_type": item.content_type,
            "version_id": version_id,
        }

    def _publish_sync(self, command: Command) -> Effect:
        with ExitStack() as files:
            return self._publish_files(command, files)

    def _publish_files(self, command: Command, files: ExitStack) -> Effect:
        uri, version = command.key.uri, command.key.version
        blobs, url, ninjs_version = self._render(command, files)
        root, manifest_key = self._keys(uri)
        vprefix = f"{root}v{version}/"
        read = self._read_manifest(uri, manifest_key)
        covering = takedown_covering(read[0], version)
        if covering is not None:
            return Effect(
                Outcome.SKIPPED,
                manifest_key,
                {"reason": f"taken down by retraction version {covering['version']}", "prefix": vprefix},
            )
        known = recorded_names(read[0], version)
        records: list[dict[str, Any]] = []
        written: dict[str, bool] = {}
        for item in blobs:
            result = self._write_object(vprefix + item.name, item, known=item.name in known)
            if result is None:
                return Effect(
                    Outcome.SKIPPED,
                    manifest_key,
                    {"reason": f"a takedown marker holds {vprefix + item.name}", "prefix": vprefix},
                )
            records.append(result[0])
            written[item.name] = result[1]
        alert = command.payload.get("alert")
        if uri.startswith(ALERT_URI_PREFIX) and isinstance(alert, dict) and not command.test:
            # Before the manifest (the record that this command is done): a crash in between
            # replays the command, and listing an alert again changes nothing.
            try:
                self.feed.add(
                    alert,
                    uri,
                    version,
                    vprefix[len(self.config.prefix) :],
                    any(b.name == "cap.xml" for b in blobs),
                )
            except InvalidContent as exc:
                log.warning("archive: %s archived but not listed in the feed: %s", uri[:200], exc.reason)
        now = _iso(self._clock())
        entry = {
            "version": version,
            "command_id": command.key.command_id(),
            "action": command.key.action.value,
            "issued_at": command.issued_at,
            "published_at": command.published_at,
            "archived_at": now,
            "public_url": url,
            "ninjs_version": ninjs_version,
            "prefix": vprefix,
            "objects": sorted(records, key=lambda r: str(r["name"])),
        }
        _, manifest_written = self._update_manifest(
            uri, manifest_key, lambda m: merge_version(m, entry, now), first=read
        )
        detail = {
            "prefix": vprefix,
            "manifest": manifest_key,
            "manifest_written": manifest_written,
            "objects": {
                r["name"]: {
                    "key": r["key"],
                    "sha256": r["sha256"],
                    "size": r["size"],
                    "version_id": r["version_id"],
                    "written": written[r["name"]],
                }
                for r in records
            },
        }
        outcome = Outcome.UPDATED if command.key.action is Action.UPDATE else Outcome.DELIVERED
        return Effect(outcome, manifest_key, detail)

    # -- retract -----------------------------------------------------------------------------

    def _retract_sync(self, command: Command) -> Effect:
        uri, version = command.key.uri, command.key.version
        root, manifest_key = self._keys(uri)
        raw_reason = command.payload.get("reason") if isinstance(command.payload, dict) else None
        reason = (
            clean_text(squash(raw_reason))[:2000]
            if isinstance(raw_reason, str) and raw_reason.strip()
            else DEFAULT_REASON
        )
        command_id = command.key.command_id()
        now = _iso(self._clock())
        read = self._read_manifest(uri, manifest_key)  # refuses a foreign manifest before touching objects
        records: list[dict[str, Any]] = []
        already = 0
        # Every object under the article's prefix, not only those in the manifest: a crash
        # between an object and the manifest must not leave content public.
        alert = uri.startswith(ALERT_URI_PREFIX)
        for key in self.store.list_keys(root):
            if key == manifest_key or (alert and key.rsplit("/", 1)[-1] in ALERT_RECORD):
                continue
            for _ in range(3):
                head = self.store.head(key)
                if head is None:
                    break
                if head.takedown:
                    already += 1
                    break
                if self.config.legal_hold and head.version_id:
                    self.store.legal_hold(
                        key, head.version_id
                    )  # before the marker: a crash in between is redone
                body, ctype = render_takedown(
                    key.rsplit("/", 1)[-1],
                    uri=uri,
                    version=version,
                    reason=reason,
                    requested_at=command.issued_at,
                    at=now,
                    command_id=command_id,
                    title=CANCELLED_TITLE if alert else None,
                )
                marker = blob(key.rsplit("/", 1)[-1], body, ctype)
                try:
                    marker_version = self.store.put(
                        key, marker, if_match=head.etag, extra_meta={"takedown": command_id}
                    )
                except Race:
                    continue
                records.append(
                    {
                        "key": key,
                        "content_version_id": head.version_id or "",
                        "content_sha256": head.sha256 or "",
                        "marker_sha256": marker.sha256,
                        "marker_version_id": marker_version,
                        "legal_hold": bool(self.config.legal_hold and head.version_id),
                    }
                )
                break
            else:
                raise TransientDeliveryError(
                    f"{key} kept changing under concurrent writers", self.config.retry_after_s
                )
        if alert:
            self.feed.remove(uri, version)  # before the manifest: a replay removes it again
        takedown = {
            "command_id": command_id,
            "version": version,
            "reason": reason,
            "requested_at": command.issued_at,
            "taken_down_at": now,
            "legal_hold": self.config.legal_hold,
            "objects": records,
        }
        _, manifest_written = self._update_manifest(
            uri, manifest_key, lambda m: merge_takedown(m, takedown), first=read
        )
        return Effect(
            Outcome.DELETED,
            manifest_key,
            {
                "markers_written": len(records),
                "already_taken_down": already,
                "manifest": manifest_key,
                "manifest_written": manifest_written,
                "legal_hold": self.config.legal_hold,
                "reason": reason,
            },
        )

    # -- reconcile ---------------------------------------------------------------------------

    def _reconcile_sync(self, command: Command) -> Effect | None:
        uri, version = command.key.uri, command.key.version
        root, manifest_key = self._keys(uri)
        manifest, _, _ = self._read_manifest(uri, manifest_key)
        if manifest is None:
            return None
        if command.key.action is Action.RETRACT:
            command_id = command.key.command_id()
            if not any(t.get("command_id") == command_id for t in manifest.get("takedowns", [])):
                return None
            for key in self.store.list_keys(root):
                head = self.store.head(key) if key != manifest_key else None
                if key != manifest_key and (head is None or not head.takedown):
                    return None
            return Effect(Outcome.DELETED, manifest_key, {"manifest": manifest_key, "reconciled": True})
        covering = takedown_covering(manifest, version)
        if covering is not None:
            return Effect(
                Outcome.SKIPPED,
                manifest_key,
                {"reason": f"taken down by retraction version {covering['version']}"},
            )
        entry = next((v for v in manifest.get("versions", []) if v.get("version") == version), None)
        if entry is None:
            return None
        objects: dict[str, Any] = {}
        for record in entry.get("objects", []):
            head = self.store.head(str(record["key"]))
            if head is None or (head.sha256 != record.get("sha256") and not head.takedown):
                return None
            objects[str(record["name"])] = {k: record[k] for k in ("key", "sha256", "size", "version_id")}
        outcome = Outcome.UPDATED if command.key.action is Action.UPDATE else Outcome.DELIVERED
        return Effect(
            outcome,
            manifest_key,
            {"prefix": entry.get("prefix"), "manifest": manifest_key, "objects": objects, "reconciled": True},
        )
