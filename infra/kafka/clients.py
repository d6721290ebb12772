"""Every Kafka client of Lantoa is built here, from one KafkaConnection (schemas/settings.py).

kafka-python serves the CLI, the publish client and the tools; aiokafka the long-running services.
Both get the same bootstrap, security protocol, SASL mechanism and credentials, CA file and client
certificate, so a process that works over PLAINTEXT works over SSL or SASL_SSL by configuration.
Nothing else in the tree constructs a client by hand (the loop, the outbox, state views, admin,
the CLI and tests all come through these functions).
"""

from __future__ import annotations

import ssl
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.client import AIOKafkaClient
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from schemas.settings import KafkaConnection


def ssl_context(conn: KafkaConnection) -> ssl.SSLContext:
    """A verifying TLS context: the CA file (else the system store) and the client certificate."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH,
                                     cafile=str(conn.ssl_cafile) if conn.ssl_cafile else None)
    if conn.ssl_certfile:
        ctx.load_cert_chain(str(conn.ssl_certfile), str(conn.ssl_keyfile) if conn.ssl_keyfile else None)
    return ctx


def aiokafka_args(conn: KafkaConnection) -> dict[str, Any]:
    """Connection arguments for aiokafka's consumer, producer and client."""
    args: dict[str, Any] = {"bootstrap_servers": conn.bootstrap, "security_protocol": conn.security_protocol}
    if conn.uses_ssl:
        args["ssl_context"] = ssl_context(conn)
    if conn.uses_sasl:
        args.update(sasl_mechanism=conn.sasl_mechanism, sasl_plain_username=conn.sasl_username,
                    sasl_plain_password=conn.sasl_password)
    return args


def kafka_python_args(conn: KafkaConnection) -> dict[str, Any]:
    """Connection arguments for kafka-python's consumer, producer and admin client."""
    args: dict[str, Any] = {"bootstrap_servers": conn.bootstrap.split(","),
                            "security_protocol": conn.security_protocol}
    if conn.uses_ssl:
        args["ssl_context"] = ssl_context(conn)
    if conn.uses_sasl:
        args.update(sasl_mechanism=conn.sasl_mechanism, sasl_plain_username=conn.sasl_username,
                    sasl_plain_password=conn.sasl_password)
    return args


# -- aiokafka (services) ---------------------------------------------------------------------


def aio_consumer(conn: KafkaConnection, *topics: str, **options: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(*topics, **aiokafka_args(conn), **options)


def aio_producer(conn: KafkaConnection, **options: Any) -> AIOKafkaProducer:
    return AIOKafkaProducer(**aiokafka_args(conn), **options)


def aio_client(conn: KafkaConnection, **options: Any) -> AIOKafkaClient:
    return AIOKafkaClient(**aiokafka_args(conn), **options)


# -- kafka-python (CLI, publish client, tools) -------------------------------------------------


def consumer(conn: KafkaConnection, *topics: str, **options: Any) -> KafkaConsumer:
    return KafkaConsumer(*topics, **kafka_python_args(conn), **options)


def producer(conn: KafkaConnection, **options: Any) -> KafkaProducer:
    return KafkaProducer(**kafka_python_args(conn), **options)


def admin(conn: KafkaConnection, **options: Any) -> KafkaAdminClient:
    return KafkaAdminClient(**kafka_python_args(conn), **options)
