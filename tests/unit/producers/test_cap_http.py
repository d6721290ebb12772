"""The CAP endpoint's door without a broker: whole bodies (Content-Length or chunked) up to MAX_CAP_BYTES,
413 with the reason past it, and parsing off the event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import TYPHOON_ALERT, every_ward_alert, memory_door

from producers import cap_http
from producers.cap_http import make_app
from producers.targets import local_registry
from schemas.cap import MAX_CAP_BYTES
from schemas.settings import Settings


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.actors: list[str | None] = []

    def send(
        self, checked: Any, source: str = "", *, actor: str | None = None, approver: str | None = None
    ) -> dict[str, Any]:
        self.sent.append(checked)
        self.actors.append(actor)
        return {
            "identifier": checked.alert.identifier,
            "lane": checked.plan.lane,
            "zones": len(checked.plan.zones),
            "partition": 0,
            "offset": len(self.sent) - 1,
        }


@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[TestClient[Any, Any], FakeProducer]]:
    producer = FakeProducer()
    app = make_app(memory_door(producer), insecure=True)
    async with TestClient(TestServer(app)) as client:
        yield client, producer


async def chunks(body: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    for i in range(0, len(body), size):
        yield body[i : i + size]
        await asyncio.sleep(0)


def padded(size: int) -> bytes:
    """The typhoon alert padded by an XML comment to exactly ``size`` bytes (still a valid alert)."""
    base = TYPHOON_ALERT.read_bytes()
    filler = size - len(base) - len(b"<!--  -->")
    assert filler > 0
    return base.replace(b"<alert ", b"<!-- " + b"x" * filler + b" --><alert ", 1)


async def test_a_national_alert_is_read_whole_with_a_content_length(endpoint: Any) -> None:
    client, producer = endpoint
    body = every_ward_alert()
    assert 200_000 < len(body) < MAX_CAP_BYTES
    resp = await client.post("/cap", data=body, headers={"Content-Type": "application/cap+xml"})
    reply = await resp.json()
    assert resp.status == 202, reply
    assert reply["zones"] == 3321 and producer.sent[0].raw == body


async def test_a_national_alert_is_read_whole_when_chunked(endpoint: Any) -> None:
    client, producer = endpoint
    body = every_ward_alert()
    resp = await client.post("/cap", data=chunks(body), headers={"Content-Type": "application/cap+xml"})
    reply = await resp.json()
    assert resp.request_info.headers.get("Transfer-Encoding") == "chunked"
    assert resp.status == 202, reply
    assert reply["zones"] == 3321 and producer.sent[0].raw == body


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
async def test_the_limit_is_accepted_and_one_byte_past_it_is_413(endpoint: Any, chunked: bool) -> None:
    client, producer = endpoint
    at_limit = padded(MAX_CAP_BYTES)
    assert len(at_limit) == MAX_CAP_BYTES
    resp = await client.post("/cap", data=chunks(at_limit) if chunked else at_limit)
    assert resp.status == 202, await resp.text()
    resp = await client.post("/cap", data=chunks(at_limit + b" ") if chunked else at_limit + b" ")
    reply = await resp.json()
    assert resp.status == 413 and reply["accepted"] is False
    assert "too large" in reply["reason"] and str(MAX_CAP_BYTES) in reply["reason"]
    assert len(producer.sent) == 1


async def test_a_huge_chunked_body_is_refused_without_reading_it_all(endpoint: Any) -> None:
    client, producer = endpoint
    read = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal read
        while read < 64 * MAX_CAP_BYTES:
            read += 65536
            yield b"<" * 65536

    try:
        resp = await client.post("/cap", data=endless())
        status, reason = resp.status, (await resp.json())["reason"]
    except OSError as exc:  # the server may close before the client has written its next chunk
        pytest.fail(f"no 413 answer: {exc}")
    assert status == 413 and "chunked body passed the limit" in reason
    assert read < 8 * MAX_CAP_BYTES and producer.sent == []


async def test_a_slow_parse_does_not_block_other_requests(
    endpoint: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client, _ = endpoint
    real_check = cap_http.check

    def slow_check(raw: bytes, registry: Any, trust: Any = None) -> Any:
        time.sleep(1.5)  # as long as a 1 MB alert on a busy host
        return real_check(raw, registry, trust)

    monkeypatch.setattr(cap_http, "check", slow_check)
    slow = asyncio.ensure_future(client.post("/cap", data=TYPHOON_ALERT.read_bytes()))
    await asyncio.sleep(0.2)
    started = time.perf_counter()
    health = await client.get("/healthz")
    waited = time.perf_counter() - started
    assert health.status == 200 and not slow.done()
    assert waited < 0.5, f"/healthz waited {waited:.2f}s behind the parse"
    assert (await slow).status == 202
