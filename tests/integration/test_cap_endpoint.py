"""`lantoa alert-server` on the real broker: a national alert (every ward, ~260 kB) is accepted whole,
sent with a Content-Length or chunked, and lands on alerts.cap byte for byte; a body past MAX_CAP_BYTES
is refused 413 with the reason and nothing is produced; a 1 MB alert being checked does not hold up a
concurrent small alert or a health check."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import TYPHOON_ALERT, AlertServer, every_ward_alert

from infra.kafka.tail import TopicTail
from schemas.cap import MAX_CAP_BYTES
from schemas.topics import Topic


@pytest.fixture(scope="module")
def server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertServer]:
    s = AlertServer(kafka_bootstrap, tmp_path_factory.mktemp("cap-endpoint"))
    try:
        yield s
        assert s.alive(), f"the alert-server died: {s.log_tail()}"
    finally:
        s.close()


@pytest.fixture(scope="module")
def alerts(server: AlertServer) -> Iterator[TopicTail]:
    tail = TopicTail(server.settings.kafka, server.settings.topic(Topic.ALERTS_CAP))
    try:
        yield tail
    finally:
        tail.close()


def ident() -> str:
    return f"VN-TEST-{uuid.uuid4().hex[:12]}"


def produced(alerts: TopicTail, identifier: str) -> list[Any]:
    alerts.poll()
    return [r for r in alerts.records if r.key == identifier.encode()]


@pytest.mark.parametrize(
    "chunks",
    [None, [16_384], [1, 1460, 7, 65_536, 100]],
    ids=["content-length", "chunked-16k", "chunked-odd"],
)
def test_a_national_alert_is_accepted_whole(
    server: AlertServer, alerts: TopicTail, chunks: list[int] | None
) -> None:
    identifier = ident()
    body = every_ward_alert(identifier)
    assert 200_000 < len(body) < MAX_CAP_BYTES
    status, reply = server.request("POST", "/cap", body, chunks=chunks)
    assert status == 202, reply
    assert reply["identifier"] == identifier and reply["zones"] == 3321 and reply["lane"] == "emergency"
    records = alerts.wait_for(lambda _: bool(produced(alerts, identifier)), timeout=60, what=identifier)
    [record] = [r for r in records if r.key == identifier.encode()]
    assert record.value == body


@pytest.mark.parametrize("chunks", [None, [65_536]], ids=["content-length", "chunked"])
def test_a_body_past_the_limit_is_413_and_nothing_is_produced(
    server: AlertServer, alerts: TopicTail, chunks: list[int] | None
) -> None:
    identifier = ident()
    body = TYPHOON_ALERT.read_bytes().replace(b"VN-NCHMF-2026-0917-BAO05-01", identifier.encode())
    over = body + b" " * (MAX_CAP_BYTES + 1 - len(body))
    status, reply = server.request("POST", "/cap", over, chunks=chunks)
    assert status == 413 and reply["accepted"] is False
    assert reply["reason"].startswith("CAP alert too large") and str(MAX_CAP_BYTES) in reply["reason"]
    status, reply = server.request(
        "POST", "/cap", over[:MAX_CAP_BYTES], chunks=chunks
    )  # at the limit: accepted
    assert status == 202, reply
    alerts.wait_for(lambda _: bool(produced(alerts, identifier)), timeout=60, what=identifier)
    alerts.settle(1.0)
    assert len(produced(alerts, identifier)) == 1  # the one at the limit, not the one past it


BIG_ALERTS = 5


@pytest.mark.timeout(180)
def test_a_slow_parse_does_not_hold_up_other_requests(server: AlertServer, tmp_path: Path) -> None:
    # ~1 MB each; one takes ~0.35 s to check on a quick run, so several in a row make a window long
    # enough to see whether other requests wait for the checking.
    bigs = [every_ward_alert(ident(), infos=4) for _ in range(BIG_ALERTS)]
    assert all(MAX_CAP_BYTES - 20_000 < len(big) <= MAX_CAP_BYTES for big in bigs)
    done: dict[str, float] = {}

    def post_big() -> None:
        started = time.perf_counter()
        for big in bigs:
            status, reply = server.request("POST", "/cap", big)
            assert status == 202, reply
        done["big"] = (time.perf_counter() - started) / len(bigs)  # per alert

    thread = threading.Thread(target=post_big)
    thread.start()
    time.sleep(0.3)  # the big body is sent and being checked
    health: list[float] = []
    small_status, small_s = 0, 0.0
    while thread.is_alive():
        started = time.perf_counter()
        assert server.request("GET", "/healthz")[0] == 200
        health.append(time.perf_counter() - started)
        if not small_status:
            started = time.perf_counter()
            small_status, reply = server.request(
                "POST",
                "/cap",
                TYPHOON_ALERT.read_bytes().replace(b"VN-NCHMF-2026-0917-BAO05-01", ident().encode()),
            )
            small_s = time.perf_counter() - started
            assert small_status == 202, reply
            small_done_before_big = thread.is_alive()
        time.sleep(0.05)
    thread.join()
    print(
        f"1 MB alert {done['big']:.2f}s; meanwhile a small alert {small_s:.3f}s, /healthz max {max(health):.3f}s "
        f"over {len(health)} requests"
    )
    # under 0.2 s per alert the comparison below means little
    assert done["big"] > 0.2, "the big alerts were checked too fast to tell anything"
    assert small_status == 202 and small_done_before_big, "the small alert waited for the big one"
    assert len(health) >= 3 and max(health) < done["big"] / 3, (max(health), done["big"])
