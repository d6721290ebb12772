"""The bootstrap of a delivery process (`lantoa adapter <channel>`, `lantoa adapter emergency`):
the metrics server when configured, the target registry followed for the process's lifetime,
SIGTERM/SIGINT as a stop event, exit 78 with one line when the cluster refuses the connection
configuration (certificate, credentials, protocol) or a secret file is open to other users, and
exit 70 on anything unexpected."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import Awaitable, Callable

from consumers.delivery.runtime import EXIT_CRASH
from infra.kafka.clients import KafkaAccessError
from infra.kafka.grow import PartitionMismatch
from infra.kafka.reachable import EXIT_CONFIG, wait_for_kafka
from infra.kafka.registry_follower import RegistryFollower
from schemas.models import Target
from schemas.secrets import SecretFileError
from schemas.settings import Settings
from schemas.topics import Topic

TargetLookup = Callable[[str], Target | None]


def run_until_signalled(
    settings: Settings,
    what: str,
    body: Callable[[asyncio.Event, TargetLookup], Awaitable[None]],
    logger: logging.Logger,
) -> None:
    """Run ``body(stop, targets)`` until it returns; SIGTERM/SIGINT set ``stop``, and ``targets``
    looks a target up in the registry (followed from the targets topic while ``body`` runs).

    An exception out of ``body`` is logged as critical on ``logger`` ("<what> stopped on ...") and
    the process exits with ``EXIT_CRASH`` at once: nothing past the failing record was committed.
    KafkaAccessError at start (nothing consumed yet) is one critical line naming the variable to
    check, and exit ``EXIT_CONFIG``.
    """

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if not await wait_for_kafka(settings.kafka, stop, client_id=f"{settings.client_id}-probe"):
            return
        follower = RegistryFollower(settings.kafka, settings.topic(Topic.TARGETS), settings.client_id)
        await follower.start()
        try:
            await body(stop, follower.registry.targets.get)
        finally:
            await follower.stop()

    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.web_host)
    try:
        asyncio.run(main())
    except (KafkaAccessError, PartitionMismatch, SecretFileError) as exc:
        # At start nothing was consumed and no offset moved. A secret file opened to others while
        # running stops the process here too (nothing past the record in hand was committed): a
        # restart would refuse the file at start, so say so once, as a configuration error.
        logger.critical("%s cannot start: %s", what, exc)
        logging.shutdown()
        os._exit(EXIT_CONFIG)
    except Exception as exc:
        logger.critical("%s stopped on %s: %s", what, type(exc).__name__, exc, exc_info=exc)
        logging.shutdown()
        os._exit(EXIT_CRASH)
