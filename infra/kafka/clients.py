"""Every Kafka client of Lantoa is built here, from one KafkaConnection (schemas/settings.py).

kafka-python serves the CLI, the publish client and the tools; aiokafka the long-running services.
Both get the same bootstrap, security protocol, SASL mechanism and credentials, CA file and client
certificate, so a process that works over PLAINTEXT works over SSL or SASL_SSL by configuration.
Nothing else in the tree constructs a client by hand (the loop, the outbox, state views, admin,
the CLI and tests all come through these functions).

:func:`probe` opens one connection the way every client will (TLS, then SASL, then a request) and
says whether the cluster refuses this configuration for good (:class:`KafkaAccessError`: an
untrusted certificate, refused credentials, an unsupported mechanism), merely is not there yet
(refused, timed out), or accepted the connection and then dropped it (likely a protocol that does
not match the listener, final once it keeps happening). The kafka-python constructors run it first
on a secured connection, so the CLI and the tools fail in a second with the variable to check
instead of timing out after 30 s.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import socket
import ssl
import time
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka import TopicPartition as KafkaTopicPartition

from schemas.settings import KafkaConnection


def ssl_context(conn: KafkaConnection) -> ssl.SSLContext:
    """A verifying TLS context: the CA file (else the system store) and the client certificate."""
    ctx = ssl.create_default_context(
        ssl.Purpose.SERVER_AUTH, cafile=str(conn.ssl_cafile) if conn.ssl_cafile else None
    )
    if conn.ssl_certfile:
        ctx.load_cert_chain(str(conn.ssl_certfile), str(conn.ssl_keyfile) if conn.ssl_keyfile else None)
    return ctx


def aiokafka_args(conn: KafkaConnection) -> dict[str, Any]:
    """Connection arguments for aiokafka's consumer, producer and client."""
    args: dict[str, Any] = {"bootstrap_servers": conn.bootstrap, "security_protocol": conn.security_protocol}
    if conn.uses_ssl:
        args["ssl_context"] = ssl_context(conn)
    if conn.uses_sasl:
        args.update(
            sasl_mechanism=conn.sasl_mechanism,
            sasl_plain_username=conn.sasl_username,
            sasl_plain_password=conn.sasl_password,
        )
    return args


def kafka_python_args(conn: KafkaConnection) -> dict[str, Any]:
    """Connection arguments for kafka-python's consumer, producer and admin client."""
    args: dict[str, Any] = {
        "bootstrap_servers": conn.bootstrap.split(","),
        "security_protocol": conn.security_protocol,
    }
    if conn.uses_ssl:
        args["ssl_context"] = ssl_context(conn)
    if conn.uses_sasl:
        args.update(
            sasl_mechanism=conn.sasl_mechanism,
            sasl_plain_username=conn.sasl_username,
            sasl_plain_password=conn.sasl_password,
        )
    return args


# -- can this configuration connect at all? ----------------------------------------------------

# How many probes in a row may see the connection accepted and then dropped (or the TLS handshake
# fail) before it counts as a configuration mismatch rather than a broker in the middle of a restart.
MISMATCH_AFTER = 5


class KafkaAccessError(Exception):
    """The cluster refuses this connection configuration: retrying cannot help.

    Raised at start (before any record is read, so no offset moves); the message names the
    variable to check and never the password. Processes exit non-zero on it with that one line.
    """


class ProbeResult(enum.Enum):
    OK = "ok"
    UNREACHABLE = "unreachable"  # refused, timed out, no such host: the broker may come back
    MISMATCH = "mismatch"  # accepted, then TLS or the Kafka handshake failed: wrong protocol?


@dataclass(frozen=True)
class Probe:
    result: ProbeResult
    detail: str = ""


def hosts(conn: KafkaConnection) -> list[tuple[str, int]]:
    """``host:port`` pairs of the bootstrap list (``[v6]:port`` allowed)."""
    out: list[tuple[str, int]] = []
    for item in conn.bootstrap.split(","):
        host, _, port = item.strip().rpartition(":")
        out.append((host.strip("[]"), int(port)))
    return out


def access_error(conn: KafkaConnection, where: str, exc: BaseException) -> KafkaAccessError | None:
    """The final error ``exc`` means for this configuration, or None if it may pass by itself."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return KafkaAccessError(
            f"Kafka at {where}: its TLS certificate is not trusted ({exc.verify_message}): check LANTOA_SSL_CAFILE "
            f"(now {conn.ssl_cafile or 'the system store'}) and that LANTOA_KAFKA_BOOTSTRAP names a host the "
            f"certificate was issued for"
        )
    if isinstance(exc, (SaslAuthenticationFailed, AuthenticationFailedError)):
        return KafkaAccessError(
            f"Kafka at {where} refused the {conn.sasl_mechanism} credentials of user {conn.sasl_username!r}: "
            f"check LANTOA_SASL_USERNAME and the password in LANTOA_SASL_PASSWORD_FILE"
        )
    if isinstance(exc, (UnsupportedSaslMechanismError, AuthenticationMethodNotSupported)):
        return KafkaAccessError(
            f"Kafka at {where} does not accept SASL mechanism {conn.sasl_mechanism}: check LANTOA_SASL_MECHANISM"
        )
    return None


def mismatch_message(conn: KafkaConnection, where: str, detail: str) -> str:
    return (
        f"Kafka at {where} accepted the connection but the {conn.security_protocol} handshake failed "
        f"{MISMATCH_AFTER} times ({detail}): check that LANTOA_SECURITY_PROTOCOL={conn.security_protocol} is "
        f"what the listener speaks, and LANTOA_SSL_CERTFILE/LANTOA_SSL_KEYFILE if it requires a client certificate"
    )


async def probe(conn: KafkaConnection, *, client_id: str = "lantoa-probe", timeout_s: float = 10.0) -> Probe:
    """Connect to the bootstrap brokers one after the other as every client will, and ask for metadata.

    Returns OK at the first broker that answers, else UNREACHABLE or MISMATCH (the last broker's
    reason). Raises KafkaAccessError when a broker refuses the certificate or the credentials.
    """
    args = aiokafka_args(conn)
    del args["bootstrap_servers"]
    last = Probe(ProbeResult.UNREACHABLE, "no bootstrap server")
    for host, port in hosts(conn):
        where = f"{host}:{port}"
        try:
            link = await create_conn(
                host, port, client_id=client_id, request_timeout_ms=int(timeout_s * 1000), **args
            )
            try:
                await link.send(MetadataRequest([]))
            finally:
                link.close()
            return Probe(ProbeResult.OK)
        except ConnectionRefusedError as exc:
            last = Probe(ProbeResult.UNREACHABLE, f"{where}: connection refused ({exc.strerror})")
        except (TimeoutError, socket.gaierror) as exc:
            last = Probe(ProbeResult.UNREACHABLE, f"{where}: {type(exc).__name__} {exc}")
        except (OSError, KafkaError) as exc:
            final = access_error(conn, where, exc)
            if final is not None:
                raise final from None
            # Accepted, then reset / closed / a TLS error: a restarting broker or a protocol mismatch.
            reason = ProbeResult.MISMATCH if _accepted(exc) else ProbeResult.UNREACHABLE
            last = Probe(reason, f"{where}: {type(exc).__name__} {exc}".rstrip())
    return last


def _accepted(exc: BaseException) -> bool:
    # Refused/unreachable never got a TCP connection; these mean the peer answered and then dropped us.
    return isinstance(
        exc, (ssl.SSLError, ConnectionResetError, ConnectionAbortedError, BrokenPipeError, KafkaError)
    )


def check_access(conn: KafkaConnection, *, pause_s: float = 0.2) -> None:
    """Raise KafkaAccessError if this configuration can never connect; return otherwise.

    For kafka-python callers (CLI, tools), before a client is built: a broker that is simply not
    reachable is left to the client's own retries and timeout; only refused certificates or
    credentials, or ``MISMATCH_AFTER`` handshakes in a row dropped, raise. Runs the probe on a
    thread of its own, so it works with or without a running event loop.
    """

    def attempts() -> None:
        for attempt in range(1, MISMATCH_AFTER + 1):
            found = asyncio.run(probe(conn, client_id="lantoa-preflight"))
            if found.result is not ProbeResult.MISMATCH:
                return
            if attempt == MISMATCH_AFTER:
                where = found.detail.split(": ", 1)[0]
                raise KafkaAccessError(mismatch_message(conn, where, found.detail))
            time.sleep(pause_s)

    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lantoa-preflight") as pool:
        pool.submit(attempts).result()


# -- aiokafka (services) ---------------------------------------------------------------------


def aio_consumer(conn: KafkaConnection, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **aiokafka_args(conn), **options)


async def partitions_of(consumer: AIOKafkaConsumer, topic: str, wait_s: float = 5.0) -> set[int]:
    """The partitions of ``topic`` as the consumer's cluster metadata knows them, refreshed until it
    knows the topic or ``wait_s`` passed (empty: the topic does not exist). aiokafka's consumer has
    no public metadata refresh; its client's is used here, and only here (with ``cluster_of``)."""
    parts = consumer.partitions_for_topic(topic)
    deadline = asyncio.get_running_loop().time() + wait_s
    while not parts and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        await consumer._client.force_metadata_update()
        parts = consumer.partitions_for_topic(topic)
    return set(parts or ())


async def cluster_of(consumer: AIOKafkaConsumer) -> Any:
    """The whole cluster's metadata, fetched now through the consumer's connections (see
    ``partitions_of``)."""
    return await consumer._client.fetch_all_metadata()


def aio_producer(conn: KafkaConnection, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**aiokafka_args(conn), **options)


def aio_client(conn: KafkaConnection, **options: Any) -> AIOKafkaClient:
    return AIOKafkaClient(**aiokafka_args(conn), **options)


# -- kafka-python (CLI, publish client, tools) -------------------------------------------------


def _preflight(conn: KafkaConnection) -> None:
    # Secured connections only: their failures are the ones kafka-python turns into a 30 s timeout.
    if conn.uses_ssl or conn.uses_sasl:
        check_access(conn)


def consumer(conn: KafkaConnection, *topics: str, **options: Any) -> KafkaConsumer:
    """A kafka-python consumer. Raises KafkaAccessError first if the cluster refuses this configuration."""
    _preflight(conn)
    return KafkaConsumer(*topics, **kafka_python_args(conn), **options)


def producer(conn: KafkaConnection, **options: Any) -> KafkaProducer:
    """A kafka-python producer. Raises KafkaAccessError first if the cluster refuses this configuration."""
    _preflight(conn)
    return KafkaProducer(**kafka_python_args(conn), **options)


def admin(conn: KafkaConnection, **options: Any) -> KafkaAdminClient:
    """A kafka-python admin client. Raises KafkaAccessError first if the cluster refuses this configuration."""
    _preflight(conn)
    return KafkaAdminClient(**kafka_python_args(conn), **options)


def read_topic(conn: KafkaConnection, topic: str, *, client_id: str, timeout_s: float = 10.0) -> list[Any]:
    """Every record ``topic`` holds now (kafka-python ConsumerRecords, in partition order), read from
    the beginning to the end offsets taken at start; TimeoutError past ``timeout_s``. For the CLI's
    small topics (pending alerts, the audit trail, dead letters); no group, nothing committed."""
    reader = consumer(conn, group_id=None, enable_auto_commit=False, client_id=client_id)
    try:
        tps = [KafkaTopicPartition(topic, p) for p in sorted(reader.partitions_for_topic(topic) or ())]
        if not tps:
            return []
        reader.assign(tps)
        reader.seek_to_beginning(*tps)
        ends = {tp: off for tp, off in reader.end_offsets(tps).items() if off}
        out: dict[Any, list[Any]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + timeout_s
        while any(reader.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {topic} within {timeout_s:.0f} s")
            for tp, records in reader.poll(timeout_ms=300, max_records=5000).items():
                out[tp].extend(r for r in records if r.offset < ends.get(tp, 0))
        return [r for tp in tps for r in out[tp]]
    finally:
        reader.close()
