"""Contract tests of the Graph API (Pages) emulator, over real HTTP on a free loopback port."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from infra.local.emulators.common import ManualClock
from infra.local.emulators.graph import GraphEmulator
from infra.local.emulators.graph_model import appsecret_proof

PAGE, TOKEN = "1001", "page-token-1001"
OTHER_PAGE, OTHER_TOKEN = "2002", "page-token-2002"
SECRET = "app-secret"
V = "/v19.0"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(1_780_000_000.0)


@pytest.fixture
async def graph(clock: ManualClock) -> AsyncIterator[GraphEmulator]:
    emulator = GraphEmulator(
        {PAGE: TOKEN, OTHER_PAGE: OTHER_TOKEN},
        app_secret=SECRET,
        page_call_limit=50,
        app_call_limit=1000,
        clock=clock,
        seed=7,
    )
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def http(graph: GraphEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=graph.base_url) as session:
        yield session


async def call(http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any) -> tuple[int, Any, Any]:
    async with http.request(method, path, **kwargs) as resp:
        return resp.status, await resp.json(loads=orjson.loads), resp.headers


def fb_error(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert isinstance(error.pop("fbtrace_id"), str)
    return error


async def publish(
    http: aiohttp.ClientSession, message: str, page: str = PAGE, token: str = TOKEN, **fields: str
) -> str:
    status, body, _ = await call(
        http, "POST", f"{V}/{page}/feed", data={"message": message, "access_token": token, **fields}
    )
    assert status == 200, body
    assert set(body) == {"id"} and body["id"].startswith(f"{page}_")
    return str(body["id"])


# ----- auth ----------------------------------------------------------------------------------


async def test_missing_token_is_refused_with_the_graph_envelope(http: aiohttp.ClientSession) -> None:
    status, body, headers = await call(http, "POST", f"{V}/{PAGE}/feed", data={"message": "x"})
    assert status == 400
    assert fb_error(body) == {
        "message": "An access token is required to request this resource.",
        "type": "OAuthException",
        "code": 104,
    }
    assert "X-App-Usage" in headers and "X-Business-Use-Case-Usage" in headers


async def test_wrong_token_is_190(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": "nope"}
    )
    assert status == 400
    assert fb_error(body) == {
        "message": "Invalid OAuth access token - Cannot parse access token",
        "type": "OAuthException",
        "code": 190,
    }
    assert graph.posts() == []


async def test_token_of_another_page_cannot_post(http: aiohttp.ClientSession) -> None:
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": OTHER_TOKEN}
    )
    assert status == 400 and fb_error(body)["code"] == 200


async def test_any_version_prefix_and_bearer_header(http: aiohttp.ClientSession) -> None:
    for version in ("/v2.0", "/v23.0"):
        status, body, _ = await call(
            http, "GET", f"{version}/{PAGE}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 200 and body["id"] == PAGE
    status, body, _ = await call(http, "GET", f"/v19.1/{PAGE}", params={"access_token": TOKEN})
    assert status == 400 and fb_error(body)["code"] == 2500


async def test_appsecret_proof_checked_and_required(
    http: aiohttp.ClientSession, graph: GraphEmulator
) -> None:
    good = appsecret_proof(SECRET, TOKEN)
    assert good == graph.proof(TOKEN)
    status, body, _ = await call(
        http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN, "appsecret_proof": "0" * 64}
    )
    assert status == 400
    assert fb_error(body) == {
        "message": "Invalid appsecret_proof provided in the API argument",
        "type": "GraphMethodException",
        "code": 100,
    }
    status, _, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
    assert status == 200  # not required yet
    graph.require_proof = True
    status, body, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
    assert status == 400 and fb_error(body)["code"] == 100
    status, _, _ = await call(
        http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN, "appsecret_proof": good}
    )
    assert status == 200


async def test_token_expires_at_a_set_time(
    http: aiohttp.ClientSession, graph: GraphEmulator, clock: ManualClock
) -> None:
    graph.set_token(PAGE, "short-lived", expires_at=clock() + 60)
    await publish(http, "before expiry", token="short-lived")
    clock.advance(61)
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/feed", data={"message": "after", "access_token": "short-lived"}
    )
    error = fb_error(body)
    assert status == 400 and (error["code"], error["error_subcode"]) == (190, 463)
    assert error["message"].startswith("Error validating access token: Session has expired on")
    graph.revoke_token(OTHER_TOKEN, 460)
    status, body, _ = await call(http, "GET", f"{V}/{OTHER_PAGE}", params={"access_token": OTHER_TOKEN})
    assert (fb_error(body)["code"], body["error"]["error_subcode"]) == (190, 460)


# ----- posts ---------------------------------------------------------------------------------


async def test_post_get_edit_delete(
    http: aiohttp.ClientSession, graph: GraphEmulator, clock: ManualClock
) -> None:
    text = "Thông báo lịch tiêm chủng tháng 11 [lantoa:abc123]"
    post_id = await publish(http, text, link="https://example.org/a")
    status, body, _ = await call(http, "GET", f"{V}/{post_id}", params={"access_token": TOKEN})
    assert status == 200
    assert body == {
        "message": text,
        "created_time": time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(clock())),
        "id": post_id,
    }
    status, body, _ = await call(
        http,
        "GET",
        f"{V}/{post_id}",
        params={"access_token": TOKEN, "fields": "message,is_published,link,permalink_url"},
    )
    assert body["is_published"] is True and body["link"] == "https://example.org/a"
    assert body["permalink_url"].startswith(f"https://www.facebook.com/{PAGE}/posts/")

    clock.advance(5)
    status, body, _ = await call(
        http, "POST", f"{V}/{post_id}", data={"message": text + " (đã sửa)", "access_token": TOKEN}
    )
    assert (status, body) == (200, {"success": True})
    status, body, _ = await call(http, "GET", f"{V}/{post_id}", params={"access_token": TOKEN})
    assert body["message"] == text + " (đã sửa)"

    status, body, _ = await call(http, "DELETE", f"{V}/{post_id}", params={"access_token": TOKEN})
    assert (status, body) == (200, {"success": True})
    for method in ("GET", "DELETE", "POST"):
        status, body, _ = await call(
            http, method, f"{V}/{post_id}", params={"access_token": TOKEN, "message": "x"}
        )
        error = fb_error(body)
        assert status == 400 and (error["code"], error["error_subcode"]) == (100, 33)
        assert error["message"].startswith(
            f"Unsupported {method.lower()} request. Object with ID '{post_id}' does not exist"
        )

    [post] = graph.posts()
    assert post.deleted and post.message == text + " (đã sửa)" and len(post.edits) == 1
    actions = [(e["action"], e["seq"]) for e in graph.effects()]
    assert [a for a, _ in actions] == ["create", "edit", "delete"]
    assert [s for _, s in actions] == sorted(s for _, s in actions)


async def test_method_override_and_json_body(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/feed", json={"message": "json body", "access_token": TOKEN}
    )
    assert status == 200
    status, body, _ = await call(
        http, "POST", f"{V}/{body['id']}", data={"method": "delete", "access_token": TOKEN}
    )
    assert body == {"success": True} and graph.posts()[0].deleted


async def test_feed_lists_newest_first_with_paging_and_finds_a_marker(
    http: aiohttp.ClientSession, clock: ManualClock
) -> None:
    ids = []
    for n in range(5):
        ids.append(await publish(http, f"Tin số {n} [lantoa:marker-{n}]"))
        clock.advance(1)
    status, body, _ = await call(
        http, "GET", f"{V}/{PAGE}/feed", params={"access_token": TOKEN, "limit": "2"}
    )
    assert status == 200
    assert [p["id"] for p in body["data"]] == [ids[4], ids[3]]
    assert set(body["data"][0]) == {"id", "message", "created_time"}
    seen = [p["id"] for p in body["data"]]
    while "next" in body.get("paging", {}):
        async with http.get(body["paging"]["next"]) as resp:
            body = await resp.json()
        seen += [p["id"] for p in body["data"]]
    assert seen == ids[::-1]
    # how an adapter reconciles an unknown outcome: scan recent posts for its marker
    status, body, _ = await call(
        http,
        "GET",
        f"{V}/{PAGE}/feed",
        params={"access_token": TOKEN, "limit": "100", "fields": "id,message,created_time"},
    )
    found = [p["id"] for p in body["data"] if "[lantoa:marker-2]" in p.get("message", "")]
    assert found == [ids[2]]


async def test_scheduled_posts_rules(
    http: aiohttp.ClientSession, graph: GraphEmulator, clock: ManualClock
) -> None:
    at = int(clock()) + 3600

    async def post(**fields: str) -> tuple[int, Any]:
        status, body, _ = await call(
            http, "POST", f"{V}/{PAGE}/feed", data={"message": "Hẹn giờ", "access_token": TOKEN, **fields}
        )
        return status, body

    status, body = await post(scheduled_publish_time=str(at))
    assert status == 400 and fb_error(body)["code"] == 100  # published defaults to true
    status, body = await post(published="false", scheduled_publish_time=str(int(clock()) + 300))
    assert status == 400 and "scheduled publish time" in fb_error(body)["message"]
    status, body = await post(published="false", scheduled_publish_time=str(int(clock()) + 200 * 86400))
    assert status == 400
    status, body = await post(published="false", scheduled_publish_time=str(at))
    assert status == 200
    post_id = body["id"]
    _, feed, _ = await call(http, "GET", f"{V}/{PAGE}/feed", params={"access_token": TOKEN})
    assert feed["data"] == []
    _, sched, _ = await call(http, "GET", f"{V}/{PAGE}/scheduled_posts", params={"access_token": TOKEN})
    assert [p["id"] for p in sched["data"]] == [post_id]
    clock.advance(3601)
    _, feed, _ = await call(
        http, "GET", f"{V}/{PAGE}/feed", params={"access_token": TOKEN, "fields": "id,is_published"}
    )
    assert feed["data"] == [{"id": post_id, "is_published": True}]


async def test_photos_by_url_and_upload(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    status, body, _ = await call(
        http,
        "POST",
        f"{V}/{PAGE}/photos",
        data={"url": "https://example.org/a.jpg", "caption": "Ảnh", "access_token": TOKEN},
    )
    assert status == 200 and set(body) == {"id", "post_id"}
    assert body["post_id"].startswith(f"{PAGE}_")
    form = aiohttp.FormData()
    form.add_field("access_token", TOKEN)
    form.add_field("caption", "Ảnh tải lên")
    form.add_field("source", b"\x89PNG fake", filename="a.png", content_type="image/png")
    status, body, _ = await call(http, "POST", f"{V}/{PAGE}/photos", data=form)
    assert status == 200
    assert graph.posts()[-1].photo_bytes == 9
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/photos", data={"caption": "none", "access_token": TOKEN}
    )
    assert status == 400 and fb_error(body)["code"] == 324


async def test_duplicate_message_is_506(
    http: aiohttp.ClientSession, graph: GraphEmulator, clock: ManualClock
) -> None:
    first = await publish(http, "Cùng một nội dung")
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/feed", data={"message": "Cùng một nội dung", "access_token": TOKEN}
    )
    error = fb_error(body)
    assert status == 400
    assert error == {
        "message": "(#506) Duplicate status message",
        "type": "OAuthException",
        "code": 506,
        "error_subcode": 1455006,
        "error_user_title": "Duplicate Status Update",
        "error_user_msg": error["error_user_msg"],
    }
    await publish(http, "Cùng một nội dung", page=OTHER_PAGE, token=OTHER_TOKEN)  # other page
    clock.advance(graph.duplicate_window_s + 1)
    await publish(http, "Cùng một nội dung")  # outside the window
    await call(http, "DELETE", f"{V}/{first}", params={"access_token": TOKEN})
    assert len(graph.posts(PAGE, include_deleted=False)) == 1


# ----- usage and throttling ------------------------------------------------------------------


def usage(headers: Any, page: str = PAGE) -> tuple[dict[str, Any], dict[str, Any]]:
    app = orjson.loads(headers["X-App-Usage"])
    buc = orjson.loads(headers["X-Business-Use-Case-Usage"])
    return app, buc[page][0]


async def test_usage_headers_grow_and_throttle_with_http_400(
    http: aiohttp.ClientSession, graph: GraphEmulator, clock: ManualClock
) -> None:
    graph.page_call_limit = 4
    graph.usage_window_s = 600.0
    seen = []
    for _ in range(4):
        status, _, headers = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
        assert status == 200
        app, page = usage(headers)
        assert set(app) == {"call_count", "total_cputime", "total_time"}
        assert page["type"] == "pages"
        seen.append(page["call_count"])
    assert seen == [25, 50, 75, 100]
    status, body, headers = await call(
        http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": TOKEN}
    )
    assert status == 400
    assert fb_error(body)["code"] == 80001
    _, page = usage(headers)
    assert page["call_count"] >= 100 and page["estimated_time_to_regain_access"] == 10
    assert graph.posts() == []
    clock.advance(601)
    status, _, headers = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
    assert status == 200 and usage(headers)[1]["call_count"] == 25
    # the other page is not throttled by this page's calls
    status, _, _ = await call(http, "GET", f"{V}/{OTHER_PAGE}", params={"access_token": OTHER_TOKEN})
    assert status == 200


async def test_app_limit_is_code_4(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    graph.app_call_limit = 2
    for _ in range(2):
        await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
    status, body, headers = await call(http, "GET", f"{V}/{OTHER_PAGE}", params={"access_token": OTHER_TOKEN})
    assert status == 400 and fb_error(body)["code"] == 4
    assert orjson.loads(headers["X-App-Usage"])["call_count"] == 100


# ----- faults --------------------------------------------------------------------------------


async def test_rate_limit_fault_codes_and_count(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    graph.faults.add("rate_limit", path=r"/feed$", method="POST", count=2, regain_minutes=7)
    graph.faults.add("rate_limit", code=4, target=OTHER_PAGE)
    for _ in range(2):
        status, body, headers = await call(
            http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": TOKEN}
        )
        assert status == 400 and fb_error(body)["code"] == 32
        assert usage(headers)[1]["estimated_time_to_regain_access"] == 7
        assert usage(headers)[1]["call_count"] >= 100
    await publish(http, "x")
    status, body, headers = await call(http, "GET", f"{V}/{OTHER_PAGE}", params={"access_token": OTHER_TOKEN})
    assert fb_error(body)["code"] == 4
    assert orjson.loads(headers["X-App-Usage"])["call_count"] >= 100


async def test_server_error_and_policy_block(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    graph.faults.add("server_error")
    status, body, _ = await call(
        http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": TOKEN}
    )
    assert status == 500
    assert fb_error(body) == {
        "message": "An unexpected error has occurred. Please retry your request later.",
        "type": "OAuthException",
        "code": 2,
    }
    graph.faults.add("error", code=368, count=None, target=PAGE)
    for _ in range(2):
        status, body, _ = await call(
            http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": TOKEN}
        )
        assert status == 400 and fb_error(body)["code"] == 368
    assert graph.posts() == []


async def test_expire_token_fault(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    graph.faults.add("expire_token")
    for _ in range(2):  # the token stays expired after the fault fired once
        status, body, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
        assert status == 400 and (body["error"]["code"], body["error"]["error_subcode"]) == (190, 463)
    graph.set_token(PAGE, "fresh")
    status, _, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": "fresh"})
    assert status == 200


async def test_drop_after_effect_disconnects_but_the_post_exists(
    http: aiohttp.ClientSession, graph: GraphEmulator
) -> None:
    graph.faults.add("drop_after_effect", method="POST", path=r"/feed$")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(
            http,
            "POST",
            f"{V}/{PAGE}/feed",
            data={"message": "Kết quả chưa rõ [lantoa:k1]", "access_token": TOKEN},
        )
    async with http.get("/_control/posts") as resp:
        posts = (await resp.json())["posts"]
    assert [p["message"] for p in posts] == ["Kết quả chưa rõ [lantoa:k1]"]
    # the retry the adapter must not blindly make is refused as a duplicate
    status, body, _ = await call(
        http,
        "POST",
        f"{V}/{PAGE}/feed",
        data={"message": "Kết quả chưa rõ [lantoa:k1]", "access_token": TOKEN},
    )
    assert fb_error(body)["code"] == 506
    async with http.get("/_control/stats") as resp:
        stats = await resp.json()
    assert stats["requests"][f"POST {V}/{PAGE}/feed"] == {"dropped": 1, "error:506": 1}


async def test_dropped_delete_is_resent_by_aiohttp_and_meets_100_33(
    http: aiohttp.ClientSession, graph: GraphEmulator
) -> None:
    """aiohttp re-sends an idempotent request (GET, DELETE, ...) once when the connection
    drops, so a retraction whose reply was lost comes back as "does not exist" (100/33):
    an adapter must read 100/33 on DELETE as "already deleted"."""
    post_id = await publish(http, "Bài sẽ gỡ")
    graph.faults.add("drop_after_effect", method="DELETE")
    status, body, _ = await call(http, "DELETE", f"{V}/{post_id}", params={"access_token": TOKEN})
    assert status == 400 and (body["error"]["code"], body["error"]["error_subcode"]) == (100, 33)
    assert graph.stats.by_path[f"DELETE {V}/{post_id}"] == {"dropped": 1, "error:100": 1}
    assert graph.posts()[0].deleted


async def test_drop_before_effect_disconnects_without_effect(
    http: aiohttp.ClientSession, graph: GraphEmulator
) -> None:
    graph.faults.add("drop_before_effect")
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", f"{V}/{PAGE}/feed", data={"message": "x", "access_token": TOKEN})
    assert graph.posts() == []


async def test_timeout_effect_first_and_slow(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    graph.faults.add("timeout", delay_s=5)
    with pytest.raises(asyncio.TimeoutError):
        await call(
            http,
            "POST",
            f"{V}/{PAGE}/feed",
            data={"message": "x", "access_token": TOKEN},
            timeout=aiohttp.ClientTimeout(total=0.3),
        )
    assert [p.message for p in graph.posts()] == ["x"]
    graph.faults.add("slow", delay_s=0.3)
    started = time.monotonic()
    await publish(http, "y")
    assert time.monotonic() - started >= 0.3


async def test_probability_zero_never_fires(http: aiohttp.ClientSession, graph: GraphEmulator) -> None:
    fault = graph.faults.add("server_error", probability=0.0, count=None)
    for n in range(5):
        await publish(http, f"msg {n}")
    assert fault.fired == 0 and graph.faults.list() == [fault]


# ----- control API ---------------------------------------------------------------------------


async def test_control_api_over_http(
    http: aiohttp.ClientSession, graph: GraphEmulator, clock: ManualClock
) -> None:
    async with http.post(
        "/_control/faults", json={"kind": "rate_limit", "code": 80001, "target": PAGE, "regain_minutes": 3}
    ) as resp:
        assert resp.status == 201
        [fault] = (await resp.json())["faults"]
    async with http.get("/_control/faults") as resp:
        assert [f["id"] for f in (await resp.json())["faults"]] == [fault["id"]]
    status, body, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
    assert fb_error(body)["code"] == 80001
    async with http.post("/_control/faults", json={"kind": "explode"}) as resp:
        assert resp.status == 400 and "unknown fault kind" in (await resp.json())["error"]

    await publish(http, "kept until reset")
    async with http.post("/_control/tokens/expire", json={"page_id": PAGE}) as resp:
        assert (await resp.json()) == {"expired": 1}
    status, body, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": TOKEN})
    assert body["error"]["error_subcode"] == 463
    async with http.post("/_control/tokens", json={"page_id": PAGE, "token": "t2"}) as resp:
        assert resp.status == 200
    status, _, _ = await call(http, "GET", f"{V}/{PAGE}", params={"access_token": "t2"})
    assert status == 200

    async with http.post("/_control/config", json={"page_call_limit": 2}) as resp:
        assert (await resp.json())["page_call_limit"] == 2
    async with http.post("/_control/clock", json={"advance": 10}) as resp:
        assert (await resp.json())["now"] == clock() == 1_780_000_010.0
    async with http.get("/_control/stats") as resp:
        stats = await resp.json()
    assert stats["outcomes"]["error:80001"] == 1 and stats["faults_fired"] == {"rate_limit": 1}
    async with http.post("/_control/reset") as resp:
        assert await resp.json() == {"ok": True}
    async with http.get("/_control/posts") as resp:
        assert (await resp.json())["posts"] == []
    assert graph.page_call_limit == 50 and graph.faults.list() == []
    await publish(http, "after reset")  # the constructor's token is back


async def test_wall_clock_refuses_clock_control() -> None:
    async with GraphEmulator({PAGE: TOKEN}) as emulator:
        assert emulator.base_url is not None
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{emulator.base_url}/_control/clock", json={"advance": 1}) as resp:
                assert resp.status == 409
