"""The status pages in a real browser: headless Chromium over the stream worker's web port.

A real broker, the stream worker (status view on LANTOA_WEB_PORT), the platform emulators and
the fanpage, Zalo, loudspeaker and emergency-lane adapters. A national sample article goes
out (3 pages, 2 Zalo groups, 3,321 loudspeaker zones); the editor page must list every page and
group as delivered, with its post id, and fold the zones per province. Then the sample typhoon
(times moved to now) pre-empts the wards of Hà Tĩnh and Quảng Trị; the timeline page of one of
them (Phường Thành Sen, zone:18073) must show the article's slot and the emergency in red.

Chromium renders each page twice: ``--dump-dom`` (the DOM after parsing, read with html.parser)
and ``--screenshot`` into test-artifacts/ (kept by CI; gitignored), next to the dumped DOM.
Without Chromium the test fails (``apt-get install -y chromium fonts-noto-core``, see
infra/system-deps.sh): a browser test that skips checks nothing.

The zone gets one broadcast window covering the whole day, every day (a targets file override):
with the default windows (05:30-06:15, 17:00-17:45, Monday to Saturday) a run in the evening
or on a Sunday would find no slot left to plan today.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from helpers import SHARED, sample_paths
from html_dom import Node, dom, parse_errors

from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.cap_ingest import AlertProducer, check
from producers.client import PublishClient
from producers.targets import load_targets, local_registry
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
HCM = ZoneInfo("Asia/Ho_Chi_Minh")
ZONE, ZONE_CODE = "zone:18073", "18073"  # Phường Thành Sen, Hà Tĩnh (province 42): in the typhoon's path
TYPHOON_ID = "VN-NCHMF-2026-0917-BAO05-01"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


# -- the DOM Chromium dumps, read with html.parser -----------------------------------------------


# -- Chromium ------------------------------------------------------------------------------------


class Chromium:
    """Headless Chromium, one fresh profile per call."""

    def __init__(self, binary: str, profiles: Path) -> None:
        self.binary, self.profiles = binary, profiles

    def _run(self, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
        profile = self.profiles / uuid.uuid4().hex[:8]
        args = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra, url]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, f"chromium failed ({done.returncode}) on {url}: {done.stderr[-2000:]}"
        return done

    def dump_dom(self, url: str) -> str:
        return self._run(url, "--dump-dom").stdout

    def screenshot(self, url: str, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.unlink(missing_ok=True)
        self._run(url, f"--screenshot={path}", "--window-size=1280,1600")
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000, f"no real screenshot at {path}"
        return path


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    binary = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if binary is None:
        pytest.fail(
            "headless Chromium not found: install the Debian packages chromium and fonts-noto-core "
            "(apt-get install -y chromium fonts-noto-core; infra/system-deps.sh does it)"
        )
    return Chromium(binary, tmp_path_factory.mktemp("chromium"))


# -- the stack -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Stack:
    emus: Emulators
    settings: Settings
    procs: dict[str, Proc]
    base: str
    logs: Path

    def get(self, path: str) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(self.base + path, timeout=10) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def status(self, uri: str) -> dict[str, Any] | None:
        code, body = self.get(f"/articles/{urllib.parse.quote(uri, safe='')}/status")
        return body if code == 200 else None

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            for p in self.procs.values():
                assert p.alive(), f"{p.name} died; see {self.logs / (p.name + '.log')}"
            try:
                got = predicate()
            except (OSError, KeyError):
                got = None
            if got:
                return got
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.5)


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("pages")
    targets = tmp / "targets.toml"
    targets.write_text(
        DEFAULT_TARGETS_FILE.read_text(encoding="utf-8")
        + (
            f'\n[[loudspeaker.zones]]\nid = "{ZONE}"\nwindows = ["00:00-23:59"]\ndays = [1, 2, 3, 4, 5, 6, 7]\n'
        ),
        encoding="utf-8",
    )
    emus = Emulators(tmp / "emu", targets)
    prefix = f"p{uuid.uuid4().hex[:6]}."
    port = free_port()
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_WEB_PORT": str(port),
        "LANTOA_DATA_DIR": str(tmp / "data"),
        "LANTOA_TARGETS_FILE": str(targets),
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_EMERGENCY_REPEAT_S": "60",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    procs: dict[str, Proc] = {}
    try:
        for name, args in (
            ("streams", ["worker"]),
            ("fanpage", ["adapter", "fanpage"]),
            ("zalo", ["adapter", "zalo"]),
            ("loudspeaker", ["adapter", "loudspeaker"]),
            ("emergency", ["adapter", "emergency"]),
        ):
            procs[name] = Proc(name, args, env, tmp / f"{name}.log")
        s = Stack(emus, settings, procs, f"http://127.0.0.1:{port}", tmp)
        s.wait(lambda: s.get("/healthz")[1]["caught_up"], 60, "the status view to catch up")
        yield s
    finally:
        for p in procs.values():
            p.stop()
        emus.close()


@pytest.fixture(scope="module")
def article(stack: Stack) -> dict[str, Any]:
    """A national sample (subject: chuyển đổi số): 3 pages, 2 groups, every zone."""
    path = sample_paths()[2]
    doc: dict[str, Any] = orjson.loads(path.read_bytes())
    with PublishClient(stack.settings) as client:
        client.publish(path.read_bytes())
    return doc


# -- the tests -----------------------------------------------------------------------------------


def targets_of(view: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    return list(view["channels"].get(channel, {}).get("targets", []))


@pytest.mark.timeout(300)
def test_editor_page_shows_each_page_and_group_delivered_and_zones_per_province(
    stack: Stack, article: dict[str, Any], chromium: Chromium
) -> None:
    uri = article["uri"]
    headline = article["headlines"][0]["value"]

    def delivered() -> dict[str, Any] | None:
        view = stack.status(uri)
        if view is None:
            return None
        social = targets_of(view, "fanpage") + targets_of(view, "zalo")
        return view if len(social) == 5 and all(t["state"] == "delivered" for t in social) else None

    view = stack.wait(delivered, 120, "the article at every page and group")
    assert view["channels"]["loudspeaker"]["expected"] == 3321

    url = f"{stack.base}/status/{urllib.parse.quote(uri, safe='')}"
    source = chromium.dump_dom(url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "status-page.html").write_text(source, encoding="utf-8")
    page = dom(source)
    assert page.one("html").attrs["lang"] == "vi"
    assert page.one("h1").text == headline and page.one("h1").attrs["data-uri"] == uri
    assert page.one("meta", http_equiv="refresh").attrs["content"] == "10"
    assert "default-src 'none'" in page.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert not page.all("script")

    expected = {
        "fanpage": {t["target"]: t["external_id"] for t in targets_of(view, "fanpage")},
        "zalo": {t["target"]: t["external_id"] for t in targets_of(view, "zalo")},
    }
    assert set(expected["fanpage"]) == {
        "fanpage:thong-tin-chinh-phu",
        "fanpage:ha-noi",
        "fanpage:chuyen-doi-so-ha-tinh",
    }
    for channel, ids in expected.items():
        section = page.one("section", data_channel=channel)
        rows = {r.attrs["data-target"]: r for r in section.all("tr") if "data-target" in r.attrs}
        assert set(rows) == set(ids), channel
        for target, row in rows.items():
            assert row.attrs["data-state"] == "delivered"
            assert row.one("span", data_state="delivered").text == "Đã giao"
            assert ids[target] and row.one("td", **{"class": "ext opt"}).text == ids[target]
        assert section.one("strong", data_expected=str(len(ids))).text == f"{len(ids)}/{len(ids)}"

    loud = page.one("section", data_channel="loudspeaker")
    assert loud.one("strong", data_expected="3321")
    groups = loud.all("details")
    assert len(groups) == 34  # every province, each behind its expander
    assert sum(1 for g in groups for r in g.all("tr") if "data-target" in r.attrs) == 3321
    assert any("Hà Tĩnh" in g.one("summary").text for g in groups)

    chromium.screenshot(url, ARTIFACTS / "status-page.png")

    index = dom(chromium.dump_dom(f"{stack.base}/articles"))  # the browser asks for HTML
    link = index.one("tr", data_uri=uri).one("a")
    assert link.text == headline and link.attrs["href"] == f"/status/{urllib.parse.quote(uri, safe='')}"


@pytest.mark.timeout(300)
def test_timeline_of_a_zone_shows_its_slots_and_the_typhoon_in_red(
    stack: Stack, article: dict[str, Any], chromium: Chromium
) -> None:
    now = datetime.now(HCM).replace(microsecond=0)

    def scheduled() -> date | None:
        docs = stack.emus.control("loudspeaker", "GET", f"/_control/schedules?zone={ZONE_CODE}")["schedules"]
        days = sorted(
            d["date"] for d in docs if any(s["uri"] == article["uri"] for s in d["schedule"]["slots"])
        )
        return date.fromisoformat(days[0]) if days else None

    day = stack.wait(scheduled, 240, f"the article in the schedule of {ZONE}")

    # The sample typhoon, in force from half an hour ago to tomorrow.
    typhoon = (
        (SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap")
        .read_bytes()
        .replace(b"2026-09-17T05:30:00+07:00", (now - timedelta(minutes=30)).isoformat().encode())
        .replace(b"2026-09-18T05:30:00+07:00", (now + timedelta(days=1)).isoformat().encode())
    )
    producer = AlertProducer(stack.settings)
    try:
        sent = producer.send(check(typhoon, local_registry(stack.settings)))
    finally:
        producer.close()
    assert sent["lane"] == "emergency" and sent["zones"] == 147
    stack.wait(
        lambda: stack.emus.control(
            "loudspeaker", "GET", f"/_control/preemptions?emergency_id={TYPHOON_ID}&zone={ZONE_CODE}"
        )["preemptions"],
        120,
        f"the typhoon at {ZONE}",
    )

    url = f"{stack.base}/timeline/{urllib.parse.quote(ZONE, safe='')}?date={day.isoformat()}"
    source = chromium.dump_dom(url)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "timeline-page.html").write_text(source, encoding="utf-8")
    page = dom(source)
    assert page.one("html").attrs["lang"] == "vi" and not page.all("script")
    assert page.one("h1").text == "Lịch phát thanh Phường Thành Sen — Hà Tĩnh"
    assert page.one("h1").attrs["data-zone"] == ZONE_CODE

    timeline = page.one("ol", **{"class": "timeline"})
    slots = [li for li in timeline.children if "slot" in li.classes()]
    mine = [
        li
        for li in slots
        if li.one("a").attrs["href"] == f"/status/{urllib.parse.quote(article['uri'], safe='')}"
    ]
    assert mine and mine[0].attrs["data-priority"] in ("normal", "priority")
    assert [li.classes() & {"window"} for li in timeline.children][0] == {"window"}

    for where in (
        page.one("div", data_emergency_id=TYPHOON_ID),
        timeline.one("li", data_emergency_id=TYPHOON_ID),
    ):
        assert "emergency" in where.classes() and "ended" not in where.classes()
        assert where.attrs["data-status"] == "active"
        assert where.one("span", **{"class": "badge b-emergency"}).text == "KHẨN CẤP"
        assert "Bão số 5" in where.text and "Đang hiệu lực" in where.text
    if day == now.date():  # today: the typhoon came in a moment ago, just before "now"
        order = [
            li.attrs.get("data-emergency-id") or ("now" if "now" in li.classes() else "")
            for li in timeline.children
        ]
        assert order.index(TYPHOON_ID) < order.index("now")
    chromium.screenshot(url, ARTIFACTS / "timeline-page.png")
