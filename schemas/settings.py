"""Frozen, typed settings. Built once at start from a mapping (the environment) and passed in.

Nothing here reads the environment by itself: callers hand ``Settings.from_env`` the mapping.
The one file read here is the Kafka SASL password (``LANTOA_SASL_PASSWORD_FILE``), once, at
load: the secret then lives only in the frozen object (never in its repr), not in the process
environment or a command line.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from schemas.secrets import SecretFileError, check_secret, read_secret_text
from schemas.topics import Topic, descriptors

ENV_PREFIX = "LANTOA_"

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SettingsError(ValueError):
    """A setting that cannot work, with what to change (the process stops at start)."""


@dataclass(frozen=True)
class KafkaConnection:
    """How every Kafka client of every process connects: one object, both client libraries.

    infra/kafka/clients.py turns it into kafka-python and aiokafka arguments; nothing else
    builds a client. ``sasl_password`` is the content of the password file, never shown.
    """

    bootstrap: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @property
    def uses_ssl(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def check(self) -> KafkaConnection:
        """Raise SettingsError for a combination no client can use; return self."""
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise SettingsError(
                f"LANTOA_SECURITY_PROTOCOL={self.security_protocol!r}: expected one of "
                f"{', '.join(SECURITY_PROTOCOLS)}"
            )
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise SettingsError(
                    f"LANTOA_SASL_MECHANISM={self.sasl_mechanism!r}: with {self.security_protocol} "
                    f"expected one of {', '.join(SASL_MECHANISMS)}"
                )
            if not self.sasl_username or self.sasl_password is None:
                raise SettingsError(
                    f"{self.security_protocol} needs LANTOA_SASL_USERNAME and LANTOA_SASL_PASSWORD_FILE"
                )
        if bool(self.ssl_certfile) != bool(self.ssl_keyfile):
            raise SettingsError(
                "LANTOA_SSL_CERTFILE and LANTOA_SSL_KEYFILE go together (client certificate and its key)"
            )
        for variable, path in (
            ("LANTOA_SSL_CAFILE", self.ssl_cafile),
            ("LANTOA_SSL_CERTFILE", self.ssl_certfile),
            ("LANTOA_SSL_KEYFILE", self.ssl_keyfile),
        ):
            if path is not None and not path.is_file():
                raise SettingsError(f"{variable}={path}: no such file")
        if self.ssl_keyfile is not None:  # a private key: its owner's alone, like every secret file
            try:
                check_secret(self.ssl_keyfile)
            except SecretFileError as exc:
                raise SettingsError(f"LANTOA_SSL_KEYFILE: {exc}") from None
        return self


def _read_secret_file(variable: str, path: str) -> str:
    try:
        return read_secret_text(Path(path))
    except FileNotFoundError:
        raise SettingsError(f"{variable}={path}: cannot read it (No such file or directory)") from None
    except SecretFileError as exc:
        raise SettingsError(f"{variable}: {exc}") from None


def _parse_overrides(raw: str) -> dict[str, str]:
    # "cms.articles=newsroom.published,distribution.receipts=ops.receipts"
    result: dict[str, str] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        logical, sep, physical = part.partition("=")
        if not sep or not physical.strip():
            raise ValueError(f"bad topic override {part!r}: expected logical=physical")
        result[Topic(logical.strip()).value] = physical.strip()
    return result


def _parse_partitions(raw: str) -> dict[str, int]:
    result: dict[str, int] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        logical, sep, count = part.partition("=")
        if not sep:
            raise ValueError(f"bad partition override {part!r}: expected logical=count")
        result[Topic(logical.strip()).value] = int(count)
    return result


@dataclass(frozen=True)
class Settings:
    """Process settings. Topic names and partition counts live here, never in code."""

    # The connection every Kafka client of this process uses (infra/kafka/clients.py), read once.
    kafka: KafkaConnection = field(default_factory=KafkaConnection)
    topic_prefix: str = ""
    topic_overrides: Mapping[str, str] = field(default_factory=dict)
    partition_overrides: Mapping[str, int] = field(default_factory=dict)
    replication_factor: int = 1
    app_id: str = "lantoa-streams"
    client_id: str = "lantoa"
    web_host: str = "127.0.0.1"
    web_port: int = 6066
    targets_file: Path | None = None
    data_dir: Path = Path("var")
    public_base_url: str = "https://tin.lantoa.example.vn"
    embargo_check_interval_s: float = 1.0
    source: str = "urn:lantoa:cms"
    metrics_port: int = 0
    http_timeout_s: float = 10.0
    # Facebook Graph API. Tokens never live here: a 0600 JSON file {page_id: page token}.
    graph_base_url: str = "https://graph.facebook.com"
    graph_api_version: str = "v21.0"
    fanpage_tokens_file: Path | None = None
    fanpage_app_secret_file: Path | None = None
    # Zalo OA API. The app secret and the token pair live in files; the token file is rewritten
    # atomically on every refresh (refresh tokens are single use).
    zalo_api_url: str = "https://openapi.zalo.me"
    zalo_oauth_url: str = "https://oauth.zaloapp.com"
    zalo_app_id: str = ""
    zalo_secret_file: Path | None = None
    zalo_token_file: Path | None = None
    # Loudspeaker platform (truyền thanh cơ sở). The bearer token lives in a 0600 JSON file
    # {"token": "..."}; bulletins are spoken once per text by espeak-ng into the audio cache
    # (content-addressed) and reach the platform as URLs under the audio base URL.
    loudspeaker_api_url: str = "https://loa.lantoa.example.vn"
    loudspeaker_token_file: Path | None = None
    loudspeaker_audio_dir: Path = Path("var/audio")
    loudspeaker_audio_base_url: str = "https://tin.lantoa.example.vn/audio"
    loudspeaker_voice: str = "vi"
    loudspeaker_speed_wpm: int = 150
    # Delivery runtime: delays of the retry tiers (the tier names are fixed topics) and how fast a
    # dead adapter's partitions move to a live one.
    retry_delays: Mapping[str, float] = field(default_factory=dict)
    # Emergency lane: how often a pre-empting alert repeats until it expires, and how long it
    # repeats when the CAP alert gives no expiry.
    emergency_repeat_s: float = 900.0
    emergency_default_ttl_s: float = 6 * 3600.0
    consumer_session_timeout_ms: int = 10000
    # The consumer loop's poison policy (infra/kafka/loop.py): how many times a record whose
    # handling raises something unexpected (or kills the process) is tried before it becomes a
    # dead letter, and the dead-letter limit: more than ``dlq_limit_share`` of the records of a
    # ``dlq_limit_window_s`` window dead-lettered (counted once ``dlq_limit_min_records`` were
    # seen) stops the process instead.
    poison_max_attempts: int = 3
    # Shared payloads (infra/kafka/payloads.py): a payload several commands of one fan-out carry is
    # stored once on distribution.payloads when that saves at least this many bytes (a national
    # article's bulletin: 3,321 zones x up to 12 KiB); below it the commands carry it inline, which
    # costs the worker no extra round trip. 0 shares every payload used twice; negative: never.
    shared_payload_min_bytes: int = 64 * 1024
    # What an adapter keeps of the shared payloads it read (decoded, bounded by their bytes).
    payload_cache_mb: float = 64.0
    dlq_limit_share: float = 0.5
    dlq_limit_min_records: int = 50
    dlq_limit_window_s: float = 60.0
    # Trust (README "Trust: senders, signatures, approvals, audit"). Who a person is: the identities
    # file (schemas/access.py: named tokens, stored as hashes, with roles) the CAP endpoint and the
    # status web check; what a CLI user is called in the audit trail (default cli:<user>@<host>).
    access_file: Path | None = None
    actor: str = ""
    # One CAP sender token alone (identity "cap-token", role sender): a file (secret, 0600) or the
    # variable; either, the identities file's senders, or all of them (README "Trust").
    # The status web without authentication (closed test networks only): every page open to
    # whoever reaches web_host:web_port. Without it and without identities it answers 401.
    status_insecure_no_auth: bool = False
    cap_token_file: Path | None = field(default=None, repr=False)
    cap_token: str = field(default="", repr=False)
    # CAP signatures (schemas/cap_signature.py): the trust store and per-sender policy.
    cap_trust_file: Path | None = None
    # Two-person rule: an Actual alert to more than this many zones, or to every zone of a
    # province, waits for a second identity's approval; unapproved, it expires after approval_ttl_s.
    approval_max_zones: int = 50
    approval_whole_province: bool = True
    approval_ttl_s: float = 1800.0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **defaults: object) -> Settings:
        """Settings from ``LANTOA_*`` variables; ``defaults`` override the built-in defaults."""
        base = replace(cls(), **defaults)  # type: ignore[arg-type]

        def get(name: str) -> str | None:
            return env.get(ENV_PREFIX + name)

        changes: dict[str, object] = {}
        kafka: dict[str, object] = {}
        if (v := get("KAFKA_BOOTSTRAP")) is not None:
            kafka["bootstrap"] = v
        if (v := get("TOPIC_PREFIX")) is not None:
            changes["topic_prefix"] = v
        if (v := get("TOPIC_OVERRIDES")) is not None:
            changes["topic_overrides"] = _parse_overrides(v)
        if (v := get("PARTITIONS")) is not None:
            changes["partition_overrides"] = _parse_partitions(v)
        if (v := get("REPLICATION_FACTOR")) is not None:
            changes["replication_factor"] = int(v)
        if (v := get("APP_ID")) is not None:
            changes["app_id"] = v
        if (v := get("CLIENT_ID")) is not None:
            changes["client_id"] = v
        if (v := get("WEB_HOST")) is not None:
            changes["web_host"] = v
        if (v := get("WEB_PORT")) is not None:
            changes["web_port"] = int(v)
        if (v := get("TARGETS_FILE")) is not None:
            changes["targets_file"] = Path(v)
        if (v := get("DATA_DIR")) is not None:
            changes["data_dir"] = Path(v)
        if (v := get("PUBLIC_BASE_URL")) is not None:
            changes["public_base_url"] = v.rstrip("/")
        if (v := get("EMBARGO_CHECK_INTERVAL_S")) is not None:
            changes["embargo_check_interval_s"] = float(v)
        if (v := get("SOURCE")) is not None:
            changes["source"] = v
        if (v := get("SECURITY_PROTOCOL")) is not None:
            kafka["security_protocol"] = v.strip().upper()
        if (v := get("SASL_MECHANISM")) is not None:
            kafka["sasl_mechanism"] = v.strip().upper() or None
        if (v := get("SASL_USERNAME")) is not None:
            kafka["sasl_username"] = v
        if (v := get("SASL_PASSWORD_FILE")) is not None:
            kafka["sasl_password"] = _read_secret_file(ENV_PREFIX + "SASL_PASSWORD_FILE", v)
        for name in ("SSL_CAFILE", "SSL_CERTFILE", "SSL_KEYFILE"):
            if (v := get(name)) is not None:
                kafka[name.lower()] = Path(v) if v else None
        if kafka:
            changes["kafka"] = replace(base.kafka, **kafka)  # type: ignore[arg-type]
        if (v := get("RETRY_DELAYS")) is not None:
            delays = {}
            for part in filter(None, (p.strip() for p in v.split(","))):
                tier, _, secs = part.partition("=")
                delays[tier.strip()] = float(secs)
            changes["retry_delays"] = delays
        for name, conv in (
            ("EMERGENCY_REPEAT_S", float),
            ("EMERGENCY_DEFAULT_TTL_S", float),
            ("METRICS_PORT", int),
            ("CONSUMER_SESSION_TIMEOUT_MS", int),
            ("POISON_MAX_ATTEMPTS", int),
            ("SHARED_PAYLOAD_MIN_BYTES", int),
            ("PAYLOAD_CACHE_MB", float),
            ("DLQ_LIMIT_SHARE", float),
            ("DLQ_LIMIT_MIN_RECORDS", int),
            ("DLQ_LIMIT_WINDOW_S", float),
            ("HTTP_TIMEOUT_S", float),
            ("GRAPH_BASE_URL", str),
            ("GRAPH_API_VERSION", str),
            ("FANPAGE_TOKENS_FILE", Path),
            ("FANPAGE_APP_SECRET_FILE", Path),
            ("ZALO_API_URL", str),
            ("ZALO_OAUTH_URL", str),
            ("ZALO_APP_ID", str),
            ("ZALO_SECRET_FILE", Path),
            ("ZALO_TOKEN_FILE", Path),
            ("LOUDSPEAKER_API_URL", str),
            ("LOUDSPEAKER_TOKEN_FILE", Path),
            ("LOUDSPEAKER_AUDIO_DIR", Path),
            ("LOUDSPEAKER_AUDIO_BASE_URL", str),
            ("LOUDSPEAKER_VOICE", str),
            ("LOUDSPEAKER_SPEED_WPM", int),
            ("ACCESS_FILE", Path),
            ("ACTOR", str),
            ("CAP_TOKEN_FILE", Path),
            ("CAP_TOKEN", str),
            ("CAP_TRUST_FILE", Path),
            ("APPROVAL_MAX_ZONES", int),
            ("APPROVAL_TTL_S", float),
        ):
            if (v := get(name)) is not None:
                changes[name.lower()] = conv(v)
        if (v := get("STATUS_INSECURE_NO_AUTH")) is not None:
            changes["status_insecure_no_auth"] = v.strip().lower() in ("1", "true", "yes", "on")
        if (v := get("APPROVAL_WHOLE_PROVINCE")) is not None:
            changes["approval_whole_province"] = v.strip().lower() not in ("0", "false", "no", "off", "")
        settings = replace(base, **changes)  # type: ignore[arg-type]
        settings.kafka.check()
        if settings.approval_max_zones < 0 or settings.approval_ttl_s <= 0:
            raise SettingsError(
                "LANTOA_APPROVAL_MAX_ZONES must be at least 0 and LANTOA_APPROVAL_TTL_S positive"
            )
        if settings.poison_max_attempts < 1:
            raise SettingsError(f"LANTOA_POISON_MAX_ATTEMPTS={settings.poison_max_attempts}: at least 1")
        if settings.payload_cache_mb <= 0:
            raise SettingsError(f"LANTOA_PAYLOAD_CACHE_MB={settings.payload_cache_mb}: a positive size")
        if not 0.0 < settings.dlq_limit_share <= 1.0:
            raise SettingsError(f"LANTOA_DLQ_LIMIT_SHARE={settings.dlq_limit_share}: a share in (0, 1]")
        if settings.dlq_limit_min_records < 1 or settings.dlq_limit_window_s <= 0:
            raise SettingsError(
                "LANTOA_DLQ_LIMIT_MIN_RECORDS must be at least 1 and LANTOA_DLQ_LIMIT_WINDOW_S positive"
            )
        return settings

    def topic(self, logical: Topic) -> str:
        """The physical name of a logical topic."""
        override = self.topic_overrides.get(logical.value)
        return override if override else self.topic_prefix + logical.value

    def partitions(self, logical: Topic) -> int:
        """Partition count: configuration first, then the topic's descriptor."""
        return self.partition_overrides.get(logical.value, descriptors()[logical].partitions)
