"""Contract tests of the Zalo OA Open API v3 emulator, over real HTTP on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from infra.local.emulators.common import ManualClock
from infra.local.emulators.zalo import ZaloEmulator

APP_ID, SECRET = "app-1", "secret-1"
ACCESS, REFRESH = "access-0", "refresh-0"
GROUP, FOLLOWER = "g-1", "u-follower"
GROUP_MESSAGE = "/v3.0/oa/group/message"
CS_MESSAGE = "/v3.0/oa/message/cs"
TOKEN_URL = "/v4/oa/access_token"
# 2026-11-26 10:00 in Vietnam (UTC+7)
DAYTIME = 1_795_662_000.0


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(DAYTIME)


@pytest.fixture
async def zalo(clock: ManualClock) -> AsyncIterator[ZaloEmulator]:
    emulator = ZaloEmulator(
        app_id=APP_ID,
        secret_key=SECRET,
        access_token=ACCESS,
        refresh_token=REFRESH,
        groups={GROUP: "active", "g-off": "disabled", "g-out": "not_member"},
        followers=[FOLLOWER],
        clock=clock,
        seed=3,
    )
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def http(zalo: ZaloEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=zalo.base_url) as session:
        yield session


async def send(
    http: aiohttp.ClientSession, body: Any, path: str = GROUP_MESSAGE, token: str | None = ACCESS
) -> tuple[int, Any]:
    headers = {} if token is None else {"access_token": token}
    async with http.post(path, json=body, headers=headers) as resp:
        return resp.status, await resp.json(loads=orjson.loads, content_type=None)


def text_to(group: str, text: str) -> dict[str, Any]:
    return {"recipient": {"group_id": group}, "message": {"text": text}}


async def refresh(
    http: aiohttp.ClientSession, refresh_token: str, secret: str = SECRET, app_id: str = APP_ID
) -> Any:
    async with http.post(
        TOKEN_URL,
        headers={"secret_key": secret},
        data={"refresh_token": refresh_token, "app_id": app_id, "grant_type": "refresh_token"},
    ) as resp:
        assert resp.status == 200
        return await resp.json()


# ----- auth and envelope ---------------------------------------------------------------------


async def test_missing_or_wrong_token_is_216(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    for token in (None, "wrong"):
        status, body = await send(http, text_to(GROUP, "Xin chào"), token=token)
        assert (status, body) == (200, {"error": -216, "message": "Access token is invalid"})
    assert zalo.messages() == []


async def test_group_message_success_envelope(
    http: aiohttp.ClientSession, zalo: ZaloEmulator, clock: ManualClock
) -> None:
    status, body = await send(http, text_to(GROUP, "Thông báo: lịch cắt điện ngày 27/11."))
    assert status == 200 and set(body) == {"error", "message", "data"}
    assert (body["error"], body["message"]) == (0, "Success")
    message_id = body["data"]["message_id"]
    assert isinstance(message_id, str) and message_id
    [sent] = zalo.messages()
    assert (sent.message_id, sent.kind, sent.recipient, sent.time) == (message_id, "group", GROUP, clock())
    assert sent.text == "Thông báo: lịch cắt điện ngày 27/11."
    await send(http, text_to(GROUP, "Tin thứ hai"))
    assert [m.seq for m in zalo.messages()] == sorted(m.seq for m in zalo.messages())


async def test_text_limit_2000(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    status, body = await send(http, text_to(GROUP, "ạ" * 2000))
    assert body["error"] == 0
    status, body = await send(http, text_to(GROUP, "ạ" * 2001))
    assert status == 200 and body["error"] == -210 and set(body) == {"error", "message"}
    for bad in (
        {"recipient": {"group_id": GROUP}, "message": {"text": "  "}},
        {"recipient": {"group_id": GROUP}, "message": {}},
        {"recipient": {}, "message": {"text": "x"}},
    ):
        assert (await send(http, bad))[1]["error"] == -201
    assert len(zalo.messages()) == 1


async def test_media_attachment_and_buttons(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    attachment = {
        "type": "template",
        "payload": {
            "template_type": "media",
            "elements": [{"media_type": "image", "url": "https://example.org/a.jpg"}],
            "buttons": [
                {"title": "Đọc tiếp", "type": "oa.open.url", "payload": {"url": "https://example.org/a"}}
            ],
        },
    }
    body = {"recipient": {"group_id": GROUP}, "message": {"text": "Ảnh", "attachment": attachment}}
    assert (await send(http, body))[1]["error"] == 0
    assert zalo.messages()[0].attachment == attachment
    attachment["payload"]["buttons"][0]["payload"] = {}
    assert (await send(http, body))[1]["error"] == -201


@pytest.mark.parametrize("group, code", [("g-off", -237), ("g-out", -403), ("g-unknown", -237)])
async def test_group_errors(http: aiohttp.ClientSession, group: str, code: int) -> None:
    assert (await send(http, text_to(group, "x")))[1]["error"] == code


async def test_unknown_group_error_is_configurable(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.unknown_group_error = -403
    assert (await send(http, text_to("g-unknown", "x")))[1]["error"] == -403


async def test_cs_message_needs_a_follower(
    http: aiohttp.ClientSession, zalo: ZaloEmulator, clock: ManualClock
) -> None:
    body = {"recipient": {"user_id": FOLLOWER}, "message": {"text": "Cảm ơn bạn"}}
    status, reply = await send(http, body, path=CS_MESSAGE)
    assert reply["error"] == 0 and reply["data"]["user_id"] == FOLLOWER
    body["recipient"] = {"user_id": "stranger"}
    assert (await send(http, body, path=CS_MESSAGE))[1]["error"] == -213
    body["recipient"] = {"user_id": FOLLOWER}
    clock.advance(13 * 3600)  # 23:00 local
    assert (await send(http, body, path="/v3.0/oa/message/promotion"))[1]["error"] == -234
    assert [m.kind for m in zalo.messages()] == ["cs"]


# ----- limits ----------------------------------------------------------------------------------


async def test_quota_per_window(http: aiohttp.ClientSession, zalo: ZaloEmulator, clock: ManualClock) -> None:
    zalo.quota_limit = 2
    for n in range(2):
        assert (await send(http, text_to(GROUP, f"tin {n}")))[1]["error"] == 0
    status, body = await send(http, text_to(GROUP, "tin 3"))
    assert body == {"error": -211, "message": "Out of quota"}
    async with http.get("/v3.0/oa/quota/message", headers={"access_token": ACCESS}) as resp:
        quota = await resp.json()
    assert quota["error"] == 0
    assert {k: quota["data"][k] for k in ("total", "used", "remain")} == {"total": 2, "used": 2, "remain": 0}
    # the window resets at local midnight (UTC+7): 14 h after 10:00
    assert quota["data"]["reset_at"] == int((DAYTIME + 14 * 3600) * 1000)
    clock.advance(14 * 3600)
    assert (await send(http, text_to(GROUP, "tin 3")))[1]["error"] == 0


async def test_rate_limit_per_second(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.rate_limit_per_s = 3
    codes = [(await send(http, text_to(GROUP, f"tin {n}")))[1]["error"] for n in range(4)]
    assert codes == [0, 0, 0, -32]
    await asyncio.sleep(1.05)
    assert (await send(http, text_to(GROUP, "sau một giây")))[1]["error"] == 0


# ----- tokens ----------------------------------------------------------------------------------


async def test_refresh_is_single_use_and_rotates_the_access_token(
    http: aiohttp.ClientSession, zalo: ZaloEmulator
) -> None:
    pair = await refresh(http, REFRESH)
    assert set(pair) == {"access_token", "refresh_token", "expires_in"}
    assert pair["expires_in"] == "90000"  # a string, as Zalo sends it
    assert zalo.refresh_count == 1
    assert (zalo.access_token, zalo.refresh_token) == (pair["access_token"], pair["refresh_token"])
    # no grace by default: the previous access token stops at once
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -216
    assert (await send(http, text_to(GROUP, "x"), token=pair["access_token"]))[1]["error"] == 0
    again = await refresh(http, REFRESH)
    assert again == {
        "error_name": "Invalid parameter",
        "error_reason": "Invalid refresh token",
        "ref_doc": again["ref_doc"],
        "error_description": again["error_description"],
        "error": -14020,
    }
    assert zalo.refresh_count == 1
    second = await refresh(http, pair["refresh_token"])
    assert "access_token" in second and zalo.refresh_count == 2


async def test_refresh_checks_app_and_secret(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    assert (await refresh(http, REFRESH, secret="wrong"))["error"] == -14002
    assert (await refresh(http, REFRESH, app_id="other"))["error"] == -14001
    assert zalo.refresh_count == 0
    assert "access_token" in await refresh(http, REFRESH)  # still unused


async def test_grace_period_keeps_the_old_token_a_while(
    http: aiohttp.ClientSession, zalo: ZaloEmulator, clock: ManualClock
) -> None:
    zalo.refresh_grace_s = 30.0
    await refresh(http, REFRESH)
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == 0
    clock.advance(31)
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -216


async def test_access_token_expiry(
    http: aiohttp.ClientSession, zalo: ZaloEmulator, clock: ManualClock
) -> None:
    clock.advance(90000)
    assert await send(http, text_to(GROUP, "x")) == (
        200,
        {"error": -216, "message": "Access token is invalid"},
    )
    zalo.expired_error, zalo.expiry_http_status = -220, 401
    status, body = await send(http, text_to(GROUP, "x"))
    assert (status, body["error"]) == (401, -220)
    pair = await refresh(http, REFRESH)
    assert (await send(http, text_to(GROUP, "x"), token=pair["access_token"]))[1]["error"] == 0


# ----- faults ----------------------------------------------------------------------------------


async def test_rate_limit_and_quota_faults(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.faults.add("rate_limit", target=GROUP)
    zalo.faults.add("rate_limit", code=-211, target=GROUP)
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -32
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -211
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == 0


async def test_server_error_faults(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.faults.add("server_error")
    async with http.post(GROUP_MESSAGE, json=text_to(GROUP, "x"), headers={"access_token": ACCESS}) as resp:
        assert resp.status == 502 and "Bad Gateway" in await resp.text()
    zalo.faults.add("server_error", code=-1)
    assert await send(http, text_to(GROUP, "x")) == (200, {"error": -1, "message": "Unknown error"})
    assert zalo.messages() == []


async def test_expire_token_fault_then_refresh_once(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.faults.add("expire_token", path="/group/message")
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -216
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -216  # stays expired
    pair = await refresh(http, REFRESH)
    assert (await send(http, text_to(GROUP, "x"), token=pair["access_token"]))[1]["error"] == 0
    async with http.get("/_control/stats") as resp:
        assert (await resp.json())["refresh_count"] == 1


async def test_drop_after_effect_records_the_message(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.faults.add("drop_after_effect", target=GROUP)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(http, text_to(GROUP, "Kết quả chưa rõ"))
    async with http.get("/_control/messages") as resp:
        messages = (await resp.json())["messages"]
    assert [(m["recipient"], m["text"]) for m in messages] == [(GROUP, "Kết quả chưa rõ")]
    zalo.faults.add("drop_before_effect")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(http, text_to(GROUP, "không gửi"))
    assert len(zalo.messages()) == 1


async def test_refresh_reply_lost_bricks_the_refresh_token(
    http: aiohttp.ClientSession, zalo: ZaloEmulator
) -> None:
    """The crash-between-refresh-and-store case: Zalo rotated, the client never saw it."""
    zalo.faults.add("drop_after_effect", path=TOKEN_URL)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await refresh(http, REFRESH)
    assert zalo.refresh_count == 1
    assert (await refresh(http, REFRESH))["error"] == -14020
    async with http.post("/_control/tokens/issue") as resp:  # the OA admin re-authorises
        pair = await resp.json()
    assert (await send(http, text_to(GROUP, "x"), token=pair["access_token"]))[1]["error"] == 0


async def test_timeout_and_slow(http: aiohttp.ClientSession, zalo: ZaloEmulator) -> None:
    zalo.faults.add("timeout", delay_s=5)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            GROUP_MESSAGE,
            json=text_to(GROUP, "x"),
            headers={"access_token": ACCESS},
            timeout=aiohttp.ClientTimeout(total=0.3),
        ):
            pass
    assert len(zalo.messages()) == 1  # sent before the held reply
    zalo.faults.add("timeout", delay_s=0.5, effect_first=False)
    with pytest.raises(asyncio.TimeoutError):
        async with http.post(
            GROUP_MESSAGE,
            json=text_to(GROUP, "y"),
            headers={"access_token": ACCESS},
            timeout=aiohttp.ClientTimeout(total=0.2),
        ):
            pass
    assert len(zalo.messages()) == 1  # not yet...
    await asyncio.sleep(0.5)
    assert len(zalo.messages()) == 2  # ...but it lands after the client gave up


# ----- control API -----------------------------------------------------------------------------


async def test_control_api_over_http(
    http: aiohttp.ClientSession, zalo: ZaloEmulator, clock: ManualClock
) -> None:
    async with http.post(
        "/_control/faults",
        json={"faults": [{"kind": "rate_limit", "code": -211, "method": "POST", "count": 2}]},
    ) as resp:
        assert resp.status == 201
    for _ in range(2):
        assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -211
    async with http.post("/_control/groups", json={"group_id": "g-new"}) as resp:
        assert (await resp.json())["groups"]["g-new"] == "active"
    assert (await send(http, text_to("g-new", "vào nhóm mới")))[1]["error"] == 0
    async with http.post("/_control/followers", json={"user_id": "u-2"}) as resp:
        assert "u-2" in (await resp.json())["followers"]
    async with http.post("/_control/tokens/expire", json={}) as resp:
        assert resp.status == 200
    assert (await send(http, text_to(GROUP, "x")))[1]["error"] == -216
    pair = await refresh(http, REFRESH)
    async with http.get("/_control/tokens") as resp:
        tokens = await resp.json()
    assert (tokens["access_token"], tokens["refresh_count"]) == (pair["access_token"], 1)
    async with http.get("/_control/stats") as resp:
        stats = await resp.json()
    assert stats["requests"][f"POST {GROUP_MESSAGE}"] == {"error:-211": 2, "ok": 1, "error:-216": 1}
    assert stats["refresh_count"] == 1 and stats["messages"] == 1
    async with http.post("/_control/config", json={"quota_limit": 1, "bogus": 1}) as resp:
        assert resp.status == 400
    async with http.post("/_control/reset") as resp:
        assert resp.status == 200
    async with http.get("/_control/messages") as resp:
        assert (await resp.json())["messages"] == []
    assert zalo.refresh_count == 0 and zalo.access_token == ACCESS
    assert (await send(http, text_to(GROUP, "sau khi đặt lại")))[1]["error"] == 0
