"""Archive configuration: where and how to archive, and the credentials (never logged).

Loaded once at bootstrap (``ArchiveConfig.from_env(os.environ)``) into a frozen object; nothing
here opens a connection.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from schemas.secrets import SecretFileError, read_secret_text

__all__ = ["ArchiveConfig", "ArchiveConfigError", "AudioLookup", "S3Credentials", "load_credentials_file"]

_PREFIX_RE: Final = re.compile(r"^(?:[a-z0-9][a-z0-9._-]{0,62}/){0,8}$")

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
    # The store honours If-None-Match: * and If-Match on PUT (AWS S3 since 2024, versitygw, MinIO):
    # new keys are then written without a HEAD first, the condition keeping what exists. Turn it
    # off for a store that silently ignores those headers (one answering NotImplemented is
    # detected); every write then HEADs first and is read back after.
    conditional_writes: bool = True
    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    max_attempts: int = 3  # botocore's own retries of one call, before the runtime's
    retry_after_s: float = 5.0  # hint on transient failures
    auth_pause_s: float = 300.0  # how long a target waits after refused credentials
    # start() while the store is unreachable: wait and retry, backing off from the first delay
    # up to the cap (with jitter), instead of exiting. ``start_deadline_s`` None: until it answers.
    start_retry_first_s: float = 0.5
    start_retry_cap_s: float = 30.0
    start_deadline_s: float | None = None
    # While running: once the store has failed every call for this long, its errors become
    # TargetPaused(outage_pause_s) instead of transient ones, so the commands wait in the retry
    # topics without using up their attempts (a long outage never dead-letters a command).
    outage_pause_after_s: float = 60.0
    outage_pause_s: float = 60.0
    # The CAP feed (consumers/archive/feed.py) is checked for expired alerts this often at most
    # (sooner when an alert expires before): an expired alert leaves feed.atom within it.
    feed_refresh_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.bucket:
            raise ArchiveConfigError("an archive bucket is required (LANTOA_S3_BUCKET)")
        if not _PREFIX_RE.match(self.prefix):
            raise ArchiveConfigError(
                f"prefix must be empty or lower-case segments ending in '/': {self.prefix!r}"
            )
        if self.credentials is not None and (self.credentials_file is not None or self.profile is not None):
            raise ArchiveConfigError("give explicit credentials or a credentials file/profile, not both")
        if self.addressing_style not in ("auto", "path", "virtual"):
            raise ArchiveConfigError(
                f"addressing_style must be auto, path or virtual: {self.addressing_style!r}"
            )
        if not 0 < self.start_retry_first_s <= self.start_retry_cap_s:
            raise ArchiveConfigError("start retry delays must satisfy 0 < first <= cap")

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
            conditional_writes=flag("LANTOA_S3_CONDITIONAL_WRITES", True),
            feed_refresh_s=_seconds(env.get("LANTOA_ARCHIVE_FEED_REFRESH_S"), 60.0),
            audio_lookup=audio_lookup,
        )


def _seconds(raw: str | None, default: float) -> float:
    if raw is None or not raw.strip():
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ArchiveConfigError(f"LANTOA_ARCHIVE_FEED_REFRESH_S must be seconds, got {raw[:40]!r}") from None
    if not 0.1 <= value <= 86400:
        raise ArchiveConfigError(f"LANTOA_ARCHIVE_FEED_REFRESH_S must be 0.1..86400 s, got {value}")
    return value


def load_credentials_file(path: Path, profile: str | None = None) -> S3Credentials:
    """Keys from an AWS shared-credentials file that only its owner can read."""
    try:
        text = read_secret_text(path)
    except FileNotFoundError:
        raise ArchiveConfigError(f"cannot read the S3 credentials file {path}: no such file") from None
    except SecretFileError as exc:
        raise ArchiveConfigError(f"S3 credentials: {exc}") from None
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text)
        section = parser[profile or "default"]
        return S3Credentials(
            section["aws_access_key_id"].strip(),
            section["aws_secret_access_key"].strip(),
            (section.get("aws_session_token") or "").strip() or None,
        )
    except (KeyError, configparser.Error):
        # The parser's message could quote a secret: say only what is missing.
        raise ArchiveConfigError(
            f"{path} has no [{profile or 'default'}] section with aws_access_key_id and aws_secret_access_key"
        ) from None
