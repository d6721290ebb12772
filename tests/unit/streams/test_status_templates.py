"""The status pages from their templates, with hostile values everywhere a value from the outside
lands (titles, reasons, target ids, channel names, states, versions, times, zone names, emergency
records): each page parses without repair, the hostile text comes back as text in its place, no
element or attribute was injected, and the DOM is the one the f-string pages built before the
templates (``status_golden/*.html``, captured from them; whitespace between elements aside).

``LANTOA_WRITE_STATUS_GOLDEN=1`` rewrites the golden pages from the current renderer: only when a
page is meant to change, and the diff of the golden files then shows how.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from html_dom import Node, dom, parse_errors

from schemas.models import Action, Command, IdempotencyKey, Priority, Receipt
from schemas.registry import official_zones
from schemas.timeline import ZoneDay
from schemas.topics import Channel
from streams.status.article import render_article, render_index
from streams.status.layout import CSS, render_message
from streams.status.model import StatusFold
from streams.status.timeline import render_timeline

GOLDEN = Path(__file__).parent / "status_golden"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")

SCRIPT = '<script>alert("x")</script>'
ATTR = '"><img src=x onerror=alert(1)>'
SQUOTE = "' onmouseover='alert(1)' x='"
AMP = "Tom & Jerry &amp; &lt;b&gt; &#x27; &"
BIDI = "\u202eevil\u202c \u2066isolate\u2069 \u200fRTL"
LONG = "Tiêu đề rất dài <b>đậm</b> & " * 200

# What the pages may contain: anything else was injected.
TAGS = {
    "#document", "html", "head", "body", "meta", "title", "style", "header", "main", "a", "h1", "h2",
    "p", "span", "strong", "section", "div", "nav", "table", "thead", "tbody", "tr", "th", "td",
    "time", "progress", "details", "summary", "br", "ol", "li", "form", "input", "button",
}  # fmt: skip
ATTRS = {
    "lang", "charset", "http-equiv", "content", "name", "class", "href", "id", "datetime", "value",
    "max", "open", "method", "type", "aria-label", "data-uri", "data-article-state", "data-channel",
    "data-settled", "data-expected", "data-state", "data-target", "data-province", "data-outcome",
    "data-caught-up", "data-zone", "data-window", "data-now", "data-bulletin", "data-priority",
    "data-correction", "data-emergency-id", "data-status", "data-reason", "data-schedule",
}  # fmt: skip


# -- hostile inputs ------------------------------------------------------------------------------


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
META = {"caught_up": True, "as_of": iso(T0)}


def target(tid: str, state: str, **extra: Any) -> dict[str, Any]:
    return {
        "target": tid,
        "state": state,
        "action": "publish",
        "version": 2,
        "updated_at": iso(T0),
        "delivered_at": iso(T0) if state == "delivered" else None,
        "external_id": None,
        "reason": None,
        **extra,
    }


def hostile_article() -> dict[str, Any]:
    by_province: dict[int | None, list[str]] = {}
    for z in official_zones():
        by_province.setdefault(z.province_code, []).append(z.id)
    zones = [tid for ids in list(by_province.values())[:16] for tid in ids[:2]]
    speakers = [
        target(tid, "failed" if i % 7 == 0 else "delivered", reason=ATTR if i % 7 == 0 else None)
        for i, tid in enumerate(zones)
    ] + [target(f"zone:{SCRIPT}", "unknown", reason=BIDI)]
    social = [
        target(f"fanpage:{SCRIPT}", "failed", reason=ATTR + LONG, external_id=AMP),
        target(f"fanpage:{SQUOTE}", "delivered", external_id="100_1", live_version=1, action="update"),
        target("fanpage:plain", "retrying", action=SQUOTE, version=AMP, reason="rate limited"),
        target(f"fanpage:{BIDI}", ATTR, updated_at=SCRIPT, delivered_at=17),
    ]
    return {
        "uri": f"urn:lantoa:article:{ATTR}{AMP}",
        "title": SCRIPT + BIDI,
        "state": SQUOTE,
        "version": AMP,
        "updated_at": iso(T0),
        "totals": {"failed": 2, "delivered": 20, ATTR: 1, "retrying": 0},
        "channels": {
            "fanpage": {
                "states": {"failed": 1, "delivered": 1, "retrying": 1, ATTR: 1},
                "expected": 6,
                "settled": 1,
                "targets": social,
            },
            "loudspeaker": {
                "states": {"failed": 5, "delivered": 27, "unknown": 1},
                "expected": None,
                "settled": 27,
                "targets": speakers,
            },
            ATTR: {"states": {SCRIPT: 2}, "expected": SQUOTE, "settled": 0, "targets": []},
            "zalo": {"states": {}, "expected": 3, "settled": 0, "targets": []},
        },
        "events": [
            {"at": iso(T0), "outcome": "routed", "version": 2, "counts": {"fanpage": 4, SCRIPT: 1}},
            {"at": SCRIPT, "outcome": SQUOTE, "version": AMP, "counts": {}, "reason": ATTR + BIDI},
            {"at": None, "outcome": "dead_lettered", "version": None, "reason": LONG},
        ],
    }


def folded_article() -> dict[str, Any]:
    uri = f"urn:lantoa:article:{AMP}"

    def cmd(tid: str, channel: Channel = Channel.FANPAGE) -> dict[str, Any]:
        return Command(
            IdempotencyKey(uri, 1, channel, tid, Action.PUBLISH),
            Priority.NORMAL,
            iso(T0),
            {"message": f"{SCRIPT}{BIDI}\n\nTóm tắt"},
            published_at=iso(T0),
            event_id="e1",
        ).to_dict()

    def receipt(c: dict[str, Any], outcome: str, **extra: Any) -> dict[str, Any]:
        return Receipt(
            uri=uri,
            stage="delivery",
            outcome=outcome,
            at=iso(T0),
            version=1,
            channel=c["channel"],
            target=c["target"],
            command_id=c["command_id"],
            event_id="e1",
            **extra,
        ).to_dict()

    view = StatusFold()
    a, b = cmd(f"fanpage:{SQUOTE}"), cmd(f"zalo:{SCRIPT}", Channel.ZALO)
    for c in (a, b):
        view.add_command(c)
    view.add_receipt(receipt(a, "failed", reason=ATTR))
    view.add_receipt(receipt(b, "delivered", external_id=AMP))
    view.add_receipt(
        Receipt(
            uri=uri, stage="fanout", outcome="routed", at=iso(T0), version=1, counts={"fanpage": 1}
        ).to_dict()
    )
    found = view.article(uri)
    assert found is not None
    return found


def hostile_index() -> list[dict[str, Any]]:
    return [
        {
            "uri": f"urn:lantoa:article:{ATTR}",
            "title": SCRIPT + LONG,
            "state": SQUOTE,
            "version": AMP,
            "updated_at": SCRIPT,
            "channels": {
                "fanpage": {"states": {"failed": 1, "delivered": 2}, "settled": 2},
                ATTR: {"states": {SCRIPT: 1}, "settled": SQUOTE},
                "zalo": {"states": {}},
            },
        },
        {"uri": f"urn:lantoa:article:{BIDI}", "title": None, "state": "routed", "channels": {}},
    ]


def at(h: int, m: int, s: int = 0) -> str:
    return datetime(2026, 11, 26, h, m, s, tzinfo=HCM).isoformat()


def hostile_zone_day() -> ZoneDay:
    emergencies = (
        {
            "emergency_id": ATTR,
            "status": "active",
            "title": SCRIPT,
            "created_at": "2026-11-26T05:31:00.000Z",
            "expires_at": "2026-11-27T00:00:00.000Z",
            "repeat_interval_s": 600,
            "duration_s": 60,
            "plays_started": SQUOTE,
            "zone_count": AMP,
        },
        {
            "emergency_id": f"E-{BIDI}",
            "status": SQUOTE,
            "text": LONG,
            "created_at": "2026-11-25T20:00:00.000Z",
            "stopped_at": "2026-11-26T02:00:00.000Z",
            "repeat_interval_s": "often",
        },
    )
    schedule = {
        "windows": [
            {"index": ATTR, "start": at(5, 30), "end": at(6, 15), "used_s": 125, "capacity_s": 2700},
            {"index": 1, "start": at(17, 0), "end": at(17, 45)},
            {"index": 2, "start": SCRIPT, "end": at(18, 0)},
        ],
        "slots": [
            {
                "bulletin_id": ATTR,
                "uri": f"urn:lantoa:article:{AMP}",
                "version": SQUOTE,
                "priority": "priority",
                "title": SCRIPT,
                "start": at(5, 30),
                "end": at(5, 31, 5),
                "duration_s": 65,
            },
            {
                "bulletin_id": "b2",
                "uri": "",
                "version": 1,
                "priority": SQUOTE,
                "title": BIDI,
                "correction": True,
                "start": at(12, 30),
                "end": at(12, 45),
                "duration_s": "x",
            },
            {
                "bulletin_id": "b3",
                "uri": "urn:lantoa:article:c",
                "version": 1,
                "title": None,
                "start": at(17, 0),
                "end": at(17, 0, 40),
                "duration_s": 40,
            },
            {"bulletin_id": "bad", "start": None, "end": at(18, 0)},
        ],
        "unplaced": [
            {"uri": SCRIPT, "version": AMP, "reason": ATTR, "detail": LONG},
            {"uri": "urn:lantoa:article:d", "version": 1, "reason": "too_long", "detail": None},
            {"uri": None, "version": None, "reason": None},
        ],
        "totals": {"slots": AMP, "seconds": 145, "corrections": SCRIPT},
    }
    return ZoneDay(
        ATTR,
        date(2026, 11, 26),
        "Asia/Ho_Chi_Minh",
        SCRIPT,
        BIDI,
        f"zone:{SQUOTE}",
        schedule=schedule,
        platform={"version": SCRIPT, "etag": f'"{AMP}"', "updated_at": ATTR},
        emergencies=emergencies,
    )


NOW = datetime(2026, 11, 26, 12, 40, tzinfo=HCM)
WINDOWS = ((datetime(2026, 11, 26, 5, 30, tzinfo=HCM), datetime(2026, 11, 26, 6, 15, tzinfo=HCM)),)

PAGES: dict[str, Callable[[], str]] = {
    "article": lambda: render_article(hostile_article(), META),
    "article_filtered": lambda: render_article(hostile_article(), META, channel="fanpage", state="failed"),
    "article_hostile_filter": lambda: render_article(
        hostile_article(), {"caught_up": False, "as_of": SCRIPT}, channel=ATTR, state=SQUOTE, refresh=None
    ),
    "article_folded": lambda: render_article(folded_article(), {"caught_up": False, "as_of": None}),
    "index": lambda: render_index(hostile_index(), META),
    "index_empty": lambda: render_index([], {"caught_up": False, "as_of": ATTR}, refresh=None),
    "timeline": lambda: render_timeline(hostile_zone_day(), NOW),
    "timeline_unscheduled": lambda: render_timeline(
        ZoneDay(SQUOTE, date(2026, 11, 26), "Asia/Ho_Chi_Minh", name=AMP, windows=WINDOWS), NOW, refresh=None
    ),
    "timeline_empty": lambda: render_timeline(
        ZoneDay("18073", date(2026, 11, 27), "Asia/Ho_Chi_Minh", target_id="18073"), NOW
    ),
    "message": lambda: render_message(SCRIPT, ATTR + LONG, refresh=10, detail=AMP + BIDI),
    "message_plain": lambda: render_message(SQUOTE, BIDI),
}


# -- comparing pages -----------------------------------------------------------------------------


Canon = tuple[str, tuple[tuple[str, str], ...], tuple[Any, ...]]


def canon(node: Node) -> Canon:
    """The node as a comparable tree: whitespace runs in text collapsed, whitespace-only text
    between elements dropped (the templates put newlines where the f-strings put none)."""
    parts: list[Any] = []
    for part in node.texts:
        if isinstance(part, Node):
            parts.append(canon(part))
        elif node.tag in ("style", "pre"):
            parts.append(part)
        elif text := " ".join(part.split()):
            parts.append(text)
    return node.tag, tuple(sorted(node.attrs.items())), tuple(parts)


def first_difference(a: Canon, b: Canon, path: str = "") -> str:
    here = f"{path}/{a[0]}"
    if a[0] != b[0] or a[1] != b[1]:
        return f"{here}: {a[:2]} != {b[:2]}"
    for i, (x, y) in enumerate(zip(a[2], b[2], strict=False)):
        if isinstance(x, tuple) and isinstance(y, tuple):
            if x != y:
                return first_difference(x, y, f"{here}[{i}]")
        elif x != y:
            return f"{here}[{i}]: {x!r:.200} != {y!r:.200}"
    return f"{here}: {len(a[2])} parts != {len(b[2])}"


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_has_the_dom_the_f_string_pages_had(name: str) -> None:
    page = PAGES[name]()
    golden = GOLDEN / f"{name}.html"
    if os.environ.get("LANTOA_WRITE_STATUS_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        golden.write_text(page, encoding="utf-8")
    before, after = canon(dom(golden.read_text(encoding="utf-8"))), canon(dom(page))
    assert after == before, first_difference(after, before)


@pytest.mark.parametrize("name", sorted(PAGES))
def test_each_page_is_well_formed_and_nothing_hostile_became_markup(name: str) -> None:
    page = PAGES[name]()
    assert parse_errors(page) == []
    root = dom(page)
    for node in root.iter():
        assert node.tag in TAGS, node.tag
        assert set(node.attrs) <= ATTRS, node.attrs
    # Whatever was hostile is text or an attribute value, whole: never cut into markup.
    style = "".join(t for t in root.one("style").texts if isinstance(t, str))
    assert style == CSS
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in root.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert not [n for n in root.iter() if n.tag in ("script", "img", "b", "i", "iframe")]


def test_hostile_values_come_back_as_text_and_attribute_values_in_their_place() -> None:
    article = dom(PAGES["article"]())
    assert article.one("h1").text == " ".join((SCRIPT + BIDI).split())
    assert article.one("h1").attrs["data-uri"] == f"urn:lantoa:article:{ATTR}{AMP}"
    assert article.one("title").text == " ".join(f"{SCRIPT}{BIDI} · Lantoa".split())
    assert article.one("strong", data_article_state=SQUOTE).text == SQUOTE
    failed = article.one("tr", data_target=f"fanpage:{SCRIPT}")
    assert failed.one("td", **{"class": "reason"}).text == " ".join((ATTR + LONG).split())
    assert failed.one("td", **{"class": "ext opt"}).text == AMP
    odd = article.one("tr", data_target=f"fanpage:{BIDI}")
    assert odd.attrs["data-state"] == ATTR and odd.attrs["class"] == f"t-{ATTR}"
    assert SCRIPT in odd.text and "17" in odd.text  # an unreadable time is shown as it came
    assert article.one("tr", data_target=f"fanpage:{SQUOTE}").attrs["data-state"] == "delivered"
    weird = article.one("section", data_channel=ATTR)
    assert weird.attrs["id"] == f"ch-{ATTR}" and weird.one("h2").text == ATTR
    assert weird.one("strong", data_settled="0").attrs["data-expected"] == "2"
    assert weird.one("a", data_state=SCRIPT).text == f"{SCRIPT} 2"
    assert (
        article.one("tr", data_target=f"zone:{SCRIPT}")
        .one("a")
        .attrs["href"]
        .startswith("/timeline/zone%3A%3C")
    )
    assert article.one("tr", data_outcome=SQUOTE).one("td", **{"class": "reason"}).text == " ".join(
        (ATTR + BIDI).split()
    )

    filtered = dom(PAGES["article_hostile_filter"]())
    nav = filtered.one("nav", **{"class": "filters"})
    assert nav.one("span").text == f"Đang lọc: {ATTR}, {SQUOTE}"
    assert filtered.one("p", data_caught_up="false")
    assert SCRIPT in filtered.all("p", **{"class": "muted"})[0].text  # the view's time, as it came

    index = dom(PAGES["index"]())
    row = index.one("tr", data_uri=f"urn:lantoa:article:{ATTR}")
    assert row.one("a").text == " ".join((SCRIPT + LONG).split())
    assert (
        row.one("a").attrs["href"]
        == "/status/urn%3Alantoa%3Aarticle%3A%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    )
    assert row.one("span", data_channel=ATTR).attrs["data-state"] == SCRIPT
    assert row.one("span", data_channel=ATTR).text == f"{ATTR} {SQUOTE}/1"
    assert index.one("tr", data_uri=f"urn:lantoa:article:{BIDI}").one("a").text == " ".join(
        f"urn:lantoa:article:{BIDI}".split()
    )

    timeline = dom(PAGES["timeline"]())
    assert timeline.one("h1").attrs["data-zone"] == ATTR
    assert timeline.one("h1").text == " ".join(f"Lịch phát thanh {SCRIPT} — {BIDI}".split())
    slot = timeline.one("li", data_bulletin=ATTR)
    assert SCRIPT in slot.text and "v" + SQUOTE in slot.text
    assert (
        slot.one("a").attrs["href"]
        == "/status/urn%3Alantoa%3Aarticle%3ATom%20%26%20Jerry%20%26amp%3B%20%26lt%3Bb%26gt%3B%20%26%23x27%3B%20%26"
    )
    assert timeline.one("li", data_bulletin="b2").attrs["data-priority"] == SQUOTE
    box = timeline.one("div", data_emergency_id=ATTR)
    assert box.one("strong").text == SCRIPT and SQUOTE in box.text and AMP in box.text
    assert timeline.one("li", data_emergency_id=f"E-{BIDI}").attrs["data-status"] == SQUOTE
    assert timeline.one("tr", data_reason=ATTR).one("a").text == SCRIPT
    assert timeline.one("li", data_window=ATTR)
    etag = [p for p in timeline.all("p") if "etag" in p.text]
    assert len(etag) == 1 and f'"{AMP}"' in etag[0].text and SCRIPT in etag[0].text

    message = dom(PAGES["message"]())
    assert message.one("h1").text == SCRIPT
    assert message.one("p", **{"class": "error"}).text == " ".join((AMP + BIDI).split())
    for name, render in PAGES.items():
        page = render()
        for hostile in (SCRIPT, ATTR, SQUOTE):
            assert hostile not in page, (name, hostile)  # every one of them escaped, quotes too


def test_the_two_values_the_f_string_timeline_left_unescaped_are_escaped() -> None:
    """An emergency's status (shown in its detail line) and a slot's priority (in the class
    attribute) went into the f-string page unescaped: markup in either became elements or
    attributes (the golden pages use values that were harmless there)."""
    zd = hostile_zone_day()
    assert zd.schedule is not None
    slots = [{**s, "priority": ATTR} if s.get("bulletin_id") == "b3" else s for s in zd.schedule["slots"]]
    emergencies = tuple({**e, "status": SCRIPT} for e in zd.emergencies)
    page = render_timeline(
        ZoneDay(
            zd.zone,
            zd.day,
            zd.timezone,
            zd.name,
            zd.province,
            zd.target_id,
            schedule={**zd.schedule, "slots": slots},
            emergencies=emergencies,
        ),  # fmt: skip
        NOW,
    )
    assert parse_errors(page) == []
    root = dom(page)
    assert not [n for n in root.iter() if n.tag in ("script", "img")]
    slot = root.one("li", data_bulletin="b3")
    assert slot.attrs["data-priority"] == ATTR and f"p-{ATTR}-slot" in slot.attrs["class"]
    assert set(slot.attrs) == {"class", "data-bulletin", "data-priority"}
    for node in root.all(data_emergency_id=ATTR):
        assert node.attrs["data-status"] == SCRIPT and f"{SCRIPT} · phát lúc" in node.text
