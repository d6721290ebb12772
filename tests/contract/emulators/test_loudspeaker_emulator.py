"""Contract tests of the loudspeaker platform emulator, over real HTTP on a free loopback port."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import pytest

from infra.local.emulators.common import ManualClock
from infra.local.emulators.loudspeaker import LoudspeakerEmulator

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
TOKEN = "platform-token-1"
DAY = "2026-09-17"  # a Thursday
T0 = datetime(2026, 9, 17, 5, 0, tzinfo=HCM)
AUDIO = "https://tin.example.vn/audio/ab/abc.wav"


def at(hh: int, mm: int, ss: int = 0) -> datetime:
    return T0.replace(hour=hh, minute=mm, second=ss)


def slot(bid: str, start: datetime, end: datetime, **extra: Any) -> dict[str, Any]:
    return {
        "bulletin_id": bid,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "priority": "normal",
        "audio_url": AUDIO,
        "title": f"Tin {bid}",
        **extra,
    }


def schedule(zone: str, *slots: dict[str, Any], day: str = DAY) -> dict[str, Any]:
    return {"zone": zone, "date": day, "timezone": "Asia/Ho_Chi_Minh", "slots": list(slots)}


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0.timestamp())


@pytest.fixture
async def emu(clock: ManualClock) -> AsyncIterator[LoudspeakerEmulator]:
    emulator = LoudspeakerEmulator(zones={"42001": 1, "42002": 2}, tokens=[TOKEN], clock=clock, seed=1)
    await emulator.start()
    yield emulator
    await emulator.stop()


@pytest.fixture
async def http(emu: LoudspeakerEmulator) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(base_url=emu.base_url) as session:
        yield session


async def call(
    http: aiohttp.ClientSession,
    method: str,
    path: str,
    body: Any = None,
    *,
    token: str | None = TOKEN,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, Any]:
    hdrs = {"Authorization": f"Bearer {token}"} if token else {}
    hdrs.update(headers or {})
    async with http.request(method, path, json=body, headers=hdrs) as resp:
        return resp.status, await resp.json(loads=orjson.loads, content_type=None), resp.headers


def put(http: aiohttp.ClientSession, zone: str, body: Any, day: str = DAY, **kw: Any) -> Any:
    return call(http, "PUT", f"/api/v1/zones/{zone}/schedules/{day}", body, **kw)


def emergency(
    eid: str,
    zones: list[str],
    *,
    duration: float = 60,
    interval: float = 300,
    expires: datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "emergency_id": eid,
        "zones": zones,
        "audio_url": AUDIO,
        "text": "Bão số 5.",
        "priority": "emergency",
        "duration_s": duration,
        "repeat_interval_s": interval,
        "expires_at": (expires or at(7, 0)).isoformat(),
        **extra,
    }


# -- auth -------------------------------------------------------------------------------------------


async def test_bearer_token_required(http: aiohttp.ClientSession, emu: LoudspeakerEmulator) -> None:
    status, body, headers = await put(http, "42001", schedule("42001"), token=None)
    assert (
        status == 401 and body["error"]["code"] == "unauthorized" and "Bearer" in headers["WWW-Authenticate"]
    )
    status, body, _ = await put(http, "42001", schedule("42001"), token="nope")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    emu.expire_token(TOKEN)
    status, body, _ = await put(http, "42001", schedule("42001"))
    assert status == 401 and body["error"]["code"] == "token_expired"


# -- schedules --------------------------------------------------------------------------------------


async def test_schedule_is_idempotent_by_content_with_etags(http: aiohttp.ClientSession) -> None:
    body = schedule("42001", slot("b1", at(5, 30), at(5, 31)))
    status, first, headers = await put(http, "42001", body)
    assert status == 201 and first["status"] == "created" and first["version"] == 1
    assert headers["ETag"] == first["etag"]
    status, again, _ = await put(http, "42001", body)
    assert (status, again["status"], again["version"], again["etag"]) == (200, "unchanged", 1, first["etag"])
    changed = schedule("42001", slot("b1", at(5, 30), at(5, 31)), slot("b2", at(5, 31), at(5, 33)))
    status, replaced, _ = await put(http, "42001", changed, headers={"If-Match": first["etag"]})
    assert (status, replaced["status"], replaced["version"]) == (200, "replaced", 2)
    assert replaced["etag"] != first["etag"]
    status, got, headers = await call(http, "GET", f"/api/v1/zones/42001/schedules/{DAY}")
    assert status == 200 and got["schedule"] == changed and got["etag"] == replaced["etag"] == headers["ETag"]
    status, missing, _ = await call(http, "GET", "/api/v1/zones/42001/schedules/2026-09-18")
    assert status == 404 and missing["error"]["code"] == "not_found"


async def test_preconditions(http: aiohttp.ClientSession) -> None:
    body = schedule("42001", slot("b1", at(5, 30), at(5, 31)))
    status, err, _ = await put(http, "42001", body, headers={"If-Match": '"stale"'})
    assert status == 412 and err["error"]["current_etag"] is None
    _, created, _ = await put(http, "42001", body, headers={"If-None-Match": "*"})
    status, err, _ = await put(http, "42001", body, headers={"If-None-Match": "*"})
    assert status == 412 and err["error"]["current_etag"] == created["etag"]
    status, err, _ = await put(http, "42001", body, headers={"If-Match": '"stale"'})
    assert status == 412 and err["error"]["code"] == "precondition_failed"
    status, ok, _ = await put(http, "42001", body, headers={"If-Match": created["etag"]})
    assert status == 200 and ok["status"] == "unchanged"


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (schedule("42001", slot("a", at(5, 30), at(5, 35)), slot("b", at(5, 34), at(5, 36))), "overlap"),
        (schedule("42001", slot("a", at(5, 30), at(5, 30))), "end after"),
        (
            schedule("42001", slot("a", at(5, 30) + timedelta(days=1), at(5, 31) + timedelta(days=1))),
            "starts on",
        ),
        (schedule("42001", slot("a", at(5, 30), at(5, 31), priority="emergency")), "emergencies"),
        (schedule("42001", slot("a", at(5, 30), at(5, 31), audio_url="/relative.wav")), "audio_url"),
        (
            schedule("42001", {"bulletin_id": "a", "start": "05:30", "end": "05:31", "audio_url": AUDIO}),
            "ISO 8601",
        ),
        (schedule("42002", slot("a", at(5, 30), at(5, 31))), "zone"),
        ({"slots": "none"}, "slots"),
    ],
)
async def test_bad_schedules_are_refused(http: aiohttp.ClientSession, body: Any, why: str) -> None:
    status, err, _ = await put(http, "42001", body)
    assert status == 400 and err["error"]["code"] == "invalid_request" and why in err["error"]["message"]


async def test_bad_date_and_bad_json(http: aiohttp.ClientSession) -> None:
    status, err, _ = await put(http, "42001", schedule("42001"), day="17-09-2026")
    assert status == 400
    async with http.put(
        f"/api/v1/zones/42001/schedules/{DAY}",
        data=b"{not json",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as resp:
        assert resp.status == 400


# -- simulated playing ------------------------------------------------------------------------------


async def test_advancing_the_clock_plays_slots_on_every_cluster(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    await put(
        http, "42002", schedule("42002", slot("b1", at(5, 30), at(5, 31)), slot("b2", at(5, 31), at(5, 33)))
    )
    emu.set_cluster_status("offline", cluster_id="42002-c2")
    clock.set(at(5, 32).timestamp())
    _, body, _ = await call(http, "GET", "/api/v1/plays?zone=42002")
    got = {(p["bulletin_id"], p["cluster_id"]): (p["result"], p["played_s"]) for p in body["plays"]}
    assert got == {("b1", "42002-c1"): ("ok", 60.0), ("b1", "42002-c2"): ("offline", 0.0)}  # b2 still playing
    clock.set(at(6, 0).timestamp())
    _, body, _ = await call(http, "GET", f"/api/v1/plays?zone=42002&after={body['next_after']}")
    assert [(p["bulletin_id"], p["cluster_id"], p["result"]) for p in body["plays"]] == [
        ("b2", "42002-c1", "ok"),
        ("b2", "42002-c2", "offline"),
    ]
    _, since, _ = await call(http, "GET", f"/api/v1/plays?since={at(5, 32).isoformat().replace('+', '%2B')}")
    assert {p["bulletin_id"] for p in since["plays"]} == {"b2"}


async def test_going_offline_mid_play_reports_what_aired(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    await put(http, "42001", schedule("42001", slot("b1", at(5, 30), at(5, 40))))
    clock.set(at(5, 32).timestamp())
    emu.set_cluster_status("offline", zone="42001")
    clock.set(at(6, 0).timestamp())
    [play] = emu.plays(zone="42001")
    assert (play.result, play.played_s) == ("offline", 120.0)


async def test_replacing_a_schedule_cuts_the_slot_on_air_unless_kept(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    first = slot("b1", at(5, 30), at(5, 40))
    await put(http, "42001", schedule("42001", first, slot("b2", at(5, 40), at(5, 45))))
    clock.set(at(5, 35).timestamp())
    await put(http, "42001", schedule("42001", first, slot("b3", at(5, 40), at(5, 42))))  # b1 kept: plays on
    await put(http, "42001", schedule("42001", slot("b4", at(5, 30), at(5, 33))))  # b1 dropped at 05:36: cut
    clock.set(at(6, 0).timestamp())
    plays = [(p.bulletin_id, p.result, p.played_s) for p in emu.plays(zone="42001")]
    assert plays == [("b1", "interrupted", 300.0)]  # b4 was put in the past: it never plays


# -- emergencies ------------------------------------------------------------------------------------


async def test_emergency_preempts_at_once_repeats_and_cancel_stops(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    await put(
        http, "42001", schedule("42001", slot("b1", at(5, 30), at(5, 40)), slot("b2", at(5, 40), at(5, 50)))
    )
    clock.set(at(5, 35).timestamp())
    status, body, _ = await call(
        http, "POST", "/api/v1/emergencies", emergency("E1", ["42001", "42002", "42999"])
    )
    assert status == 201 and body["status"] == "active" and body["zone_count"] == 3 and not body["duplicate"]
    pre = {p.cluster_id: p.interrupted for p in emu.preemptions("E1")}
    assert pre == {
        "42001-c1": "b1",
        "42002-c1": None,
        "42002-c2": None,
        "42999-c1": None,
    }  # 42999 created on demand
    assert emu.now_playing("42001") == {"42001-c1": "E1"}

    status, again, _ = await call(http, "POST", "/api/v1/emergencies", emergency("E1", ["42001"]))
    assert status == 200 and again["duplicate"] and len(emu.preemptions("E1")) == 4  # never twice

    clock.set(at(5, 45, 30).timestamp())  # plays at 05:35, 05:40, 05:45 (60 s each)
    scheduled = [(p.bulletin_id, p.result, p.played_s) for p in emu.plays(zone="42001", kind="scheduled")]
    # b1 cut at 05:35; b2 was due at 05:40, when the second play began: pre-empted before it started
    assert scheduled == [("b1", "interrupted", 300.0), ("b2", "interrupted", 0.0)]
    starts = [p.started_at for p in emu.plays(zone="42001", kind="emergency")]
    assert starts == [at(5, 35).timestamp(), at(5, 40).timestamp()]  # the 05:45 play is on air
    assert emu.plays(zone="42001", kind="emergency")[0].result == "ok"

    status, cancelled, _ = await call(http, "DELETE", "/api/v1/emergencies/E1")
    assert status == 200 and cancelled["status"] == "cancelled"
    clock.set(at(6, 30).timestamp())
    emergency_plays = emu.plays(zone="42001", kind="emergency")
    assert [(p.result, p.played_s) for p in emergency_plays][-1] == ("interrupted", 30.0)  # cut by the cancel
    assert len(emergency_plays) == 3  # no repeat after the cancel
    status, again, _ = await call(http, "DELETE", "/api/v1/emergencies/E1")
    assert status == 200 and again["status"] == "cancelled"
    status, _, _ = await call(http, "DELETE", "/api/v1/emergencies/nope")
    assert status == 404


async def test_repeats_stop_at_expiry(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    await call(http, "POST", "/api/v1/emergencies", emergency("E2", ["42001"], expires=at(5, 10, 1)))
    clock.set(at(8, 0).timestamp())
    starts = [p.started_at for p in emu.plays(zone="42001")]
    assert starts == [at(5, m).timestamp() for m in (0, 5, 10)]  # a play starting before expiry runs in full
    _, got, _ = await call(http, "GET", "/api/v1/emergencies/E2")
    assert got["status"] == "expired" and got["plays_started"] == 3 and got["zones"] == ["42001"]


async def test_update_replaces_the_earlier_emergency(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    await call(http, "POST", "/api/v1/emergencies", emergency("E1", ["42001"]))
    clock.advance(20)
    status, body, _ = await call(
        http, "POST", "/api/v1/emergencies", emergency("E1-upd", ["42001"], replaces="E1")
    )
    assert status == 201 and emu.preemptions("E1-upd")[0].interrupted == "E1"
    clock.set(at(5, 30).timestamp())
    plays = [(p.bulletin_id, p.result, p.played_s) for p in emu.plays(zone="42001")]
    assert plays[0] == ("E1", "interrupted", 20.0)
    assert {b for b, _, _ in plays[1:]} == {"E1-upd"}
    assert emu.emergency("E1") is not None and emu.emergency("E1").status(clock()) == "replaced"  # type: ignore[union-attr]


async def test_a_slot_starting_during_an_emergency_play_is_preempted(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock
) -> None:
    clock.set(at(5, 29, 30).timestamp())
    await call(http, "POST", "/api/v1/emergencies", emergency("E3", ["42001"], interval=3600))
    await put(
        http, "42001", schedule("42001", slot("b1", at(5, 30), at(5, 31)), slot("b2", at(5, 31), at(5, 32)))
    )
    clock.set(at(5, 40).timestamp())
    assert [(p.bulletin_id, p.result, p.played_s) for p in emu.plays(zone="42001", kind="scheduled")] == [
        ("b1", "interrupted", 0.0),
        ("b2", "ok", 60.0),
    ]  # the schedule resumes after the emergency


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"priority": "normal"}, "priority"),
        ({"zones": []}, "zones"),
        ({"repeat_interval_s": 30, "duration_s": 60}, "repeat_interval_s"),
        ({"expires_at": "2026-09-17T04:00:00+07:00"}, "past"),
        ({"audio_url": None, "text": None}, "audio_url or text"),
    ],
)
async def test_bad_emergencies_are_refused(
    http: aiohttp.ClientSession, change: dict[str, Any], why: str
) -> None:
    body = {k: v for k, v in {**emergency("E4", ["42001"]), **change}.items() if v is not None}
    status, err, _ = await call(http, "POST", "/api/v1/emergencies", body)
    assert status == 400 and why in err["error"]["message"]


async def test_bulk_limit_and_unknown_zones(http: aiohttp.ClientSession, emu: LoudspeakerEmulator) -> None:
    status, err, _ = await call(
        http, "POST", "/api/v1/emergencies", emergency("E5", [f"z{i}" for i in range(5001)])
    )
    assert status == 413 and err["error"]["code"] == "too_many_zones"
    emu.auto_create_zones = False
    status, err, _ = await call(http, "POST", "/api/v1/emergencies", emergency("E6", ["42001", "99999"]))
    assert status == 404 and err["error"]["code"] == "zone_not_found" and err["error"]["zones"] == ["99999"]


async def test_5000_zones_in_one_call_within_a_second(
    http: aiohttp.ClientSession, emu: LoudspeakerEmulator
) -> None:
    zones = [f"{i:05d}" for i in range(5000)]
    started = time.perf_counter()
    status, body, _ = await call(http, "POST", "/api/v1/emergencies", emergency("E-national", zones))
    elapsed = time.perf_counter() - started
    assert status == 201 and body["zone_count"] == 5000
    assert len({p.zone for p in emu.preemptions("E-national")}) == 5000
    assert elapsed < 1.0, f"{elapsed:.3f} s"


# -- faults and control -----------------------------------------------------------------------------


async def test_faults(http: aiohttp.ClientSession, emu: LoudspeakerEmulator) -> None:
    body = schedule("42001", slot("b1", at(5, 30), at(5, 31)))
    emu.faults.add("rate_limit", path="/schedules/", target="42001", count=1)
    status, err, headers = await put(http, "42001", body)
    assert status == 429 and err["error"]["code"] == "rate_limited" and headers["Retry-After"] == "5"
    emu.faults.add("server_error", path="/schedules/", count=1)
    status, err, _ = await put(http, "42001", body)
    assert status == 503 and err["error"]["code"] == "unavailable"
    emu.faults.add("expire_token", count=1)
    status, err, _ = await put(http, "42001", body)
    assert status == 401 and err["error"]["code"] == "token_expired"
    status, err, _ = await put(http, "42001", body)
    assert status == 401  # expired for good, not just once
    assert emu.schedule("42001", DAY) is None


async def test_control_api(http: aiohttp.ClientSession, emu: LoudspeakerEmulator, clock: ManualClock) -> None:
    async with http.post("/_control/clusters", json={"zone": "42001", "count": 3}) as resp:
        assert resp.status == 200 and len((await resp.json())["clusters"]) == 3
    async with http.post("/_control/clusters", json={"cluster_id": "42001-c2", "status": "offline"}) as resp:
        assert (await resp.json())["clusters"][0]["status"] == "offline"
    async with http.post("/_control/clusters", json={"cluster_id": "nope", "status": "offline"}) as resp:
        assert resp.status == 404
    async with http.get("/_control/clusters", params={"zone": "42001"}) as resp:
        assert [c["status"] for c in (await resp.json())["clusters"]] == ["online", "offline", "online"]
    await put(http, "42001", schedule("42001", slot("b1", at(5, 30), at(5, 31))))
    await call(http, "POST", "/api/v1/emergencies", emergency("E7", ["42001"]))
    async with http.get("/_control/schedules", params={"zone": "42001"}) as resp:
        assert (await resp.json())["schedules"][0]["version"] == 1
    async with http.get("/_control/preemptions", params={"emergency_id": "E7"}) as resp:
        assert (await resp.json())["zones"] == 1
    async with http.post("/_control/clock", json={"advance": 3600}) as resp:
        assert resp.status == 200
    async with http.get("/_control/plays", params={"zone": "42001", "kind": "emergency"}) as resp:
        assert {p["result"] for p in (await resp.json())["plays"]} == {"ok", "offline"}
    async with http.post("/_control/tokens", json={"token": "second", "action": "add"}) as resp:
        assert resp.status == 200
    status, _, _ = await call(http, "GET", "/api/v1/zones/42001/clusters", token="second")
    assert status == 200
    async with http.post("/_control/reset") as resp:
        assert resp.status == 200
    assert emu.schedules() == [] and emu.emergencies() == [] and emu.plays() == []
    assert len(emu.clusters("42001")) == 1
