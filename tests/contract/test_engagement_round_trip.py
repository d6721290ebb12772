"""Emulator webhooks → receiver → triage (pure) → reply command → adapter → emulator, in process.

No broker: the receiver's sink is a list and the ledger is the adapter's own Effect. The broker
path is tests/e2e/test_engagement.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from consumers.delivery.base import Prior
from consumers.delivery.errors import OutcomeUnknown, PermanentDeliveryError
from consumers.fanpage.adapter import FanpageAdapter
from consumers.zalo.adapter import ZaloAdapter
from consumers.zalo.tokens import TokenPair, TokenStore
from infra.local.emulators.graph import GraphEmulator
from infra.local.emulators.zalo import ZaloEmulator
from producers.webhooks import WebhookSecrets, make_app
from schemas.models import Action, Target
from schemas.secrets import SecretFile, write_secret
from schemas.settings import Settings
from schemas.topics import Channel
from streams.engagement import triage as eng

PAGE, GROUP, TOKEN = "100000000000002", "g-000000000000000002", "page-token-2"
APP_SECRET, VERIFY = "graph-app-secret", "verify-token"
FANPAGE = Target("fanpage:ha-noi", Channel.FANPAGE, "Hà Nội", config={"page_id": PAGE})
ZALO = Target("zalo:nhom-ha-noi", Channel.ZALO, "Nhóm", config={"group_id": GROUP})
TARGETS = {t.id: t for t in (FANPAGE, ZALO)}


class Sink:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.records.append(orjson.loads(value))


class Rig:
    def __init__(
        self,
        graph: GraphEmulator,
        zalo: ZaloEmulator,
        fanpage: FanpageAdapter,
        zalo_adapter: ZaloAdapter,
        sink: Sink,
        url: str,
    ) -> None:
        self.graph, self.zalo, self.fanpage, self.zalo_adapter, self.sink, self.url = (
            graph,
            zalo,
            fanpage,
            zalo_adapter,
            sink,
            url,
        )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    graph = GraphEmulator(pages={PAGE: TOKEN}, app_secret=APP_SECRET)
    zalo = ZaloEmulator(
        groups=[GROUP], access_token="acc-0", refresh_token="ref-0", secret_key="zalo-app-secret"
    )
    graph_url, zalo_url = await graph.start(), await zalo.start()
    sink = Sink()
    app = make_app(Settings(), sink, WebhookSecrets(APP_SECRET, VERIFY, zalo.app_id, "zalo-oa-secret"))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    write_secret(tmp_path / "tokens.json", {PAGE: TOKEN})
    write_secret(tmp_path / "app.json", {"app_secret": APP_SECRET})
    fanpage = FanpageAdapter(
        graph_url,
        "v21.0",
        SecretFile(tmp_path / "tokens.json"),
        TARGETS.get,
        app_secret=SecretFile(tmp_path / "app.json"),
        timeout_s=2.0,
    )
    write_secret(tmp_path / "zalo.json", {"secret_key": "zalo-app-secret"})
    store = TokenStore(tmp_path / "zalo-tokens.json")
    store.save(TokenPair("acc-0", "ref-0", 4102444800.0))
    zalo_adapter = ZaloAdapter(
        zalo_url, zalo_url, zalo.app_id, SecretFile(tmp_path / "zalo.json"), store, TARGETS.get, timeout_s=2.0
    )
    await fanpage.start()
    await zalo_adapter.start()
    yield Rig(graph, zalo, fanpage, zalo_adapter, sink, url)
    await fanpage.close()
    await zalo_adapter.close()
    await runner.cleanup()
    await graph.stop()
    await zalo.stop()


def triage(event: dict[str, Any], index: eng.LiveIndex) -> dict[str, Any]:
    def pages(page_id: str) -> list[str]:
        return [FANPAGE.id] if page_id == PAGE else []

    def groups(group_id: str) -> list[str]:
        return [ZALO.id] if group_id == GROUP else []

    record = eng.on_inbound(
        None, event, eng.resolve(event, index, pages=pages, groups=groups), "2026-11-26T03:00:00Z"
    )
    assert record is not None
    return record


async def test_graph_comment_to_reply(rig: Rig) -> None:
    # The article's post, as the fanpage adapter made it, and its ledger entry.
    post = rig.graph.state.create_feed_post(PAGE, {"message": "Tin: chuyển đổi số\n\nMã tin: LT-1"})
    index = eng.LiveIndex()
    index.apply(
        Channel.FANPAGE,
        f"live|urn:a|{FANPAGE.id}",
        {
            "kind": "live",
            "uri": "urn:a",
            "version": 1,
            "target": FANPAGE.id,
            "external_id": post["id"],
            "retracted": False,
            "at": "2026-11-26T01:00:00Z",
        },
    )
    sub = orjson.loads(
        (
            await _control(
                rig.graph,
                "/_control/webhooks/subscribe",
                {"url": rig.url + "/webhooks/facebook", "verify_token": VERIFY},
            )
        )["body"]
    )
    assert sub["subscribed"]
    bad = await _control(
        rig.graph,
        "/_control/webhooks/subscribe",
        {"url": rig.url + "/webhooks/facebook", "verify_token": "x"},
    )
    assert bad["status"] == 409

    forged = await _control_json(
        rig.graph,
        "/_control/webhooks/comment",
        {"post_id": post["id"], "message": "Làm ở đâu?", "signature": "bad"},
    )
    missing = await _control_json(
        rig.graph,
        "/_control/webhooks/comment",
        {"post_id": post["id"], "message": "Làm ở đâu?", "signature": "missing"},
    )
    assert (forged["status"], missing["status"], rig.sink.records) == (403, 403, [])

    sent = await _control_json(
        rig.graph,
        "/_control/webhooks/comment",
        {"post_id": post["id"], "message": "Thủ tục làm ở đâu ạ?", "from": {"id": "6001", "name": "An"}},
    )
    assert sent["status"] == 200 and sent["elapsed_s"] < 2.0
    replayed = await _control_json(rig.graph, "/_control/webhooks/replay", {})
    assert replayed["status"] == 200 and len(rig.sink.records) == 1

    record = triage(rig.sink.records[0], index)
    assert (record["state"], record["article_uri"], record["target"]) == ("open", "urn:a", FANPAGE.id)
    command = eng.reply_command(record, "Tại bộ phận một cửa UBND phường.", 1, "2026-11-26T03:01:00Z")
    effect = await rig.fanpage.deliver(command, Prior())
    assert effect.outcome == "delivered" and effect.detail["question_id"] == record["id"]
    [reply] = rig.graph.replies(sent["comment_id"])
    assert (reply["id"], reply["message"], reply["from"]["id"]) == (
        effect.external_id,
        "Tại bộ phận một cửa UBND phường.",
        PAGE,
    )
    # Graph echoes the page's own reply to the subscriber; the receiver ignores it.
    await rig.graph.comments.echoes_delivered()
    assert len(rig.sink.records) == 1

    # After an unknown outcome the reply is found, not sent again.
    found = await rig.fanpage.reconcile(command, Prior(unknown_command_id=command.key.command_id()))
    assert found is not None and found.external_id == effect.external_id
    assert len(rig.graph.replies(sent["comment_id"])) == 1

    # A reply to a comment its author deleted cannot be delivered: permanent, says why.
    await _control_json(
        rig.graph, "/_control/webhooks/comment", {"verb": "remove", "comment_id": sent["comment_id"]}
    )
    assert rig.sink.records[-1]["kind"] == "removed"
    with pytest.raises(PermanentDeliveryError):
        await rig.fanpage.deliver(eng.reply_command(record, "Bổ sung.", 2, "2026-11-26T03:02:00Z"), Prior())


async def test_graph_reply_lost_on_the_way_back_is_reconciled(rig: Rig) -> None:
    post = rig.graph.state.create_feed_post(PAGE, {"message": "Tin khác"})
    comment = rig.graph.add_comment(post["id"], "Bao giờ?", {"id": "6002"})
    record = {
        **triage(
            {
                "schema_version": 1,
                "platform": "fanpage",
                "message_id": comment["id"],
                "text": "Bao giờ?",
                "post_id": post["id"],
                "page_id": PAGE,
                "received_at": "2026-11-26T03:00:00Z",
            },
            eng.LiveIndex(),
        )
    }
    command = eng.reply_command(record, "Tuần sau.", 1, "2026-11-26T03:01:00Z")
    rig.graph.faults.add("drop_after_effect", path=r"/comments$")
    with pytest.raises(OutcomeUnknown):
        await rig.fanpage.deliver(command, Prior())
    found = await rig.fanpage.reconcile(command, Prior(unknown_command_id=command.key.command_id()))
    assert found is not None and len(rig.graph.replies(comment["id"])) == 1


async def test_zalo_group_message_to_reply(rig: Rig) -> None:
    index = eng.LiveIndex()
    index.apply(
        Channel.ZALO,
        f"live|urn:a|{ZALO.id}",
        {
            "kind": "live",
            "uri": "urn:a",
            "version": 1,
            "target": ZALO.id,
            "external_id": "m-art",
            "retracted": False,
            "at": "2026-01-01T00:00:00Z",
            "detail": {"message_ids": ["m-art"], "title": "Tin A"},
        },
    )
    await _control_json(
        rig.zalo,
        "/_control/webhooks/subscribe",
        {"url": rig.url + "/webhooks/zalo", "oa_secret_key": "zalo-oa-secret"},
    )
    forged = await _control_json(
        rig.zalo, "/_control/webhooks/user_message", {"group_id": GROUP, "text": "Ở đâu?", "signature": "bad"}
    )
    stale = await _control_json(
        rig.zalo,
        "/_control/webhooks/user_message",
        {"group_id": GROUP, "text": "Ở đâu?", "timestamp_ms": 1_700_000_000_000},
    )
    assert (forged["status"], stale["status"], rig.sink.records) == (401, 401, [])
    sent = await _control_json(
        rig.zalo,
        "/_control/webhooks/user_message",
        {"group_id": GROUP, "text": "Bao giờ thì phường mình được hỗ trợ", "quote_msg_id": "m-art"},
    )
    assert sent["status"] == 200 and sent["elapsed_s"] < 2.0
    assert (await _control_json(rig.zalo, "/_control/webhooks/replay", {}))["status"] == 200
    [event] = rig.sink.records
    record = triage(event, index)
    assert (record["state"], record["article_uri"], record["link"], record["article_title"]) == (
        "open",
        "urn:a",
        "quote",
        "Tin A",
    )
    command = eng.reply_command(record, "Thứ Bảy này.", 1, "2026-11-26T03:01:00Z")
    assert command.key.action is Action.REPLY
    effect = await rig.zalo_adapter.deliver(command, Prior())
    [message] = rig.zalo.messages(GROUP)
    assert message.message_id == effect.external_id and message.text == command.payload["text"]
    assert message.text.startswith("Trả lời câu hỏi «Bao giờ thì phường mình được hỗ trợ»")
    found = await rig.zalo_adapter.reconcile(command, Prior(unknown_command_id="x"))
    assert found is not None and found.external_id == effect.external_id


async def test_zalo_message_to_the_oa_is_answered_to_the_follower(rig: Rig) -> None:
    rig.zalo.set_follower("u-77")
    await _control_json(
        rig.zalo,
        "/_control/webhooks/subscribe",
        {"url": rig.url + "/webhooks/zalo", "oa_secret_key": "zalo-oa-secret"},
    )
    sent = await _control_json(
        rig.zalo, "/_control/webhooks/user_message", {"user_id": "u-77", "text": "Cho tôi hỏi lịch tiếp dân"}
    )
    assert sent["status"] == 200
    record = triage(rig.sink.records[0], eng.LiveIndex())
    assert (record["state"], record["target"], record["user_id"]) == ("open", "zalo-user:u-77", "u-77")
    effect = await rig.zalo_adapter.deliver(
        eng.reply_command(record, "Sáng thứ Năm hằng tuần.", 1, "2026-11-26T03:01:00Z"), Prior()
    )
    [message] = rig.zalo.messages("u-77", kind="cs")
    assert message.message_id == effect.external_id and message.text.endswith("Sáng thứ Năm hằng tuần.")


async def test_malformed_signatures_and_untimed_entries_from_the_emulators_are_refused(rig: Rig) -> None:
    post = rig.graph.state.create_feed_post(PAGE, {"message": "Tin: lịch tiêm chủng"})
    await _control_json(
        rig.graph,
        "/_control/webhooks/subscribe",
        {"url": rig.url + "/webhooks/facebook", "verify_token": VERIFY},
    )
    malformed = await _control_json(
        rig.graph,
        "/_control/webhooks/comment",
        {"post_id": post["id"], "message": "Ở đâu?", "signature": "malformed"},
    )
    untimed = await _control_json(
        rig.graph, "/_control/webhooks/comment", {"post_id": post["id"], "message": "Ở đâu?", "untimed": True}
    )
    assert (malformed["status"], untimed["status"]) == (401, 200)
    assert orjson.loads(untimed["body"])["accepted"] == 0
    await _control_json(
        rig.zalo,
        "/_control/webhooks/subscribe",
        {"url": rig.url + "/webhooks/zalo", "oa_secret_key": "zalo-oa-secret"},
    )
    zalo = await _control_json(
        rig.zalo,
        "/_control/webhooks/user_message",
        {"group_id": GROUP, "text": "Ở đâu?", "signature": "malformed"},
    )
    assert zalo["status"] == 401 and rig.sink.records == []


async def _control(emulator: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.post(emulator.base_url + path, json=body) as reply:
            return {"status": reply.status, "body": await reply.text()}


async def _control_json(emulator: Any, path: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await _control(emulator, path, body)
    assert answer["status"] == 200, answer
    result: dict[str, Any] = orjson.loads(answer["body"])
    return result
