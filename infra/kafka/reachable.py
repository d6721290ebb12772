"""Wait for the Kafka cluster at start, instead of exiting on the first refused bootstrap.

A worker started while the broker restarts (a rolling upgrade, the fault drill) used to fail its
bootstrap and exit 70 for the supervisor to restart it; it now waits, with a jittered backoff and a
log line per attempt, until the cluster answers or it is told to stop.

A cluster that answers but refuses the configuration (an untrusted certificate, wrong SASL
credentials or mechanism, or a protocol the listener does not speak, seen ``MISMATCH_AFTER``
times in a row) is not waited for: :class:`KafkaAccessError` is raised at once, before anything is
consumed, and the bootstraps exit ``EXIT_CONFIG`` with its one-line message.
"""

from __future__ import annotations

import asyncio
import logging
import random

from infra.kafka import clients
from infra.kafka.clients import MISMATCH_AFTER, KafkaAccessError, ProbeResult
from schemas.settings import KafkaConnection

log = logging.getLogger(__name__)

# Exit code of a process whose configuration cannot work (sysexits EX_CONFIG); a supervisor
# restarting it will not help, unlike EXIT_CRASH (70).
EXIT_CONFIG = 78


async def wait_for_kafka(
    conn: KafkaConnection,
    stop: asyncio.Event | None = None,
    *,
    client_id: str = "lantoa-probe",
    first_s: float = 0.5,
    max_s: float = 10.0,
    deadline_s: float | None = None,
) -> bool:
    """True once a bootstrap succeeds; False if ``stop`` is set (or ``deadline_s`` passes) first.

    Raises KafkaAccessError when the cluster refuses the certificate, the credentials or the
    mechanism, or drops ``MISMATCH_AFTER`` handshakes in a row; a refused or timed-out connection
    is retried with backoff (and resets that count). Nothing has been consumed yet: no offset moves.
    """
    loop = asyncio.get_running_loop()
    give_up = None if deadline_s is None else loop.time() + deadline_s
    delay = first_s
    mismatches = 0
    while True:
        found = await clients.probe(conn, client_id=client_id)
        if found.result is ProbeResult.OK:
            return True
        mismatches = mismatches + 1 if found.result is ProbeResult.MISMATCH else 0
        if mismatches >= MISMATCH_AFTER:
            raise KafkaAccessError(
                clients.mismatch_message(conn, found.detail.split(": ", 1)[0], found.detail)
            )
        wait = delay * (0.5 + random.random() / 2)
        log.warning(
            "Kafka at %s not reachable (%s); trying again in %.1fs", conn.bootstrap, found.detail, wait
        )
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


def ensure_kafka(conn: KafkaConnection, *, client_id: str = "lantoa-probe") -> None:
    """``wait_for_kafka`` for a bootstrap that has no event loop yet: waits while the cluster is
    unreachable (SIGTERM then ends the process as usual: nothing was consumed), raises
    KafkaAccessError when it refuses this configuration."""
    asyncio.run(wait_for_kafka(conn, client_id=client_id))
