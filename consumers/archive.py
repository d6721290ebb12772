"""Archive channel adapter: every article version as S3 objects, and takedowns that keep history.

Layout in the bucket (``<h>`` = SHA-256 of the article uri in hex, so no byte of the uri ever
reaches a key, and no uri can leave its own prefix)::

    <prefix>articles/<h>/manifest.json        uri, versions, objects (size, SHA-256, VersionId), takedowns
    <prefix>articles/<h>/v<N>/document.json   the ninjs document, canonical JSON (sorted keys)
    <prefix>articles/<h>/v<N>/index.html      a Vietnamese reading page: plain text only, escaped, CSP
    <prefix>articles/<h>/v<N>/bulletin.html   a printable internal bulletin with the QR code
    <prefix>articles/<h>/v<N>/qr.png          QR code (error level M) of the public URL
    <prefix>articles/<h>/v<N>/audio.wav       the loudspeaker audio, when it has been rendered

Idempotence: each object carries its SHA-256 (``x-amz-meta-sha256`` and the verified
``x-amz-checksum-sha256``). A write first HEADs the key and skips it when the checksum matches;
new keys are written with ``If-None-Match: *`` and replacements with ``If-Match: <etag>``, so a
replayed command creates no object version. The manifest is written last (read-modify-write,
conditional on its ETag) and converges: replaying yields the same bytes, and the PUT is skipped.

Retraction writes a takedown marker over every public object of the article (its older
versions stay in the bucket's version history, optionally under legal hold) and records the
takedown in the manifest. A publish of a version at or below a takedown is skipped, so a replay
of old commands never brings a retracted article back.

Errors (see consumers/errors.py): unreachable store, 5xx, throttling → TransientDeliveryError;
refused credentials, missing bucket → TargetPaused(alert=True) (a configuration problem: the
commands wait while ops fix it instead of being dead-lettered); a command without a usable
document or public URL → InvalidContent; different content for an archived version →
PermanentDeliveryError(code="VersionConflict", alert=True). Writes are verified, so a timeout
after a request left is retried as transient: the next attempt finds what was written.

The pages, QR code and takedown markers are rendered in consumers/archive_render.py; the manifest
merges are in consumers/archive_manifest.py (both pure).
"""

from __future__ import annotations

import asyncio
import base64
import configparser
import hashlib
import re
import stat
import unicodedata
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar, Final

import orjson
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from consumers.archive_manifest import (
    MANIFEST_SCHEMA,
    manifest_bytes,
    merge_takedown,
    merge_version,
    status_of,
    takedown_covering,
)
from consumers.archive_render import (
    article_view,
    canonical_json,
    clean_text,
    render_bulletin,
    render_index,
    render_qr,
    render_takedown,
    valid_public_url,
)
from consumers.base import Effect, Prior
from consumers.errors import InvalidContent, PermanentDeliveryError, TargetPaused, TransientDeliveryError
from schemas.article import squash
from schemas.models import Action, Command
from schemas.topics import Channel

__all__ = ["ArchiveAdapter", "ArchiveConfig", "ArchiveConfigError", "S3Credentials", "article_hash", "article_prefix"]

DEFAULT_REASON: Final = "retracted by the newsroom"

_PREFIX_RE = re.compile(r"^(?:[a-z0-9][a-z0-9._-]{0,62}/){0,8}$")

_AUTH_CODES = frozenset({
    "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AccountProblem", "AllAccessDisabled", "InvalidSecurity",
    "RequestTimeTooSkewed", "NoSuchBucket", "403", "401",
})
_THROTTLE_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestLimitExceeded", "TooManyRequests",
    "TooManyRequestsException", "RequestThrottled", "BandwidthLimitExceeded", "429",
})
_TRANSIENT_CODES = frozenset({
    "InternalError", "ServiceUnavailable", "RequestTimeout", "OperationAborted", "PriorRequestNotComplete",
    "503", "500", "502", "504", "408",
})
_NOT_FOUND = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_PRECONDITION = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})

AudioLookup = Callable[[str, int], Path | None]


class ArchiveConfigError(Exception):
    """The archive cannot run with this configuration (bucket, object lock, credentials file).

    Raised by ``start()``: the worker stops with this message instead of consuming.
    """


@dataclass(frozen=True, slots=True)
class S3Credentials:
    """Explicit keys (e.g. read from a 0600 file). The secret never appears in a repr."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class ArchiveConfig:
    """Where and how to archive. Credentials come from exactly one source: ``credentials``,
    ``credentials_file`` (AWS shared-credentials format, must be mode 0600; ``profile`` picks the
    section), ``profile`` alone (the standard AWS config files), or none of them: the standard AWS
    chain (environment, ~/.aws, SSO, container or instance role).
    """

    bucket: str
    endpoint_url: str | None = None  # None: AWS S3 of ``region``
    region: str = "us-east-1"
    credentials: S3Credentials | None = None
    credentials_file: Path | None = None
    profile: str | None = None
    prefix: str = ""  # "" or lower-case segments ending in "/", e.g. "lantoa/"
    legal_hold: bool = False  # legal hold on the retracted content versions (needs object lock)
    audio_lookup: AudioLookup | None = None  # (uri, version) -> the loudspeaker WAV, if rendered
    create_bucket: bool = True  # create the bucket and enable versioning at start if missing
    addressing_style: str = "auto"  # "path" for most non-AWS services
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 3  # botocore's own retries of one call, before the runtime's
    retry_after_s: float = 5.0  # hint on transient failures
    auth_pause_s: float = 300.0  # how long a target waits after refused credentials

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ArchiveConfigError("an archive bucket is required (LANTOA_S3_BUCKET)")
        if not _PREFIX_RE.match(self.prefix):
            raise ArchiveConfigError(f"prefix must be empty or lower-case segments ending in '/': {self.prefix!r}")
        if self.credentials is not None and (self.credentials_file is not None or self.profile is not None):
            raise ArchiveConfigError("give explicit credentials or a credentials file/profile, not both")
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise ArchiveConfigError(f"addressing_style must be auto, path or virtual: {self.addressing_style!r}")

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, audio_lookup: AudioLookup | None = None) -> ArchiveConfig:
        """Read ``LANTOA_S3_*`` from ``env`` (pass ``os.environ`` at bootstrap; nothing is read here)."""

        def flag(name: str, default: bool) -> bool:
            raw = env.get(name)
            return default if raw is None or raw == "" else raw.strip().lower() in ("1", "true", "yes", "on")

        creds_file = env.get("LANTOA_S3_CREDENTIALS_FILE")
        return cls(
            bucket=env.get("LANTOA_S3_BUCKET", ""),
            endpoint_url=env.get("LANTOA_S3_ENDPOINT") or None,
            region=env.get("LANTOA_S3_REGION") or "us-east-1",
            credentials_file=Path(creds_file) if creds_file else None,
            profile=env.get("LANTOA_S3_PROFILE") or None,
            prefix=env.get("LANTOA_S3_PREFIX", ""),
            legal_hold=flag("LANTOA_S3_LEGAL_HOLD", False),
            create_bucket=flag("LANTOA_S3_CREATE_BUCKET", True),
            addressing_style=env.get("LANTOA_S3_ADDRESSING_STYLE") or "auto",
            audio_lookup=audio_lookup,
        )


def load_credentials_file(path: Path, profile: str | None = None) -> S3Credentials:
    """Keys from an AWS shared-credentials file that only its owner can read."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ArchiveConfigError(f"cannot read the S3 credentials file {path}: {exc.strerror}") from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ArchiveConfigError(f"the S3 credentials file {path} is open to other users "
                                 f"(mode {stat.S_IMODE(info.st_mode):o}); chmod 600 it")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
        section = parser[profile or "default"]
        return S3Credentials(section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip(),
                             (section.get("aws_session_token") or "").strip() or None)
    except (KeyError, configparser.Error):
        # The parser's message could quote a secret: say only what is missing.
        raise ArchiveConfigError(f"{path} has no [{profile or 'default'}] section with "
                                 "aws_access_key_id and aws_secret_access_key") from None


def article_hash(uri: str) -> str:
    """SHA-256 of the uri's UTF-8 bytes, in hex: the only part of a key derived from the uri."""
    return hashlib.sha256(uri.encode("utf-8", "surrogatepass")).hexdigest()


def article_prefix(prefix: str, uri: str) -> str:
    return f"{prefix}articles/{article_hash(uri)}/"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Stored objects (rendering is in consumers/archive_render.py)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Blob:
    name: str
    body: bytes
    content_type: str
    immutable: bool  # the canonical record: never replaced by different bytes
    sha256: str


def _blob(name: str, body: bytes, content_type: str, immutable: bool = False) -> _Blob:
    return _Blob(name, body, content_type, immutable, _sha256(body))


# --------------------------------------------------------------------------------------------
# Error mapping
# --------------------------------------------------------------------------------------------


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _retry_after_header(exc: ClientError) -> float | None:
    raw = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


class _ErrorMap:
    def __init__(self, config: ArchiveConfig) -> None:
        self.config = config

    def __call__(self, exc: Exception, what: str) -> Exception:
        """The consumers.errors exception for a botocore failure during ``what``."""
        cfg = self.config
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return TransientDeliveryError(f"S3 unreachable during {what}: {type(exc).__name__}",
                                          cfg.retry_after_s, code=type(exc).__name__)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            return TargetPaused(f"no usable S3 credentials during {what}: {type(exc).__name__}",
                                cfg.auth_pause_s, code="NoCredentials", alert=True)
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            reason = f"S3 {code or status} during {what}: {message}"
            if code in _AUTH_CODES or status in (401, 403):
                return TargetPaused(reason, cfg.auth_pause_s, code=code or str(status), alert=True)
            if code in _THROTTLE_CODES or status == 429:
                return TransientDeliveryError(reason, _retry_after_header(exc) or 2 * cfg.retry_after_s,
                                              code=code or str(status))
            if code in _TRANSIENT_CODES or status >= 500 or status == 408:
                return TransientDeliveryError(reason, _retry_after_header(exc) or cfg.retry_after_s,
                                              code=code or str(status))
            return PermanentDeliveryError(reason, code=code or str(status), alert=True)
        # Anything else (bad parameters, a botocore bug) is ours to fix: the worker stops.
        return RuntimeError(f"unexpected S3 client failure during {what}: {exc!r}")


# --------------------------------------------------------------------------------------------
# The adapter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Head:
    etag: str
    sha256: str | None
    version_id: str | None
    size: int
    takedown: str | None


class _Race(Exception):
    """A conditional write lost to another writer: read again and redo the merge."""


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class ArchiveAdapter:
    """The archive channel (see the module docstring for the layout and the guarantees).

    ``client`` is a boto3 S3 client to use instead of building one from the config (tests).
    ``clock`` gives the times written into manifests and markers.
    """

    channel: ClassVar[Channel] = Channel.ARCHIVE

    def __init__(self, config: ArchiveConfig, client: Any | None = None, *,
                 clock: Callable[[], datetime] = _utc_now) -> None:
        self.config = config
        self._client: Any | None = client
        self._clock = clock
        self._map = _ErrorMap(config)
        self._conditional = True  # cleared if the store answers NotImplemented to If-*-Match
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Build the client, make sure the bucket exists with versioning (and object lock when
        legal hold is configured). Raises ArchiveConfigError, or the delivery errors when the
        store is unreachable or refuses the credentials."""
        await asyncio.to_thread(self._start_sync)

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await asyncio.to_thread(client.close)

    def _build_client(self) -> Any:
        import boto3
        from botocore.config import Config

        cfg = self.config
        creds = cfg.credentials
        if cfg.credentials_file is not None:
            creds = load_credentials_file(cfg.credentials_file, cfg.profile)
        session = boto3.session.Session(
            aws_access_key_id=creds.access_key_id if creds else None,
            aws_secret_access_key=creds.secret_access_key if creds else None,
            aws_session_token=creds.session_token if creds else None,
            profile_name=cfg.profile if creds is None else None,
            region_name=cfg.region,
        )
        return session.client(
            "s3",
            endpoint_url=cfg.endpoint_url,
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": cfg.addressing_style},
                connect_timeout=cfg.connect_timeout,
                read_timeout=cfg.read_timeout,
                retries={"mode": "standard", "total_max_attempts": max(1, cfg.max_attempts)},
                user_agent_extra="lantoa-archive",
            ),
        )

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("ArchiveAdapter.start() has not been called")
        return self._client

    def _start_sync(self) -> None:
        if self._client is None:
            self._client = self._build_client()
        cfg, s3 = self.config, self._client
        try:
            # A GET rather than HEAD: its error body names the reason (SignatureDoesNotMatch...).
            try:
                versioning = s3.get_bucket_versioning(Bucket=cfg.bucket).get("Status")
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchBucket", "NotFound"):
                    raise
                versioning = None
                if not cfg.create_bucket:
                    raise ArchiveConfigError(f"bucket {cfg.bucket!r} does not exist (create_bucket is off)") from None
                kwargs: dict[str, Any] = {"Bucket": cfg.bucket}
                if cfg.legal_hold:
                    kwargs["ObjectLockEnabledForBucket"] = True
                if cfg.region != "us-east-1":
                    kwargs["CreateBucketConfiguration"] = {"LocationConstraint": cfg.region}
                try:
                    s3.create_bucket(**kwargs)
                except ClientError as exc2:
                    if _code(exc2) != "BucketAlreadyOwnedByYou":
                        raise
            if versioning != "Enabled":
                if not cfg.create_bucket:
                    raise ArchiveConfigError(f"bucket {cfg.bucket!r} has versioning off: takedowns would lose history")
                s3.put_bucket_versioning(Bucket=cfg.bucket, VersioningConfiguration={"Status": "Enabled"})
            if cfg.legal_hold:
                try:
                    lock = s3.get_object_lock_configuration(Bucket=cfg.bucket)
                    enabled = lock.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
                except ClientError as exc:
                    if _code(exc) != "ObjectLockConfigurationNotFoundError":
                        raise
                    enabled = False
                if not enabled:
                    raise ArchiveConfigError(
                        f"legal_hold is on but bucket {cfg.bucket!r} has no object lock "
                        "(it can only be enabled when a bucket is created on most services)")
        except (BotoCoreError, ClientError) as exc:
            raise self._map(exc, f"start of bucket {cfg.bucket!r}") from exc

    # -- the protocol ------------------------------------------------------------------------

    def _lock(self, uri: str) -> asyncio.Lock:
        lock = self._locks.get(uri)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[uri] = lock
        return lock

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        """Archive one article version, or take the article down. Safe to replay."""
        self._check(command)
        async with self._lock(command.key.uri):  # one manifest writer per article in this process
            if command.key.action is Action.RETRACT:
                return await asyncio.to_thread(self._retract_sync, command)
            return await asyncio.to_thread(self._publish_sync, command)

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        """The Effect when the manifest and the objects show the command's effect, else None."""
        self._check(command)
        async with self._lock(command.key.uri):
            return await asyncio.to_thread(self._reconcile_sync, command)

    def _check(self, command: Command) -> None:
        if command.channel is not Channel.ARCHIVE:
            raise InvalidContent(f"not an archive command: channel {command.channel.value}")
        if not command.key.uri:
            raise InvalidContent("the command has no article uri")

    # -- S3 primitives (sync, in a worker thread) -------------------------------------------

    def _keys(self, uri: str) -> tuple[str, str]:
        root = article_prefix(self.config.prefix, uri)
        return root, root + "manifest.json"

    def _head(self, key: str) -> _Head | None:
        try:
            r = self.client.head_object(Bucket=self.config.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise self._map(exc, f"HEAD {key}") from exc
        except BotoCoreError as exc:
            raise self._map(exc, f"HEAD {key}") from exc
        meta = {str(k).lower(): str(v) for k, v in (r.get("Metadata") or {}).items()}
        sha = meta.get("sha256")
        if sha is None and r.get("ChecksumSHA256") and "-" not in str(r["ChecksumSHA256"]):
            sha = base64.b64decode(r["ChecksumSHA256"]).hex()
        return _Head(str(r.get("ETag", "")), sha, r.get("VersionId"), int(r.get("ContentLength", 0)),
                     meta.get("takedown"))

    def _get(self, key: str) -> tuple[bytes, str] | None:
        try:
            r = self.client.get_object(Bucket=self.config.bucket, Key=key)
            return r["Body"].read(), str(r.get("ETag", ""))
        except ClientError as exc:
            if _code(exc) in _NOT_FOUND:
                return None
            raise self._map(exc, f"GET {key}") from exc
        except BotoCoreError as exc:
            raise self._map(exc, f"GET {key}") from exc
        except OSError as exc:  # the body stream broke off
            raise TransientDeliveryError(f"S3 GET {key} broke off: {exc}", self.config.retry_after_s) from exc

    def _put(self, key: str, blob: _Blob, *, if_match: str | None = None, create: bool = False,
             extra_meta: Mapping[str, str] | None = None, verify: bool = False) -> str:
        """PUT ``blob`` at ``key`` and verify it; the new VersionId (or "" without versioning).

        ``create``: only if the key is absent; ``if_match``: only if it still has that ETag.
        Raises _Race when the condition failed.
        """
        kwargs: dict[str, Any] = {
            "Bucket": self.config.bucket, "Key": key, "Body": blob.body, "ContentType": blob.content_type,
            "CacheControl": "no-cache",  # a takedown replaces objects in place: caches must revalidate
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(blob.sha256)).decode(),
            "Metadata": {"sha256": blob.sha256, **(extra_meta or {})},
        }
        if self._conditional and create:
            kwargs["IfNoneMatch"] = "*"
        elif self._conditional and if_match:
            kwargs["IfMatch"] = if_match
        try:
            r = self.client.put_object(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code in _PRECONDITION:
                if create and self._head(key) is None:
                    # versitygw (1.7) counts a delete marker as an existing object for
                    # If-None-Match; the key is free, so write it and verify instead.
                    return self._put(key, blob, extra_meta=extra_meta, verify=True)
                raise _Race(key) from exc
            if code == "NotImplemented" and ("IfNoneMatch" in kwargs or "IfMatch" in kwargs):
                self._conditional = False  # fall back to verify-after-write
                return self._put(key, blob, extra_meta=extra_meta, verify=True)
            raise self._map(exc, f"PUT {key}") from exc
        except BotoCoreError as exc:
            raise self._map(exc, f"PUT {key}") from exc
        returned = r.get("ChecksumSHA256")
        if returned is not None and returned != kwargs["ChecksumSHA256"]:
            raise TransientDeliveryError(f"S3 stored {key} with another checksum", self.config.retry_after_s)
        version_id = str(r.get("VersionId") or "")
        if returned is None or verify:  # unchecked or unconditional: read back what the store holds
            head = self._head(key)
            if head is None or head.sha256 != blob.sha256 or head.size != len(blob.body) or (
                    version_id and head.version_id != version_id):
                raise TransientDeliveryError(f"S3 did not keep {key} as written", self.config.retry_after_s)
        return version_id

    def _list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.config.bucket,
                                                                              Prefix=prefix):
                keys += [str(o["Key"]) for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._map(exc, f"LIST {prefix}") from exc
        return sorted(keys)

    def _legal_hold(self, key: str, version_id: str) -> None:
        try:
            self.client.put_object_legal_hold(Bucket=self.config.bucket, Key=key, VersionId=version_id,
                                              LegalHold={"Status": "ON"})
        except (BotoCoreError, ClientError) as exc:
            raise self._map(exc, f"legal hold on {key}") from exc

    # -- manifest ----------------------------------------------------------------------------

    def _read_manifest(self, uri: str, key: str) -> tuple[dict[str, Any] | None, bytes, str | None]:
        got = self._get(key)
        if got is None:
            return None, b"", None
        raw, etag = got
        try:
            manifest = orjson.loads(raw)
        except orjson.JSONDecodeError:
            manifest = None
        if not isinstance(manifest, dict) or manifest.get("uri") != uri:
            raise PermanentDeliveryError(f"{key} is not the manifest of {uri!r}: refusing to overwrite it",
                                         code="ManifestMismatch", alert=True)
        return manifest, raw, etag

    def _new_manifest(self, uri: str, root: str) -> dict[str, Any]:
        return {"schema": MANIFEST_SCHEMA, "uri": uri, "article_hash": article_hash(uri), "prefix": root,
                "status": "public", "versions": [], "takedowns": []}

    def _update_manifest(self, uri: str, key: str, change: Callable[[dict[str, Any]], None]) -> tuple[dict[str, Any], bool]:
        """Read, apply ``change``, write back if the bytes differ (conditionally). Returns the
        manifest and whether it was written."""
        root = key[: -len("manifest.json")]
        for _ in range(5):
            manifest, raw, etag = self._read_manifest(uri, key)
            current = manifest if manifest is not None else self._new_manifest(uri, root)
            change(current)
            current["status"] = status_of(current)
            body = manifest_bytes(current)
            if body == raw:
                return current, False
            try:
                self._put(key, _blob("manifest.json", body, "application/json; charset=utf-8"),
                          create=etag is None, if_match=etag)
            except _Race:
                continue
            return current, True
        raise TransientDeliveryError(f"{key} kept changing under concurrent writers", self.config.retry_after_s)

    # -- publish / update --------------------------------------------------------------------

    def _render(self, command: Command) -> tuple[list[_Blob], str, str]:
        payload = command.payload
        doc = payload.get("document") if isinstance(payload, dict) else None
        if not isinstance(doc, dict):
            raise InvalidContent("archive command without a ninjs document in payload.document")
        uri, version = command.key.uri, command.key.version
        doc_uri = doc.get("uri")
        if not isinstance(doc_uri, str) or unicodedata.normalize("NFC", doc_uri.strip()) != \
                unicodedata.normalize("NFC", uri.strip()):
            raise InvalidContent(f"document uri {str(doc_uri)[:200]!r} is not the command's uri {uri[:200]!r}")
        if str(doc.get("version")) != str(version):
            raise InvalidContent(f"document version {str(doc.get('version'))[:20]!r} is not the command's "
                                 f"version {version}")
        url = valid_public_url(payload.get("public_url"))
        ninjs_version = payload.get("ninjs_version")
        document = _blob("document.json", canonical_json(doc), "application/json; charset=utf-8", immutable=True)
        view = article_view(doc)
        blobs = [
            document,
            _blob("index.html", render_index(view, url, uri, version, document.sha256), "text/html; charset=utf-8"),
            _blob("bulletin.html", render_bulletin(view, url, version), "text/html; charset=utf-8"),
            _blob("qr.png", render_qr(url), "image/png"),
        ]
        if self.config.audio_lookup is not None:
            path = self.config.audio_lookup(uri, version)
            if path is not None:
                try:
                    audio = path.read_bytes()
                except OSError as exc:
                    raise TransientDeliveryError(f"audio {path} unreadable: {exc.strerror}",
                                                 self.config.retry_after_s) from exc
                blobs.append(_blob("audio.wav", audio, "audio/wav"))
        return blobs, url, str(ninjs_version) if isinstance(ninjs_version, str) else ""

    def _write_object(self, key: str, blob: _Blob) -> tuple[dict[str, Any], bool] | None:
        """Make ``key`` hold ``blob``. Returns (manifest record, written) or None when a takedown
        marker holds the key (never overwritten by a publish)."""
        for _ in range(3):
            head = self._head(key)
            try:
                if head is None:
                    version_id = self._put(key, blob, create=True)
                    written = True
                elif head.takedown:
                    return None
                elif head.sha256 == blob.sha256 and head.size == len(blob.body):
                    version_id, written = head.version_id or "", False
                elif blob.immutable:
                    raise PermanentDeliveryError(
                        f"{key} already holds other content (sha256 {head.sha256}) for this version: "
                        "a new revision needs a new version number", code="VersionConflict", alert=True)
                else:  # a derived object rendered differently (new template, new audio): replace it
                    version_id = self._put(key, blob, if_match=head.etag)
                    written = True
            except _Race:
                continue
            record = {"name": blob.name, "key": key, "size": len(blob.body), "sha256": blob.sha256,
                      "content_type": blob.content_type, "version_id": version_id}
            return record, written
        raise TransientDeliveryError(f"{key} kept changing under concurrent writers", self.config.retry_after_s)

    def _publish_sync(self, command: Command) -> Effect:
        uri, version = command.key.uri, command.key.version
        blobs, url, ninjs_version = self._render(command)
        root, manifest_key = self._keys(uri)
        vprefix = f"{root}v{version}/"
        manifest, _, _ = self._read_manifest(uri, manifest_key)
        covering = takedown_covering(manifest, version)
        if covering is not None:
            return Effect("skipped", manifest_key, {"reason": f"taken down by retraction version {covering['version']}",
                                                    "prefix": vprefix})
        records: list[dict[str, Any]] = []
        written: dict[str, bool] = {}
        for blob in blobs:
            result = self._write_object(vprefix + blob.name, blob)
            if result is None:
                return Effect("skipped", manifest_key, {"reason": f"a takedown marker holds {vprefix + blob.name}",
                                                        "prefix": vprefix})
            records.append(result[0])
            written[blob.name] = result[1]
        now = _iso(self._clock())
        entry = {"version": version, "command_id": command.key.command_id(), "action": command.key.action.value,
                 "issued_at": command.issued_at, "published_at": command.published_at, "archived_at": now,
                 "public_url": url, "ninjs_version": ninjs_version, "prefix": vprefix,
                 "objects": sorted(records, key=lambda r: str(r["name"]))}
        manifest, manifest_written = self._update_manifest(uri, manifest_key,
                                                           lambda m: merge_version(m, entry, now))
        detail = {
            "prefix": vprefix, "manifest": manifest_key, "manifest_written": manifest_written,
            "objects": {r["name"]: {"key": r["key"], "sha256": r["sha256"], "size": r["size"],
                                    "version_id": r["version_id"], "written": written[r["name"]]} for r in records},
        }
        outcome = "updated" if command.key.action is Action.UPDATE else "delivered"
        return Effect(outcome, manifest_key, detail)

    # -- retract -----------------------------------------------------------------------------

    def _retract_sync(self, command: Command) -> Effect:
        uri, version = command.key.uri, command.key.version
        root, manifest_key = self._keys(uri)
        raw_reason = command.payload.get("reason") if isinstance(command.payload, dict) else None
        reason = clean_text(squash(raw_reason))[:2000] if isinstance(raw_reason, str) and raw_reason.strip() else DEFAULT_REASON
        command_id = command.key.command_id()
        now = _iso(self._clock())
        self._read_manifest(uri, manifest_key)  # refuses a foreign manifest before touching objects
        records: list[dict[str, Any]] = []
        already = 0
        # Every object under the article's prefix, not only those in the manifest: a crash
        # between an object and the manifest must not leave content public.
        for key in self._list_keys(root):
            if key == manifest_key:
                continue
            for _ in range(3):
                head = self._head(key)
                if head is None:
                    break
                if head.takedown:
                    already += 1
                    break
                if self.config.legal_hold and head.version_id:
                    self._legal_hold(key, head.version_id)  # before the marker: a crash in between is redone
                body, ctype = render_takedown(key.rsplit("/", 1)[-1], uri=uri, version=version, reason=reason,
                                              requested_at=command.issued_at, at=now, command_id=command_id)
                marker = _blob(key.rsplit("/", 1)[-1], body, ctype)
                try:
                    marker_version = self._put(key, marker, if_match=head.etag,
                                               extra_meta={"takedown": command_id})
                except _Race:
                    continue
                records.append({"key": key, "content_version_id": head.version_id or "",
                                "content_sha256": head.sha256 or "", "marker_sha256": marker.sha256,
                                "marker_version_id": marker_version, "legal_hold": bool(
                                    self.config.legal_hold and head.version_id)})
                break
            else:
                raise TransientDeliveryError(f"{key} kept changing under concurrent writers", self.config.retry_after_s)
        takedown = {"command_id": command_id, "version": version, "reason": reason,
                    "requested_at": command.issued_at, "taken_down_at": now,
                    "legal_hold": self.config.legal_hold, "objects": records}
        _, manifest_written = self._update_manifest(uri, manifest_key, lambda m: merge_takedown(m, takedown))
        return Effect("deleted", manifest_key, {"markers_written": len(records), "already_taken_down": already,
                                                "manifest": manifest_key, "manifest_written": manifest_written,
                                                "legal_hold": self.config.legal_hold, "reason": reason})

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
            for key in self._list_keys(root):
                head = self._head(key) if key != manifest_key else None
                if key != manifest_key and (head is None or not head.takedown):
                    return None
            return Effect("deleted", manifest_key, {"manifest": manifest_key, "reconciled": True})
        covering = takedown_covering(manifest, version)
        if covering is not None:
            return Effect("skipped", manifest_key, {"reason": f"taken down by retraction version {covering['version']}"})
        entry = next((v for v in manifest.get("versions", []) if v.get("version") == version), None)
        if entry is None:
            return None
        objects: dict[str, Any] = {}
        for record in entry.get("objects", []):
            head = self._head(str(record["key"]))
            if head is None or (head.sha256 != record.get("sha256") and not head.takedown):
                return None
            objects[str(record["name"])] = {k: record[k] for k in ("key", "sha256", "size", "version_id")}
        outcome = "updated" if command.key.action is Action.UPDATE else "delivered"
        return Effect(outcome, manifest_key, {"prefix": entry.get("prefix"), "manifest": manifest_key,
                                              "objects": objects, "reconciled": True})
