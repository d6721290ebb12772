"""wait_for_kafka: retries a refused bootstrap, and gives up when told to stop or at its deadline."""

from __future__ import annotations

import asyncio
import socket

from infra.kafka.reachable import wait_for_kafka
from schemas.settings import KafkaConnection


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_gives_up_at_the_deadline_after_retrying(caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level("WARNING", logger="infra.kafka.reachable")
    ok = await wait_for_kafka(
        KafkaConnection(f"127.0.0.1:{closed_port()}"), first_s=0.05, max_s=0.1, deadline_s=1.0
    )
    assert ok is False
    assert sum("not reachable" in r.getMessage() for r in caplog.records) >= 2


async def test_stops_waiting_when_asked() -> None:
    stop = asyncio.Event()
    waiting = asyncio.create_task(
        wait_for_kafka(KafkaConnection(f"127.0.0.1:{closed_port()}"), stop, first_s=5.0)
    )
    await asyncio.sleep(0.3)
    stop.set()
    assert await asyncio.wait_for(waiting, 5) is False
