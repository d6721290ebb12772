"""Wait for the Kafka cluster at start, instead of exiting on the first refused bootstrap.

A worker started while the broker restarts (a rolling upgrade, the fault drill) used to fail its
bootstrap and exit 70 for the supervisor to restart it; it now waits, with a jittered backoff and a
log line per attempt, until the cluster answers or it is told to stop.
"""

from __future__ import annotations

import asyncio
import logging
import random

from aiokafka.errors import KafkaConnectionError

from infra.kafka import clients
from schemas.settings import KafkaConnection

log = logging.getLogger(__name__)


async def wait_for_kafka(conn: KafkaConnection, stop: asyncio.Event | None = None, *, client_id: str = "lantoa-probe",
                         first_s: float = 0.5, max_s: float = 10.0, deadline_s: float | None = None) -> bool:
    """True once a bootstrap succeeds; False if ``stop`` is set (or ``deadline_s`` passes) first."""
    loop = asyncio.get_running_loop()
    give_up = None if deadline_s is None else loop.time() + deadline_s
    delay = first_s
    while True:
        client = clients.aio_client(conn, client_id=client_id, request_timeout_ms=10000)
        try:
            await client.bootstrap()
            return True
        except KafkaConnectionError as exc:
            wait = delay * (0.5 + random.random() / 2)
            log.warning("Kafka at %s not reachable (%s); trying again in %.1fs", conn.bootstrap, exc, wait)
        finally:
            await client.close()
        if give_up is not None and loop.time() + wait > give_up:
            return False
        if stop is not None:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                return False
            except TimeoutError:
                pass
        else:
            await asyncio.sleep(wait)
        delay = min(max_s, delay * 2)
