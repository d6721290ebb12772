"""The archive's S3 object store: the boto3 client, the bucket set-up, and the few primitives the
adapter needs (HEAD, GET, verified and conditional PUT, LIST, legal hold), with botocore failures
mapped to the errors of consumers/delivery/errors.py. Synchronous: the adapter calls it in a worker thread.

Error mapping: unreachable store, 5xx, throttling → TransientDeliveryError; refused credentials,
missing bucket → TargetPaused(alert=True); any other S3 refusal → PermanentDeliveryError(alert=True);
anything else (bad parameters, a botocore bug) → RuntimeError, which stops the worker.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from consumers.archive.config import ArchiveConfig, ArchiveConfigError, load_credentials_file
from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError

__all__ = ["Blob", "ErrorMap", "Head", "Race", "S3ObjectStore", "StoreUnavailable", "blob", "file_blob"]

_AUTH_CODES: Final = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "AllAccessDisabled",
        "InvalidSecurity",
        "RequestTimeTooSkewed",
        "NoSuchBucket",
        "403",
        "401",
    }
)
_THROTTLE_CODES: Final = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
        "TooManyRequestsException",
        "RequestThrottled",
        "BandwidthLimitExceeded",
        "429",
    }
)
_TRANSIENT_CODES: Final = frozenset(
    {
        "InternalError",
        "ServiceUnavailable",
        "RequestTimeout",
        "OperationAborted",
        "PriorRequestNotComplete",
        "503",
        "500",
        "502",
        "504",
        "408",
    }
)
_NOT_FOUND: Final = frozenset({"NoSuchKey", "404", "NotFound", "NoSuchVersion"})
_PRECONDITION: Final = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict"})
# Files (the audio) are hashed and measured this much at a time: never held whole.
CHUNK_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class Blob:
    """One object to store, with the SHA-256 that makes its writes idempotent.

    ``body``: the bytes (pages, documents, markers), or an open file (the audio) that each PUT
    streams from its start; the caller closes it."""

    name: str
    body: bytes | BinaryIO
    content_type: str
    immutable: bool  # the canonical record: never replaced by different bytes
    sha256: str
    size: int


def blob(name: str, body: bytes, content_type: str, immutable: bool = False) -> Blob:
    return Blob(name, body, content_type, immutable, hashlib.sha256(body).hexdigest(), len(body))


def file_blob(name: str, file: BinaryIO, content_type: str) -> Blob:
    """A Blob streamed from ``file`` (open, binary, seekable), hashed and measured in chunks of
    ``CHUNK_BYTES`` from its start. Holding the open file (not its path) means the hash and every
    upload read the same bytes, even if the path is replaced meanwhile. Raises OSError."""
    digest, size = hashlib.sha256(), 0
    file.seek(0)
    for chunk in iter(lambda: file.read(CHUNK_BYTES), b""):
        digest.update(chunk)
        size += len(chunk)
    file.seek(0)
    return Blob(name, file, content_type, False, digest.hexdigest(), size)


@dataclass(frozen=True, slots=True)
class Head:
    """What a HEAD tells about the current version of a key."""

    etag: str
    sha256: str | None
    version_id: str | None
    size: int
    takedown: str | None  # the retraction's command id when a takedown marker holds the key


class StoreUnavailable(TransientDeliveryError):
    """The store did not answer, or answered 5xx: the store is down, not this command's fault."""


class Race(Exception):
    """A conditional write lost to another writer (or the key exists): read again and redo.

    ``head`` is what the key holds now when the store was asked already (a refused create).
    """

    def __init__(self, key: str, head: Head | None = None) -> None:
        super().__init__(key)
        self.head = head


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


class ErrorMap:
    """Maps a botocore failure to the consumers.delivery.errors exception that says what happens next."""

    def __init__(self, config: ArchiveConfig) -> None:
        self.config = config

    def __call__(self, exc: Exception, what: str) -> Exception:
        """The consumers.delivery.errors exception for a botocore failure during ``what``."""
        cfg = self.config
        if isinstance(exc, (BotoConnectionError, HTTPClientError)):
            return StoreUnavailable(
                f"S3 unreachable during {what}: {type(exc).__name__}",
                cfg.retry_after_s,
                code=type(exc).__name__,
            )
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            return TargetPaused(
                f"no usable S3 credentials during {what}: {type(exc).__name__}",
                cfg.auth_pause_s,
                code="NoCredentials",
                alert=True,
            )
        if isinstance(exc, ClientError):
            code, status = _code(exc), _status(exc)
            message = str(exc.response.get("Error", {}).get("Message", ""))[:300]
            reason = f"S3 {code or status} during {what}: {message}"
            if code in _AUTH_CODES or status in (401, 403):
                return TargetPaused(reason, cfg.auth_pause_s, code=code or str(status), alert=True)
            if code in _THROTTLE_CODES or status == 429:
                return TransientDeliveryError(
                    reason, _retry_after_header(exc) or 2 * cfg.retry_after_s, code=code or str(status)
                )
            if code in _TRANSIENT_CODES or status >= 500 or status == 408:
                return StoreUnavailable(
                    reason, _retry_after_header(exc) or cfg.retry_after_s, code=code or str(status)
                )
            return PermanentDeliveryError(reason, code=code or str(status), alert=True)
        # Anything else (bad parameters, a botocore bug) is ours to fix: the worker stops.
        return RuntimeError(f"unexpected S3 client failure during {what}: {exc!r}")


class S3ObjectStore:
    """The bucket of ``config``. ``client``: a boto3 S3 client to use instead of building one."""

    def __init__(self, config: ArchiveConfig, client: Any | None = None) -> None:
        self.config = config
        self._client: Any | None = client
        self._map = ErrorMap(config)
        # Whether conditional writes (If-None-Match / If-Match) are used: configured, and cleared
        # when the store answers NotImplemented to them (then every write is verified after).
        self.conditional = config.conditional_writes

    # -- client ------------------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            raise RuntimeError("ArchiveAdapter.start() has not been called")
        return self._client

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

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

    def ensure_bucket(self) -> None:
        """Build the client once, make sure the bucket exists with versioning (and object lock
        when legal hold is configured). Raises ArchiveConfigError, or the delivery errors when
        the store is unreachable or refuses the credentials."""
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
                    raise ArchiveConfigError(
                        f"bucket {cfg.bucket!r} does not exist (create_bucket is off)"
                    ) from None
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
                    raise ArchiveConfigError(
                        f"bucket {cfg.bucket!r} has versioning off: takedowns would lose history"
                    )
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
                        "(it can only be enabled when a bucket is created on most services)"
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._map(exc, f"start of bucket {cfg.bucket!r}") from exc

    # -- primitives --------------------------------------------------------------------------

    def head(self, key: str) -> Head | None:
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
        return Head(
            str(r.get("ETag", "")),
            sha,
            r.get("VersionId"),
            int(r.get("ContentLength", 0)),
            meta.get("takedown"),
        )

    def get(self, key: str) -> tuple[bytes, str] | None:
        """The body and ETag of ``key``, or None when it does not exist."""
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

    def put(
        self,
        key: str,
        item: Blob,
        *,
        if_match: str | None = None,
        create: bool = False,
        extra_meta: Mapping[str, str] | None = None,
        verify: bool = False,
    ) -> str:
        """PUT ``item`` at ``key`` and verify it; the new VersionId (or "" without versioning).

        ``create``: only if the key is absent; ``if_match``: only if it still has that ETag.
        Raises Race when the condition failed (for ``create``, with the key's current Head).

        A file body is streamed by botocore from its start (it reads it in chunks to sign the
        payload and to send it, and seeks back to retry): one PUT, so the conditional headers
        hold as for bytes. Objects over S3's 5 GB single-PUT limit cannot occur: the largest is
        the longest speech (consumers.loudspeaker.tts.LARGEST_WAV_BYTES, ~207 MB).
        """
        if not isinstance(item.body, bytes):
            item.body.seek(0)
        kwargs: dict[str, Any] = {
            "Bucket": self.config.bucket,
            "Key": key,
            "Body": item.body,
            "ContentType": item.content_type,
            "CacheControl": "no-cache",  # a takedown replaces objects in place: caches must revalidate
            "ChecksumSHA256": base64.b64encode(bytes.fromhex(item.sha256)).decode(),
            "Metadata": {"sha256": item.sha256, **(extra_meta or {})},
        }
        # A write that should have been conditional and cannot be is read back after.
        verify = verify or (not self.conditional and (create or if_match is not None))
        if self.conditional and create:
            kwargs["IfNoneMatch"] = "*"
        elif self.conditional and if_match:
            kwargs["IfMatch"] = if_match
        try:
            r = self.client.put_object(**kwargs)
        except ClientError as exc:
            code = _code(exc)
            if code in _PRECONDITION:
                if create:
                    head = self.head(key)
                    if head is None:
                        # versitygw (1.7) counts a delete marker as an existing object for
                        # If-None-Match; the key is free, so write it and verify instead.
                        return self.put(key, item, extra_meta=extra_meta, verify=True)
                    raise Race(key, head) from exc
                raise Race(key) from exc
            if code == "NotImplemented" and ("IfNoneMatch" in kwargs or "IfMatch" in kwargs):
                self.conditional = False  # fall back to verify-after-write
                return self.put(key, item, extra_meta=extra_meta, verify=True)
            raise self._map(exc, f"PUT {key}") from exc
        except BotoCoreError as exc:
            raise self._map(exc, f"PUT {key}") from exc
        returned = r.get("ChecksumSHA256")
        if returned is not None and returned != kwargs["ChecksumSHA256"]:
            raise TransientDeliveryError(f"S3 stored {key} with another checksum", self.config.retry_after_s)
        version_id = str(r.get("VersionId") or "")
        if returned is None or verify:  # unchecked or unconditional: read back what the store holds
            head = self.head(key)
            if (
                head is None
                or head.sha256 != item.sha256
                or head.size != item.size
                or (version_id and head.version_id != version_id)
            ):
                raise TransientDeliveryError(f"S3 did not keep {key} as written", self.config.retry_after_s)
        return version_id

    def list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.config.bucket, Prefix=prefix
            ):
                keys += [str(o["Key"]) for o in page.get("Contents", [])]
        except (BotoCoreError, ClientError) as exc:
            raise self._map(exc, f"LIST {prefix}") from exc
        return sorted(keys)

    def legal_hold(self, key: str, version_id: str) -> None:
        try:
            self.client.put_object_legal_hold(
                Bucket=self.config.bucket, Key=key, VersionId=version_id, LegalHold={"Status": "ON"}
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._map(exc, f"legal hold on {key}") from exc
