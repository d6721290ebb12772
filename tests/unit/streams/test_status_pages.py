"""The HTML status pages: every value escaped, a strict CSP and no script at all, trouble first,
3,321 zones folded per province, content negotiation on /articles, the timeline from a fake
fetcher and the real fetcher against the loudspeaker platform emulator."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import pytest
from aiohttp.test_utils import TestClient, TestServer
from html_dom import Node, dom, parse_errors

from consumers.loudspeaker.outputs import to_json
from consumers.loudspeaker.platform import PlatformClient
from consumers.loudspeaker.scheduler import DaySchedule, Slot
from consumers.loudspeaker.timeline import PlatformTimeline
from infra.local.emulators.common import ManualClock
from infra.local.emulators.loudspeaker import LoudspeakerEmulator
from schemas.models import Action, Command, IdempotencyKey, Priority, Receipt
from schemas.registry import official_zones, province_names
from schemas.secrets import write_secret
from schemas.settings import Settings
from schemas.timeline import TimelineUnavailable, UnknownZone, ZoneDay
from schemas.topics import Channel
from streams.status.article import render_article
from streams.status.layout import CSS
from streams.status.model import StatusFold
from streams.status.timeline import render_timeline
from streams.status.view import StatusView
from streams.status.web import make_app

HCM = ZoneInfo("Asia/Ho_Chi_Minh")
URI = "urn:lantoa:article:2026-11-26-trang"
HOSTILE = '<script>alert("x")</script>'
HOSTILE_REASON = '"><img src=x onerror=alert(1)>'
T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)


def assert_safe_page(page: str) -> Node:
    """No script, no handler, no inline style attribute, the CSP and the language in place."""
    assert "<script" not in page.lower()
    assert parse_errors(page) == []  # well-formed HTML5: nothing the browser's parser must repair
    root = dom(page)
    for node in root.iter():
        assert node.tag not in ("script", "iframe", "object", "embed", "img"), node.tag
        assert not [a for a in node.attrs if a.startswith("on")], node.attrs
        assert "style" not in node.attrs  # the CSP hash covers the <style> element only
    assert root.one("html").attrs["lang"] == "vi"
    csp = root.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    style = "".join(t for t in root.one("style").texts if isinstance(t, str))
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert style == CSS and f"'sha256-{digest}'" in csp
    assert root.one("meta", name="viewport")
    return root


# -- status facts --------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def command(
    target: str, channel: Channel = Channel.FANPAGE, title: str = "Tiêu đề", version: int = 1
) -> dict[str, Any]:
    return Command(
        IdempotencyKey(URI, version, channel, target, Action.PUBLISH),
        Priority.NORMAL,
        iso(T0),
        {"message": f"{title}\n\nTóm tắt"},
        published_at=iso(T0),
        event_id="e1",
    ).to_dict()


def receipt(cmd: dict[str, Any], outcome: str, seconds: int, **extra: Any) -> dict[str, Any]:
    return Receipt(
        uri=cmd["uri"],
        stage="delivery",
        outcome=outcome,
        at=iso(T0 + timedelta(seconds=seconds)),
        version=cmd["version"],
        channel=cmd["channel"],
        target=cmd["target"],
        command_id=cmd["command_id"],
        event_id="e1",
        **extra,
    ).to_dict()


def routed(counts: dict[str, int]) -> dict[str, Any]:
    return Receipt(uri=URI, stage="fanout", outcome="routed", at=iso(T0), version=1, counts=counts).to_dict()


@pytest.fixture
def fold() -> StatusFold:
    view = StatusFold()
    a, b, c = (command(f"fanpage:{n}", title=HOSTILE) for n in ("a", "b", "c"))
    for cmd in (a, b, c):
        view.add_command(cmd)
    view.add_receipt(receipt(a, "delivered", 5, external_id="100_1"))
    view.add_receipt(receipt(b, "failed", 6, reason=HOSTILE_REASON))
    view.add_receipt(receipt(c, "retrying", 7, reason="rate limited (retry in 10s)"))
    evil = command("zalo:<b>nhóm</b>", Channel.ZALO, title=HOSTILE)
    view.add_command(evil)
    view.add_receipt(routed({"fanpage": 3, "zalo": 1}))
    return view


# -- the article page ----------------------------------------------------------------------------


def test_the_history_names_who_published_and_retracted() -> None:
    view = StatusFold()
    view.add_receipt(
        Receipt(
            uri=URI,
            stage="fanout",
            outcome="routed",
            at=iso(T0),
            version=1,
            counts={"fanpage": 1},
            actor="editor-lan",
        ).to_dict()
    )
    later = iso(T0 + timedelta(minutes=5))
    view.add_receipt(
        Receipt(
            uri=URI, stage="fanout", outcome="retracted", at=later, version=1, actor="duty-editor"
        ).to_dict()
    )
    article = view.article(URI)
    assert article is not None
    root = assert_safe_page(render_article(article, {"caught_up": True, "as_of": later}))
    rows = [[td.text for td in tr.all("td")] for tr in root.all("tr") if tr.attrs.get("data-outcome")]
    assert [r[3] for r in rows] == ["duty-editor", "editor-lan"]  # newest first, each with its actor


def test_hostile_titles_reasons_and_target_ids_are_escaped_everywhere(fold: StatusFold) -> None:
    article = fold.article(URI)
    assert article is not None
    page = render_article(article, {"caught_up": True, "as_of": iso(T0)})
    root = assert_safe_page(page)
    assert root.one("h1").text == HOSTILE  # shown as text, not markup
    assert root.one("title").text == f"{HOSTILE} · Lantoa" and HOSTILE not in page  # escaped, not dropped
    failed = root.one("tr", data_target="fanpage:b")
    assert failed.one("td", **{"class": "reason"}).text == HOSTILE_REASON
    assert root.one("tr", data_target="zalo:<b>nhóm</b>").attrs["data-state"] == "pending"
    assert not root.all("b")  # the target id's markup stayed text


def test_article_page_structure_trouble_first_badges_and_refresh(fold: StatusFold) -> None:
    article = fold.article(URI)
    assert article is not None
    root = assert_safe_page(render_article(article, {"caught_up": True, "as_of": iso(T0)}))
    assert root.one("meta", http_equiv="refresh").attrs["content"] == "10"
    fan = root.one("section", data_channel="fanpage")
    assert [r.attrs["data-state"] for r in fan.all("tr") if "data-state" in r.attrs] == [
        "failed",
        "retrying",
        "delivered",
    ]
    assert fan.one("h2").text == "Fanpage Facebook"
    assert fan.one("strong", data_settled="1").text == "1/3"
    badges = {b.attrs["data-state"]: b for b in fan.one("div", **{"class": "badges"}).all("a")}
    assert set(badges) == {"failed", "retrying", "delivered"} and badges["failed"].text == "Thất bại 1"
    assert (
        badges["failed"].attrs["href"]
        == f"/status/{quote(URI, safe='')}?channel=fanpage&state=failed#ch-fanpage"
    )
    delivered = fan.one("tr", data_target="fanpage:a")
    assert "100_1" in delivered.text and delivered.all("time")[-1].attrs["datetime"].startswith(
        "2026-11-26T01:00:05"
    )
    assert "08:00:05 26/11" in delivered.text  # shown in Vietnam time
    assert root.one("tr", data_outcome="routed").text.startswith("08:00:00 26/11 Đã phân phối")
    not_caught_up = dom(render_article(article, {"caught_up": False, "as_of": iso(T0)}))
    assert not_caught_up.one("p", data_caught_up="false")


def test_a_national_article_folds_its_3321_zones_per_province_troubled_first() -> None:
    view = StatusFold()
    zones = official_zones()
    assert len(zones) == 3321
    cmds = {z.id: command(z.id, Channel.LOUDSPEAKER) for z in zones}
    for cmd in cmds.values():
        view.add_command(cmd)
    failing = next(z for z in zones if z.province_code == 42)
    for i, z in enumerate(zones):
        if z.id == failing.id:
            view.add_receipt(
                receipt(cmds[z.id], "failed", 9, reason="loudspeaker platform 404 zone_not_found")
            )
        elif i % 10:
            view.add_receipt(receipt(cmds[z.id], "delivered", 9))
    article = view.article(URI)
    assert article is not None
    root = assert_safe_page(render_article(article, {"caught_up": True, "as_of": iso(T0)}))
    section = root.one("section", data_channel="loudspeaker")
    groups = section.all("details")
    names = province_names()
    assert len(groups) == len(names) == 34
    assert (
        groups[0].attrs["data-province"] == "42"
        and "open" in groups[0].attrs
        and "troubled" in groups[0].classes()
    )
    assert all("open" not in g.attrs for g in groups[1:])
    summary = groups[0].one("summary")
    assert names[42] in summary.text and "Thất bại 1" in summary.text
    row = groups[0].all("tr", data_state="failed")[0]
    assert row.attrs["data-target"] == failing.id and failing.name in row.text
    assert row.one("a").attrs["href"] == f"/timeline/{quote(failing.id, safe='')}"
    assert sum(1 for g in groups for r in g.all("tr") if "data-target" in r.attrs) == 3321


# -- HTTP ----------------------------------------------------------------------------------------


async def test_http_pages_negotiation_filters_and_errors(fold: StatusFold) -> None:
    view = StatusView(clock=lambda: T0.timestamp())
    view.fold = fold
    view.caught_up = True
    async with TestClient(TestServer(make_app(view, insecure=True))) as client:
        resp = await client.get(f"/status/{quote(URI, safe='')}?channel=fanpage&state=failed")
        assert resp.status == 200 and resp.content_type == "text/html"
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
        root = assert_safe_page(await resp.text())
        assert [
            r.attrs["data-target"]
            for r in root.one("section", data_channel="fanpage").all("tr")
            if "data-target" in r.attrs
        ] == ["fanpage:b"]
        assert not [r for r in root.one("section", data_channel="zalo").all("tr") if "data-target" in r.attrs]
        assert (await client.get(f"/status/{quote(URI, safe='')}?state=lost")).status == 400
        missing = await client.get("/status/urn%3Anope")
        assert missing.status == 404 and "Chưa có thông tin" in await missing.text()

        browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
        index = await client.get("/articles", headers=browser)
        assert index.content_type == "text/html" and index.headers["Vary"] == "Accept"
        link = assert_safe_page(await index.text()).one("tr", data_uri=URI).one("a")
        assert link.attrs["href"] == f"/status/{quote(URI, safe='')}" and link.text == HOSTILE
        api = await client.get("/articles")  # */*: the API stays JSON
        assert api.content_type == "application/json" and (await api.json())["articles"][0]["uri"] == URI
        assert (await client.get("/articles?format=html")).content_type == "text/html"
        assert (await client.get("/articles?format=json", headers=browser)).content_type == "application/json"
        assert (await client.get("/status")).content_type == "text/html"
        assert (await client.get("/timeline/zone:18073")).status == 503  # no fetcher configured


# -- the timeline --------------------------------------------------------------------------------


DAY = date(2026, 11, 26)


def zone_day(emergencies: tuple[dict[str, Any], ...] = ()) -> ZoneDay:
    def at(h: int, m: int, s: int = 0) -> datetime:
        return datetime(2026, 11, 26, h, m, s, tzinfo=HCM)

    slots = (
        Slot(
            "18073",
            "b1",
            "urn:lantoa:article:a",
            2,
            Priority.PRIORITY,
            at(5, 30),
            at(5, 31, 5),
            0,
            HOSTILE,
            duration_s=65.0,
            audio_url="https://tin.example.vn/audio/b1.wav",
        ),
        Slot(
            "18073",
            "b2",
            "urn:lantoa:article:b",
            1,
            Priority.NORMAL,
            at(5, 31, 5),
            at(5, 32),
            0,
            "Tin thường",
            duration_s=55.0,
            audio_url="https://tin.example.vn/audio/b2.wav",
        ),
        Slot(
            "18073",
            "b3",
            "urn:lantoa:article:c",
            1,
            Priority.NORMAL,
            at(17, 0),
            at(17, 0, 40),
            1,
            "Tin sai",
            correction=True,
            duration_s=40.0,
            audio_url="https://tin.example.vn/audio/b3.wav",
        ),
    )
    plan = DaySchedule(
        "18073", DAY, "Asia/Ho_Chi_Minh", ((at(5, 30), at(6, 15)), (at(17, 0), at(17, 45))), slots
    )
    return ZoneDay(
        "18073",
        DAY,
        "Asia/Ho_Chi_Minh",
        "Phường Thành Sen",
        "Hà Tĩnh",
        "zone:18073",
        schedule=to_json(plan),
        platform={"version": 3, "etag": '"e3"', "updated_at": iso(T0)},
        emergencies=emergencies,
    )


TYPHOON = {
    "emergency_id": "VN-NCHMF-BAO05",
    "status": "active",
    "title": f"Bão số 5 {HOSTILE}",
    "created_at": "2026-11-26T05:31:00.000Z",
    "expires_at": "2026-11-27T00:00:00.000Z",
    "repeat_interval_s": 600,
    "plays_started": 2,
    "zone_count": 147,
    "zones": ["18073"],
}


def test_timeline_lists_windows_slots_and_highlights_emergencies() -> None:
    now = datetime(2026, 11, 26, 12, 40, tzinfo=HCM)  # the typhoon came in at 12:31, Vietnam time
    page = render_timeline(zone_day((TYPHOON,)), now)
    root = assert_safe_page(page)
    assert root.one("meta", http_equiv="refresh").attrs["content"] == "30"
    assert root.one("h1").text == "Lịch phát thanh Phường Thành Sen — Hà Tĩnh"
    items = root.one("ol", **{"class": "timeline"}).children
    kinds = [sorted(i.classes() - {"past", "p-normal-slot", "p-priority-slot"}) for i in items]
    assert kinds == [
        ["window"],
        ["slot"],
        ["slot"],
        ["window-end"],
        ["emergency"],
        ["now"],
        ["window"],
        ["correction", "slot"],
        ["window-end"],
    ]
    first = items[1]
    assert first.attrs["data-priority"] == "priority" and "past" in first.classes()
    assert first.text.startswith("05:30:00 – 05:31:05 " + HOSTILE) and "Ưu tiên v2 · 65 giây" in first.text
    correction = root.one("li", data_bulletin="b3")
    assert correction.attrs["data-correction"] == "1" and "ĐÍNH CHÍNH" in correction.text
    assert "Đính chính: Tin sai" in correction.text
    for node in (
        root.one("div", data_emergency_id="VN-NCHMF-BAO05"),
        root.one("li", data_emergency_id="VN-NCHMF-BAO05"),
    ):
        assert node.one("span", **{"class": "badge b-emergency"}).text == "KHẨN CẤP"
        assert HOSTILE in node.text and "Đang hiệu lực" in node.text and "lặp lại mỗi 10 phút" in node.text
    assert "12:31:00" in root.one("li", data_emergency_id="VN-NCHMF-BAO05").text
    assert "3 lượt phát" in page and "phiên bản 3" in page


def test_a_slot_sharing_time_with_an_emergency_play_says_so() -> None:
    # 17:00:20 Vietnam time, 60 s a play: it cuts the 17:00:00-17:00:40 correction, and nothing else.
    siren = {**TYPHOON, "created_at": "2026-11-26T10:00:20.000Z", "duration_s": 60}
    now = datetime(2026, 11, 26, 17, 0, 30, tzinfo=HCM)
    root = dom(render_timeline(zone_day((siren,)), now))
    clashing = [li.attrs["data-bulletin"] for li in root.all("li") if "clash" in li.classes()]
    assert clashing == ["b3"]
    b3 = root.one("li", data_bulletin="b3")
    assert "Trùng giờ phát khẩn cấp" in b3.text and "Đang phát" not in b3.text
    repeat = {**siren, "created_at": "2026-11-26T09:51:00.000Z"}  # plays at 16:51 and 17:01: no overlap
    assert not [
        li for li in dom(render_timeline(zone_day((repeat,)), now)).all("li") if "clash" in li.classes()
    ]
    assert "Đang phát" in dom(render_timeline(zone_day((repeat,)), now)).one("li", data_bulletin="b3").text
    stopped = {**siren, "stopped_at": "2026-11-26T10:00:00.000Z", "status": "cancelled"}  # cancelled before
    assert not [
        li for li in dom(render_timeline(zone_day((stopped,)), now)).all("li") if "clash" in li.classes()
    ]


def test_timeline_without_a_schedule_shows_the_configured_windows() -> None:
    windows = ((datetime(2026, 11, 26, 5, 30, tzinfo=HCM), datetime(2026, 11, 26, 6, 15, tzinfo=HCM)),)
    zd = ZoneDay("18073", DAY, "Asia/Ho_Chi_Minh", "Phường Thành Sen", windows=windows)
    root = assert_safe_page(render_timeline(zd, datetime(2026, 11, 27, tzinfo=HCM)))
    assert root.one("p", data_schedule="none")
    assert [i.attrs.get("class") for i in root.one("ol").children] == ["window", "window-end"]


async def test_timeline_http_errors_come_back_as_pages() -> None:
    asked: list[tuple[str, date | None]] = []

    async def fetch(zone: str, day: date | None) -> ZoneDay:
        asked.append((zone, day))
        if zone == "nowhere":
            raise UnknownZone("không có vùng loa 'nowhere'")
        if zone == "down":
            raise TimelineUnavailable("loudspeaker platform 503 unavailable: <b>down</b>")
        return zone_day((TYPHOON,))

    view = StatusView(clock=lambda: datetime(2026, 11, 26, 12, 40, tzinfo=HCM).timestamp())
    async with TestClient(TestServer(make_app(view, fetch, insecure=True))) as client:
        ok = await client.get("/timeline/zone%3A18073?date=2026-11-26")
        assert ok.status == 200
        assert assert_safe_page(await ok.text()).all("li", data_emergency_id="VN-NCHMF-BAO05")
        assert (await client.get("/timeline/18073")).status == 200
        assert asked == [("zone:18073", DAY), ("18073", None)]
        assert (await client.get("/timeline/18073?date=26-11-2026")).status == 400
        assert (await client.get("/timeline/nowhere")).status == 404
        down = await client.get("/timeline/down")
        text = await down.text()
        assert down.status == 502
        error = assert_safe_page(text).one("p", **{"class": "error"})
        assert error.text == "loudspeaker platform 503 unavailable: <b>down</b>" and not error.children


# -- the real fetcher against the platform emulator ----------------------------------------------


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[LoudspeakerEmulator, Settings, ManualClock]]:
    clock = ManualClock(datetime(2026, 11, 26, 4, 0, tzinfo=HCM).timestamp())
    emu = LoudspeakerEmulator(tokens=["tok"], clock=clock)
    await emu.start()
    token = tmp_path / "token.json"
    write_secret(token, {"token": "tok"})
    assert emu.base_url
    yield emu, Settings(loudspeaker_api_url=emu.base_url, loudspeaker_token_file=token), clock
    await emu.stop()


async def test_platform_timeline_reads_the_schedule_and_the_emergencies_of_the_zone(
    platform: tuple[LoudspeakerEmulator, Settings, ManualClock],
) -> None:
    emu, settings, clock = platform
    body = dict(zone_day().schedule or {})
    body.pop("as_of", None)
    assert emu.base_url
    client = PlatformClient(emu.base_url, lambda: "tok")
    await client.start()
    try:
        await client.put_schedule("18073", DAY, body, if_match=None)
        common = {
            "text": "Bão số 5",
            "priority": "emergency",
            "repeat_interval_s": 600,
            "expires_at": "2026-11-27T12:00:00+07:00",
        }
        await client.post_emergency(
            {**common, "emergency_id": "E-HERE", "zones": ["18073", "18100"], "title": "Bão"}
        )
        await client.post_emergency({**common, "emergency_id": "E-ELSEWHERE", "zones": ["00004"]})
        await client.post_emergency({**common, "emergency_id": "E-CANCELLED", "zones": ["18073"]})
        await client.delete_emergency("E-CANCELLED")
    finally:
        await client.close()
    fetch = PlatformTimeline(settings, clock=clock)
    found = await fetch("zone:18073", None)  # today in Vietnam
    assert (found.zone, found.day, found.name, found.province) == (
        "18073",
        DAY,
        "Phường Thành Sen",
        "Hà Tĩnh",
    )
    assert found.schedule is not None and [s["bulletin_id"] for s in found.schedule["slots"]] == [
        "b1",
        "b2",
        "b3",
    ]
    assert found.platform is not None and found.platform["version"] == 1
    assert {e["emergency_id"]: e["status"] for e in found.emergencies} == {
        "E-HERE": "active",
        "E-CANCELLED": "cancelled",
    }
    assert (await fetch("18073", DAY)).zone == "18073"

    later = await fetch("18073", DAY + timedelta(days=2))  # no schedule, the emergencies have expired by then
    assert later.schedule is None and later.emergencies == () and len(later.windows) == 2
    root = assert_safe_page(render_timeline(found, datetime.fromtimestamp(clock(), UTC)))
    here = root.one("li", data_emergency_id="E-HERE")
    assert "emergency" in here.classes() and "ended" not in here.classes() and "KHẨN CẤP" in here.text
    assert "ended" in root.one("li", data_emergency_id="E-CANCELLED").classes()

    with pytest.raises(UnknownZone):
        await fetch("zone:999999", None)
    emu.revoke_token("tok")
    with pytest.raises(TimelineUnavailable, match="401"):
        await fetch("zone:18073", None)


def test_no_style_attribute_or_script_anywhere_in_the_stylesheet() -> None:
    assert "<" not in CSS and "url(" not in CSS and re.search(r"expression\s*\(", CSS) is None
