"""The public CAP feed of the status web (issue 16, item 3), without a broker: archive commands of an
alert chain fold into /alerts/feed.atom and /alerts/{id}/cap.xml, open to hubs holding no token;
a Cancel or the expiry takes the alert out, an exercise never gets in, a replayed older version
never comes back, and a malformed entry is refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote
from xml.etree import ElementTree as ET

import pytest
from aiohttp.test_utils import TestClient, TestServer

from schemas.access import AccessList
from schemas.cap_feed import ATOM_NS, CAP_TYPE
from schemas.errors import InvalidContent
from streams.status.view import StatusView
from streams.status.web import make_app

T0 = datetime(2026, 12, 4, 1, 0, tzinfo=UTC)
NS = {"a": ATOM_NS}
XML = "<alert xmlns='urn:oasis:names:tc:emergency:cap:1.2'><identifier>VN:1</identifier></alert>"


class Clock:
    def __init__(self) -> None:
        self.now = T0.timestamp()

    def __call__(self) -> float:
        return self.now


def command(
    action: str, version: int, ident: str = "VN:1", test: bool = False, **alert: Any
) -> dict[str, Any]:
    entry = {
        "identifier": ident,
        "uri": "urn:lantoa:cap:VN:1",
        "version": version,
        "sent": (T0 + timedelta(seconds=version)).isoformat(),
        "expires": (T0 + timedelta(hours=1)).isoformat(),
        "headline": f"Lũ quét v{version}",
        "event": "Lũ quét",
        "area": "Phường Thành Sen",
        "sender": "Đài KTTV Hà Tĩnh",
        "status": "Actual",
        "msg_type": "Alert",
        "link": "https://tin.example.vn/a/urn%3Alantoa%3Acap%3AVN%3A1",
        **alert,
    }
    payload = {"reason": "đã hủy"} if action == "retract" else {"alert": entry, "cap_xml": XML}
    return {
        "uri": "urn:lantoa:cap:VN:1",
        "version": version,
        "action": action,
        "test": test,
        "payload": payload,
    }


def titles(body: bytes) -> list[str]:
    return [e.findtext("a:title", namespaces=NS) or "" for e in ET.fromstring(body).findall("a:entry", NS)]


async def test_the_feed_follows_the_chain_and_is_open_to_hubs() -> None:
    clock = Clock()
    view = StatusView(clock=clock)
    access = AccessList([])  # no identities at all: every other page is refused
    async with TestClient(TestServer(make_app(view, access=access))) as client:
        assert titles(await (await client.get("/alerts/feed.atom")).read()) == []
        with view.lock:
            view.note_archive(command("publish", 1))
            view.note_archive(command("publish", 1, ident="EX", test=True))  # an exercise: never listed
        resp = await client.get("/alerts/feed.atom")
        assert resp.status == 200 and resp.content_type == "application/atom+xml"
        body = await resp.read()
        assert titles(body) == ["Lũ quét v1"]
        link = ET.fromstring(body).find("a:entry/a:link", NS)
        assert link is not None and link.get("type") == CAP_TYPE
        cap = await client.get("/alerts/" + link.get("href", "").removeprefix("./"))
        assert cap.status == 200 and cap.content_type == "application/cap+xml"
        assert await cap.text() == XML  # as received
        assert (await client.get("/articles")).status == 401  # the rest stays closed
        with view.lock:  # an Update, then a replay of the original: the Update stays
            view.note_archive(command("update", 5, ident="VN:2"))
            view.note_archive(command("publish", 1))
        assert titles(await (await client.get("/alerts/feed.atom")).read()) == ["Lũ quét v5"]
        assert (await client.get(f"/alerts/{quote('VN:2', safe='')}/cap.xml")).status == 200
        with view.lock:  # the Cancel, then a late replay of the Update: out, and kept out
            view.note_archive(command("retract", 9))
            view.note_archive(command("update", 5, ident="VN:2"))
        assert titles(await (await client.get("/alerts/feed.atom")).read()) == []
        assert (await client.get("/alerts/VN%3A2/cap.xml")).status == 404


async def test_an_alert_leaves_the_feed_when_it_expires() -> None:
    clock = Clock()
    view = StatusView(clock=clock)
    async with TestClient(TestServer(make_app(view, insecure=True))) as client:
        with view.lock:
            view.note_archive(command("publish", 1, expires=(T0 + timedelta(minutes=10)).isoformat()))
        assert len(titles(await (await client.get("/alerts/feed.atom")).read())) == 1
        clock.now += 601
        assert titles(await (await client.get("/alerts/feed.atom")).read()) == []
        assert (await client.get("/alerts/VN%3A1/cap.xml")).status == 404


@pytest.mark.parametrize(
    "bad",
    [
        {"version": "1"},
        {"sent": "tomorrow"},
        {"identifier": ""},
        {"headline": ["x"]},
        {"uri": "urn:lantoa:cap:SOMEONE-ELSE"},  # a forged entry riding another chain's command
        {"version": 2},  # not the command's version
    ],
)
def test_a_malformed_alert_entry_is_refused(bad: dict[str, Any]) -> None:
    view = StatusView()
    raw = command("publish", 1)
    raw["payload"]["alert"].update(bad)
    with pytest.raises(InvalidContent):
        view.note_archive(raw)
    assert view.feed == {}
