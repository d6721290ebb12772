"""Webhook receivers: handshake, signatures, replay window, dedupe, fast acknowledgement."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from producers.webhook_seen import SeenEvents
from producers.webhooks import ReceiverConfig, WebhookSecrets, make_app
from schemas import contracts
from schemas.settings import Settings

APP_SECRET = "graph-app-secret"
VERIFY = "verify-me"
APP_ID = "zalo-app-1"
OA_SECRET = "zalo-oa-secret"
PAGE = "100000000000002"


class Sink:
    """An EventSink that remembers what it was given; ``delay_s`` or ``fail`` make Kafka slow or down."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, dict[str, Any]]] = []
        self.delay_s = 0.0
        self.fail = False

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail:
            raise ConnectionError("broker down")
        self.sent.append((topic, key, orjson.loads(value)))


@pytest.fixture
async def client_sink() -> AsyncIterator[tuple[TestClient[Any, Any], Sink]]:
    sink = Sink()
    settings = Settings(topic_prefix="t.")
    app = make_app(
        settings,
        sink,
        WebhookSecrets(APP_SECRET, VERIFY, APP_ID, OA_SECRET),
        config=ReceiverConfig(zalo_ack_budget_s=0.3, graph_ack_budget_s=0.3),
    )
    async with TestClient(TestServer(app)) as client:
        yield client, sink


def graph_body(
    comment_id: str = "7_1",
    verb: str = "add",
    sender: str = "6001",
    message: str = "Làm ở đâu?",
    at: float | None = None,
) -> bytes:
    value = {
        "item": "comment",
        "verb": verb,
        "comment_id": comment_id,
        "post_id": f"{PAGE}_7",
        "parent_id": f"{PAGE}_7",
        "created_time": int(at or time.time()),
        "from": {"id": sender, "name": "Nguyễn Văn An"},
        "message": message,
    }
    return orjson.dumps(
        {
            "object": "page",
            "entry": [
                {"id": PAGE, "time": int(at or time.time()), "changes": [{"field": "feed", "value": value}]}
            ],
        }
    )


def graph_sig(body: bytes, secret: str = APP_SECRET) -> dict[str, str]:
    return {
        "X-Hub-Signature-256": "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
        "Content-Type": "application/json",
    }


def zalo_body(
    msg_id: str = "m1",
    text: str = "Bao giờ có lịch?",
    group: str | None = "g-2",
    ts_ms: int | None = None,
    event: str | None = None,
) -> tuple[bytes, str]:
    ts = str(ts_ms if ts_ms is not None else int(time.time() * 1000))
    body: dict[str, Any] = {
        "app_id": APP_ID,
        "sender": {"id": "8421"},
        "message": {"text": text, "msg_id": msg_id},
        "timestamp": ts,
    }
    if group:
        body |= {"event_name": event or "user_send_group_text", "recipient": {"id": group}, "group_id": group}
    else:
        body |= {"event_name": event or "user_send_text", "recipient": {"id": "oa-1"}}
    return orjson.dumps(body), ts


def zalo_sig(body: bytes, ts: str, secret: str = OA_SECRET, prefix: str = "mac=") -> dict[str, str]:
    digest = hashlib.sha256(APP_ID.encode() + body + ts.encode() + secret.encode()).hexdigest()
    return {"X-ZEvent-Signature": prefix + digest, "Content-Type": "application/json"}


# -- Graph --------------------------------------------------------------------------------------


async def test_graph_verification_handshake(client_sink: tuple[TestClient[Any, Any], Sink]) -> None:
    client, _ = client_sink
    ok = await client.get(
        "/webhooks/facebook",
        params={"hub.mode": "subscribe", "hub.verify_token": VERIFY, "hub.challenge": "1158201444"},
    )
    assert (ok.status, await ok.text()) == (200, "1158201444")
    for params in (
        {"hub.mode": "subscribe", "hub.verify_token": "wrong", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": VERIFY, "hub.challenge": "1"},
        {},
    ):
        refused = await client.get("/webhooks/facebook", params=params)
        assert refused.status == 403


async def test_a_signed_comment_is_produced_once_keyed_by_its_id(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    body = graph_body()
    started = time.monotonic()
    reply = await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))
    assert reply.status == 200 and time.monotonic() - started < 1.0
    assert (await reply.json())["accepted"] == 1
    [(topic, key, record)] = sink.sent
    assert (topic, key) == ("t.engagement.inbound", b"fb:7_1")
    contracts.check("engagement", record)
    assert (
        record["platform"],
        record["kind"],
        record["post_id"],
        record["page_id"],
        record["sender_name"],
    ) == ("fanpage", "message", f"{PAGE}_7", PAGE, "Nguyễn Văn An")
    # Facebook's retry, or an attacker replaying the captured request: acknowledged, not produced.
    again = await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))
    assert again.status == 200 and (await again.json())["duplicates"] == 1
    assert len(sink.sent) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-Hub-Signature-256": "sha256=" + "0" * 64},
        "other-secret",
        "tampered",
    ],
)
async def test_forged_or_unsigned_comments_are_refused_and_nothing_is_produced(
    client_sink: tuple[TestClient[Any, Any], Sink], headers: Any
) -> None:
    client, sink = client_sink
    body = graph_body()
    if headers == "other-secret":
        headers = graph_sig(body, "not-the-secret")
    elif headers == "tampered":
        headers = graph_sig(body)
        body = body.replace("Làm ở đâu?".encode(), "Chuyển khoản vào đây".encode())
    reply = await client.post("/webhooks/facebook", data=body, headers=headers)
    assert reply.status == 403
    assert sink.sent == []


async def test_the_pages_own_comments_and_other_changes_are_ignored(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    echo = graph_body("7_2", sender=PAGE)  # our reply, echoed back by Graph
    reaction = orjson.dumps(
        {
            "object": "page",
            "entry": [
                {
                    "id": PAGE,
                    "time": int(time.time()),
                    "changes": [
                        {
                            "field": "feed",
                            "value": {"item": "reaction", "verb": "add", "post_id": f"{PAGE}_7"},
                        }
                    ],
                }
            ],
        }
    )
    for body in (echo, reaction):
        reply = await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))
        assert reply.status == 200
    assert sink.sent == []


async def test_edits_and_deletions_follow_the_comment(client_sink: tuple[TestClient[Any, Any], Sink]) -> None:
    client, sink = client_sink
    for body in (
        graph_body(),
        graph_body(verb="edited", message="Làm ở đâu vậy?"),
        graph_body(verb="remove"),
    ):
        assert (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).status == 200
    assert [(k, r["kind"]) for _, k, r in sink.sent] == [
        (b"fb:7_1", "message"),
        (b"fb:7_1", "edited"),
        (b"fb:7_1", "removed"),
    ]


async def test_a_graph_delivery_older_than_facebooks_retries_is_dropped(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    body = graph_body("7_9", at=time.time() - 3 * 86400)
    assert (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).status == 200
    assert sink.sent == []


# -- Zalo ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["mac=", ""])
async def test_a_signed_group_message_is_produced(
    client_sink: tuple[TestClient[Any, Any], Sink], prefix: str
) -> None:
    client, sink = client_sink
    body, ts = zalo_body()
    started = time.monotonic()
    reply = await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts, prefix=prefix))
    elapsed = time.monotonic() - started
    assert reply.status == 200 and elapsed < 2.0
    [(_, key, record)] = sink.sent
    assert key == b"zalo:m1"
    contracts.check("engagement", record)
    assert (record["group_id"], record["sender_id"], record["event"]) == (
        "g-2",
        "8421",
        "user_send_group_text",
    )


async def test_a_message_to_the_oa_keeps_its_sender_for_the_answer(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    body, ts = zalo_body("m5", group=None)
    assert (await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts))).status == 200
    [(_, _, record)] = sink.sent
    assert (record["group_id"], record["sender_id"], record["oa_id"]) == (None, "8421", "oa-1")


@pytest.mark.parametrize("case", ["missing", "bad", "other-secret", "tampered", "other-app"])
async def test_forged_zalo_events_get_401_and_nothing_is_produced(
    client_sink: tuple[TestClient[Any, Any], Sink], case: str
) -> None:
    client, sink = client_sink
    body, ts = zalo_body()
    headers = zalo_sig(body, ts)
    if case == "missing":
        headers = {"Content-Type": "application/json"}
    elif case == "bad":
        headers["X-ZEvent-Signature"] = "mac=" + "f" * 64
    elif case == "other-secret":
        headers = zalo_sig(body, ts, "guessed")
    elif case == "tampered":
        body = body.replace(b"g-2", b"g-9")
    elif case == "other-app":
        body = body.replace(APP_ID.encode(), b"zalo-app-2")
        headers = zalo_sig(body, ts)
    reply = await client.post("/webhooks/zalo", data=body, headers=headers)
    assert reply.status == 401
    assert sink.sent == []


async def test_replayed_zalo_events_are_refused(client_sink: tuple[TestClient[Any, Any], Sink]) -> None:
    client, sink = client_sink
    body, ts = zalo_body()
    assert (await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts))).status == 200
    # the same request again, within the window: a duplicate, acknowledged, not produced
    again = await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts))
    assert again.status == 200 and (await again.json())["duplicates"] == 1
    # a captured request replayed after the window (or a timestamp from the future): refused
    for ts_ms in (int((time.time() - 600) * 1000), int((time.time() + 600) * 1000)):
        old, old_ts = zalo_body("m2", ts_ms=ts_ms)
        refused = await client.post("/webhooks/zalo", data=old, headers=zalo_sig(old, old_ts))
        assert refused.status == 401
    assert len(sink.sent) == 1


async def test_other_zalo_events_are_acknowledged_and_ignored(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    body, ts = zalo_body(event="follow")
    assert (await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts))).status == 200
    assert sink.sent == []


# -- acknowledgement and dedupe under a slow broker ------------------------------------------------


async def test_a_slow_broker_gets_503_within_the_budget_and_the_retry_is_a_duplicate(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    sink.delay_s = 0.6  # over the 0.3 s budget of this test's receiver
    body, ts = zalo_body("m7")
    started = time.monotonic()
    reply = await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts))
    assert reply.status == 503 and time.monotonic() - started < 0.6
    await asyncio.sleep(0.5)  # the send went on and landed
    assert len(sink.sent) == 1
    retry = await client.post("/webhooks/zalo", data=body, headers=zalo_sig(body, ts))
    assert retry.status == 200 and (await retry.json())["duplicates"] == 1
    assert len(sink.sent) == 1


async def test_concurrent_deliveries_of_one_comment_produce_it_once(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    sink.delay_s = 0.1
    body = graph_body("7_3")
    replies = await asyncio.gather(
        *(client.post("/webhooks/facebook", data=body, headers=graph_sig(body)) for _ in range(5))
    )
    assert [r.status for r in replies] == [200] * 5
    assert len(sink.sent) == 1


async def test_a_broker_that_refuses_gets_503_and_the_retry_is_produced(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    sink.fail = True
    body = graph_body("7_4")
    assert (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).status == 503
    sink.fail = False
    assert (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).status == 200
    assert len(sink.sent) == 1


async def test_a_platform_without_secrets_is_not_served() -> None:
    app = make_app(Settings(), Sink(), WebhookSecrets())
    async with TestClient(TestServer(app)) as client:
        body = graph_body()
        assert (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).status == 503
        assert (
            await client.get(
                "/webhooks/facebook",
                params={"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"},
            )
        ).status == 403
        zbody, ts = zalo_body()
        assert (await client.post("/webhooks/zalo", data=zbody, headers=zalo_sig(zbody, ts))).status == 503
    shown = repr(WebhookSecrets(APP_SECRET, VERIFY, APP_ID, OA_SECRET))
    assert APP_SECRET not in shown and VERIFY not in shown and OA_SECRET not in shown


@pytest.mark.parametrize(
    "created",
    [
        b"100000000000000000000",
        b"1e300",
        b"-1e300",
        b'"9999-12-31T23:00:00-1400"',
        b'"0001-01-01T00:00:00+1400"',
        b'"yesterday"',
        b"true",
    ],
)
async def test_a_creation_time_we_cannot_hold_is_dropped_and_the_comment_kept(
    client_sink: tuple[TestClient[Any, Any], Sink], created: bytes
) -> None:
    # Issue 12: such a time overflowed converting to UTC (a 500 on every Graph retry) or, passed on,
    # made the triage die on the record. The comment still counts; its received time stands in.
    client, sink = client_sink
    body = graph_body(comment_id="7_9").replace(
        b'"created_time":', b'"created_time":' + created + b',"x":', 1
    )
    reply = await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))
    assert reply.status == 200 and (await reply.json())["accepted"] == 1
    [(_, _, record)] = sink.sent
    assert record["created_at"] is None
    contracts.check("engagement", record)


async def test_a_creation_time_at_the_bound_is_kept(client_sink: tuple[TestClient[Any, Any], Sink]) -> None:
    client, sink = client_sink
    body = graph_body(comment_id="7_10").replace(
        b'"created_time":', b'"created_time":"2199-12-31T23:00:00-1400","x":', 1
    )
    reply = await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))
    assert reply.status == 200
    assert sink.sent[0][2]["created_at"].startswith("2200-01-01T13:00:00")


# -- malformed headers (issue 14): 401, never a 500 with a traceback -------------------------------


async def raw_post(client: TestClient[Any, Any], path: str, body: bytes, header: bytes) -> int:
    """POST with a header line sent byte for byte (aiohttp's client only sends valid UTF-8)."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"POST "
        + path.encode()
        + b" HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        + header
        + b"\r\nContent-Length: "
        + str(len(body)).encode()
        + b"\r\nConnection: close\r\n\r\n"
        + body
    )
    await writer.drain()
    status_line = await reader.readline()
    writer.close()
    return int(status_line.split()[1])


def no_traceback(caplog: pytest.LogCaptureFixture) -> bool:
    return not any(r.exc_info or r.levelname in ("ERROR", "CRITICAL") for r in caplog.records)


@pytest.mark.parametrize(
    "value",
    [
        b"sha1=abc",
        b"sha256=" + b"0" * 63,
        b"sha256=" + b"g" * 64,
        b"sha256=" + b"0" * 65,
        "sha256=é".encode() + b"0" * 63,
        b"sha256=\xff\xfe" + b"0" * 62,
        b"\x80\x81\x82",
    ],
)
async def test_a_malformed_graph_signature_is_401_without_a_traceback(
    client_sink: tuple[TestClient[Any, Any], Sink], caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    client, sink = client_sink
    body = graph_body("7_20")
    assert await raw_post(client, "/webhooks/facebook", body, b"X-Hub-Signature-256: " + value) == 401
    assert sink.sent == [] and no_traceback(caplog)
    # the same body, well signed, still goes through: nothing was remembered for it
    assert (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).status == 200


@pytest.mark.parametrize(
    "value",
    [
        b"mac=abc",
        b"mac=" + b"0" * 63,
        b"mac=\xff" + b"0" * 63,
        b"\xc3\x28" * 32,
        "mac=é".encode() + b"0" * 63,
    ],
)
async def test_a_malformed_zalo_signature_is_401_without_a_traceback(
    client_sink: tuple[TestClient[Any, Any], Sink], caplog: pytest.LogCaptureFixture, value: bytes
) -> None:
    client, sink = client_sink
    body, _ = zalo_body("m20")
    assert await raw_post(client, "/webhooks/zalo", body, b"X-ZEvent-Signature: " + value) == 401
    assert sink.sent == [] and no_traceback(caplog)


async def test_a_verify_token_that_is_not_utf8_is_refused_not_an_error(
    client_sink: tuple[TestClient[Any, Any], Sink], caplog: pytest.LogCaptureFixture
) -> None:
    client, _ = client_sink
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        b"GET /webhooks/facebook?hub.mode=subscribe&hub.verify_token=%FF%FE&hub.challenge=1 HTTP/1.1\r\n"
        b"Host: x\r\nConnection: close\r\n\r\n"
    )
    await writer.drain()
    status = int((await reader.readline()).split()[1])
    writer.close()
    assert status == 403 and no_traceback(caplog)


# -- entries without a time, and replay protection that survives a restart (issue 14) -------------


@pytest.mark.parametrize("at", [None, "yesterday", True, [1], "future", "old"])
async def test_a_graph_entry_without_a_usable_time_is_not_produced(
    client_sink: tuple[TestClient[Any, Any], Sink], at: Any
) -> None:
    client, sink = client_sink
    doc = orjson.loads(graph_body("7_30"))
    if at is None:
        del doc["entry"][0]["time"]
    elif at == "future":  # further ahead than the replay window: it would outlive the replay store
        doc["entry"][0]["time"] = int(time.time() + 3600)
    elif at == "old":  # past Graph's retries: the store no longer remembers such entries
        doc["entry"][0]["time"] = int(time.time() - 49 * 3600)
    else:
        doc["entry"][0]["time"] = at
    body = orjson.dumps(doc)
    reply = await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))
    assert reply.status == 200 and (await reply.json())["accepted"] == 0
    assert sink.sent == []


async def test_a_graph_entry_at_the_edges_of_its_accepted_age_is_produced(
    client_sink: tuple[TestClient[Any, Any], Sink],
) -> None:
    client, sink = client_sink
    for comment, at in (
        ("7_31", time.time() - 47.9 * 3600),
        ("7_32", time.time() + 290),
        ("7_33", time.time() * 1000),
    ):
        body = graph_body(comment, at=at)
        assert (await (await client.post("/webhooks/facebook", data=body, headers=graph_sig(body))).json())[
            "accepted"
        ] == 1
    assert len(sink.sent) == 3


def receiver(sink: Sink, seen: SeenEvents, clock: Any = time.time) -> TestClient[Any, Any]:
    app = make_app(
        Settings(topic_prefix="t."),
        sink,
        WebhookSecrets(APP_SECRET, VERIFY, APP_ID, OA_SECRET),
        config=ReceiverConfig(zalo_ack_budget_s=0.3, graph_ack_budget_s=0.3),
        seen=seen,
        clock=clock,
    )
    return TestClient(TestServer(app))


async def test_a_captured_body_is_refused_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "webhooks" / "seen.jsonl"
    graph = graph_body("7_40")
    zalo, ts = zalo_body("m40")
    first = Sink()
    async with receiver(first, SeenEvents(path, 1000, time.time)) as client:
        assert (await client.post("/webhooks/facebook", data=graph, headers=graph_sig(graph))).status == 200
        assert (await client.post("/webhooks/zalo", data=zalo, headers=zalo_sig(zalo, ts))).status == 200
    assert len(first.sent) == 2
    # The process restarts (the store is closed with the app, its lock released); the attacker
    # replays both captured requests byte for byte.
    again = Sink()
    async with receiver(again, SeenEvents(path, 1000, time.time)) as client:
        graph_reply = await client.post("/webhooks/facebook", data=graph, headers=graph_sig(graph))
        zalo_reply = await client.post("/webhooks/zalo", data=zalo, headers=zalo_sig(zalo, ts))
        assert (graph_reply.status, (await graph_reply.json())["duplicates"]) == (200, 1)
        assert (zalo_reply.status, (await zalo_reply.json())["duplicates"]) == (200, 1)
    assert again.sent == []


async def test_without_the_store_a_restart_would_accept_the_replay(tmp_path: Path) -> None:
    # The counter-case: the protection above comes from the file, not from anything else.
    graph = graph_body("7_41")
    for _ in range(2):
        sink = Sink()
        async with receiver(sink, SeenEvents(None, 1000, time.time)) as client:
            assert (
                await client.post("/webhooks/facebook", data=graph, headers=graph_sig(graph))
            ).status == 200
        assert len(sink.sent) == 1
