"""A warning on every channel people watch (issue 16), on the real broker and S3 server.

A ward-level Actual flood alert for four wards of Hà Tĩnh: the four zones are pre-empted, Hà
Tĩnh's fanpage gets one post, each Hà Tĩnh Zalo group one message, the archive a page and the CAP
XML as received, the public feed (in the bucket and on the status web) an entry. Its Cancel
deletes the post, sends "ĐÃ HỦY CẢNH BÁO" to the groups, marks the archived page and empties the
feed, with a receipt per target. An Exercise copy reaches only the test page and the test group.
No national or other province's page or group ever sees any of it.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.request import urlopen
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import boto3
import orjson
import pytest
from helpers import TYPHOON_ALERT, free_port, in_force, s3, wait_for
from vietnam_provinces import Ward

from consumers.archive.adapter import article_prefix
from consumers.delivery.base import article_marker
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.s3.__main__ import write_credentials_file
from infra.local.s3.versitygw import S3Server
from infra.local.stack import Emulators, Proc
from producers.cap_ingest import AlertProducer, check
from producers.targets import load_targets, local_registry
from schemas.cap_feed import ATOM_NS
from schemas.emergency import alert_uri
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.settings import Settings
from schemas.topics import Topic

NS = {"a": ATOM_NS}
HA_TINH_PAGE = "100000000000042"
HA_TINH_GROUPS = {"g-000000000000004201", "g-000000000000004202"}
TEST_PAGE, TEST_GROUP = "100000000000900", "g-000000000000000900"
EXTRA_TARGETS = """
[[zalo]]
id = "zalo:nhom-thach-ha"
name = "Nhóm Zalo xã Thạch Hà"
group_id = "g-000000000000004201"
provinces = [42]

[[zalo]]
id = "zalo:nhom-bac-trung-bo"
name = "Nhóm Zalo Bắc Trung Bộ"
group_id = "g-000000000000004202"
provinces = [38, 40, 42]
"""


def flood_alert(identifier: str, wards: list[int], status: str = "Actual") -> bytes:
    text = in_force(TYPHOON_ALERT.read_bytes()).decode()
    start, end = text.index("<area>"), text.index("</area>") + len("</area>")
    codes = "".join(f"<geocode><valueName>VN-DVHC</valueName><value>{w:05d}</value></geocode>" for w in wards)
    text = text[:start] + f"<area><areaDesc>Bốn phường ven sông Lam</areaDesc>{codes}</area>" + text[end:]
    text = text.replace("VN-NCHMF-2026-0917-BAO05-01", identifier).replace(
        "<event>Bão số 5</event>", "<event>Lũ quét</event>"
    )
    return text.replace("<status>Actual</status>", f"<status>{status}</status>").encode()


def follow_up(
    alert: bytes, identifier: str, new_id: str, kind: str, refs: list[tuple[str, str]], sent: datetime
) -> bytes:
    """An Update or Cancel of ``alert`` sent at ``sent``, referencing ``refs`` (identifier, sent)."""
    old_sent = alert.decode().split("<sent>", 1)[1].split("</sent>", 1)[0]
    text = alert.decode().replace(
        f"<identifier>{identifier}</identifier>", f"<identifier>{new_id}</identifier>"
    )
    text = text.replace(f"<sent>{old_sent}</sent>", f"<sent>{sent.isoformat(timespec='seconds')}</sent>", 1)
    text = text.replace("<msgType>Alert</msgType>", f"<msgType>{kind}</msgType>")
    listed = " ".join(f"canhbao@nchmf.example.vn,{i},{t}" for i, t in refs)
    return text.replace(
        "<scope>Public</scope>", f"<scope>Public</scope><references>{listed}</references>"
    ).encode()


def sent_of(alert: bytes) -> str:
    return alert.decode().split("<sent>", 1)[1].split("</sent>", 1)[0]


@pytest.mark.timeout(400)
def test_a_ha_tinh_warning_on_every_channel_then_its_cancel_then_a_drill(
    kafka_bootstrap: str, s3: S3Server, tmp_path: Path
) -> None:
    targets = tmp_path / "targets.toml"
    targets.write_text(DEFAULT_TARGETS_FILE.read_text(encoding="utf-8") + EXTRA_TARGETS, encoding="utf-8")
    emus = Emulators(tmp_path / "emu", targets)
    prefix = f"c{uuid.uuid4().hex[:6]}."
    bucket = f"lt-{uuid.uuid4().hex[:12]}"
    creds = tmp_path / "s3-credentials"
    write_credentials_file(creds, s3.access_key, s3.secret_key)
    port = free_port()
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_WEB_PORT": str(port),
        "LANTOA_DATA_DIR": str(tmp_path / "data"),
        "LANTOA_TARGETS_FILE": str(targets),
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_EMERGENCY_REPEAT_S": "60",
        "LANTOA_ARCHIVE_FEED_REFRESH_S": "1",
        "LANTOA_S3_BUCKET": bucket,
        "LANTOA_S3_ENDPOINT": s3.endpoint_url,
        "LANTOA_S3_REGION": s3.region,
        "LANTOA_S3_CREDENTIALS_FILE": str(creds),
        "LANTOA_S3_ADDRESSING_STYLE": "path",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    registry = local_registry(settings)
    procs = {
        n: Proc(n, a, env, tmp_path / f"{n}.log")
        for n, a in (
            ("streams", ["worker"]),
            ("emergency", ["adapter", "emergency"]),
            ("fanpage", ["adapter", "fanpage"]),
            ("zalo", ["adapter", "zalo"]),
            ("archive", ["adapter", "archive"]),
        )
    }
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
        region_name=s3.region,
    )
    producer = AlertProducer(settings)
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    wards = sorted(int(w.code) for w in Ward.iter_all() if int(w.province_code) == 42)[:4]
    eid = f"VN-KTTV-HT-{uuid.uuid4().hex[:8]}"
    uri = alert_uri(eid)
    marker = article_marker(uri)
    alert = flood_alert(eid, wards)

    def posts(mark: str = marker) -> list[dict[str, Any]]:
        got = emus.control("graph", "GET", "/_control/posts")
        return [p for p in (got["posts"] if isinstance(got, dict) else got) if mark in (p["message"] or "")]

    def messages(mark: str = marker) -> list[dict[str, Any]]:
        got = emus.control("zalo", "GET", "/_control/messages")
        return [m for m in (got["messages"] if isinstance(got, dict) else got) if mark in (m["text"] or "")]

    def s3_get(key: str) -> bytes | None:
        try:
            return bytes(client.get_object(Bucket=bucket, Key=key)["Body"].read())
        except client.exceptions.NoSuchKey:
            return None

    def feed_ids(body: bytes | None) -> list[str]:
        if not body:
            return []
        return [e.findtext("a:id", namespaces=NS) or "" for e in ET.fromstring(body).findall("a:entry", NS)]

    def web_feed() -> bytes:
        with urlopen(f"http://127.0.0.1:{port}/alerts/feed.atom", timeout=5) as resp:
            return bytes(resp.read())

    try:
        producer.send(check(alert, registry))
        got = wait_for(
            lambda: (
                emus.control("loudspeaker", "GET", f"/_control/preemptions?emergency_id={eid}")
                if len(posts()) >= 1 and len(messages()) >= 2
                else None
            ),
            120,
            "the alert on the page, in the groups and at the zones",
            procs,
        )
        assert sorted(int(p["zone"]) for p in got["preemptions"]) == wards
        [post] = posts()
        assert post["page_id"] == HA_TINH_PAGE and not post["deleted"]
        assert "CẢNH BÁO: LŨ QUÉT" in post["message"] and "Bốn phường ven sông Lam" in post["message"]
        assert "Hướng dẫn: " in post["message"] and post["link"].endswith(uri.replace(":", "%3A"))
        sent = messages()
        assert sorted(m["recipient"] for m in sent) == sorted(HA_TINH_GROUPS)  # one each, no other group

        root = article_prefix("", uri)
        archived = wait_for(
            lambda: (
                [k["Key"] for k in client.list_objects_v2(Bucket=bucket, Prefix=root).get("Contents", [])]
                if s3_get(root + "manifest.json")
                else None
            ),
            60,
            "the archived alert",
            procs,
        )
        [cap_key] = [k for k in archived if k.endswith("/cap.xml")]
        assert s3_get(cap_key) == alert  # as received, signature (had it one) intact
        page_key = cap_key.replace("cap.xml", "index.html")
        shown = (s3_get(page_key) or b"").decode()
        assert "CẢNH BÁO: LŨ QUÉT" in shown and "Bốn phường ven sông Lam" in shown
        feed = wait_for(lambda: s3_get("alerts/feed.atom"), 30, "the feed in the bucket", procs)
        assert feed_ids(feed) == [uri]
        link = ET.fromstring(feed).find("a:entry/a:link", NS)
        assert link is not None and link.get("href") == "../" + cap_key  # relative to alerts/
        assert feed_ids(
            wait_for(lambda: web_feed() if feed_ids(web_feed()) else None, 30, "web feed", procs)
        ) == [uri]
        with urlopen(f"http://127.0.0.1:{port}/alerts/{eid}/cap.xml", timeout=5) as resp:
            assert resp.read() == alert

        # -- an Update: the post edited in place, a correction in each group, a new version ---
        now = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).replace(microsecond=0)
        update = follow_up(alert, eid, f"{eid}-CN", "Update", [(eid, sent_of(alert))], now).replace(
            "Khẩn cấp: Bão số 5 đổ bộ vào khu vực Hà Tĩnh – Quảng Trị".encode(),
            "Lũ quét lan rộng ra bốn phường".encode(),
        )
        producer.send(check(update, registry))
        wait_for(
            lambda: (
                True if "Lũ quét lan rộng" in (posts()[0]["message"] or "") and len(messages()) >= 4 else None
            ),
            120,
            "the Update at the page and in the groups",
            procs,
        )
        [edited] = posts()
        assert edited["id"] == post["id"] and "CẬP NHẬT CẢNH BÁO" in edited["message"]  # edited, not reposted
        corrections = [m for m in messages() if m["text"].startswith("[Cập nhật]")]
        assert sorted(m["recipient"] for m in corrections) == sorted(HA_TINH_GROUPS)

        def feed_titles() -> list[str]:
            body = s3_get("alerts/feed.atom") or b"<feed/>"
            return [
                e.findtext("a:title", namespaces=NS) or "" for e in ET.fromstring(body).findall("a:entry", NS)
            ]

        titles = wait_for(
            lambda: feed_titles() if feed_titles() == ["Lũ quét lan rộng ra bốn phường"] else None,
            30,
            "the feed entry updated",
            procs,
        )
        assert titles == ["Lũ quét lan rộng ra bốn phường"]
        versions = orjson.loads(s3_get(root + "manifest.json") or b"{}")["versions"]
        assert len(versions) == 2  # the archive keeps both

        # -- the Cancel -----------------------------------------------------------------------
        cancel = follow_up(
            alert,
            eid,
            f"{eid}-HUY",
            "Cancel",
            [(eid, sent_of(alert)), (f"{eid}-CN", sent_of(update))],
            now + timedelta(seconds=1),
        )
        producer.send(check(cancel, registry))
        wait_for(
            lambda: True if posts()[0]["deleted"] and len(messages()) >= 6 else None,
            120,
            "the post deleted and the cancellation in the groups",
            procs,
        )
        notices = [m for m in messages() if m["text"].startswith("ĐÃ HỦY CẢNH BÁO")]
        assert sorted(m["recipient"] for m in notices) == sorted(HA_TINH_GROUPS)
        # it names what is cancelled (the headline last sent there, the Update's) and says why (the Cancel's own words)
        assert all(
            "«Lũ quét lan rộng ra bốn phường" in m["text"] and "Hồi 04 giờ" in m["text"] for m in notices
        ), notices
        wait_for(
            lambda: True if not feed_ids(s3_get("alerts/feed.atom")) else None, 30, "feed emptied", procs
        )
        wait_for(lambda: True if not feed_ids(web_feed()) else None, 30, "web feed emptied", procs)
        page = (s3_get(page_key) or b"").decode()
        assert "Cảnh báo đã được hủy" in page
        assert s3_get(cap_key) == alert  # the record stays readable

        def cancel_receipts() -> dict[tuple[str, str], str]:
            receipts.poll()
            rs = [orjson.loads(r.value) for r in receipts.records]
            return {
                (r["channel"], r["target"]): r["outcome"]
                for r in rs
                if r["uri"] == uri
                and r["stage"] == "delivery"
                and r.get("channel") != "loudspeaker"
                and r["outcome"] in ("deleted", "skipped")
            }

        by_target = wait_for(
            lambda: got if len(got := cancel_receipts()) >= 8 else None, 60, "a receipt per target", procs
        )
        assert by_target[("fanpage", "fanpage:chuyen-doi-so-ha-tinh")] == "deleted"
        assert by_target[("zalo", "zalo:nhom-thach-ha")] == "deleted"
        assert by_target[("fanpage", "fanpage:ha-noi")] == "skipped"  # never had it
        assert by_target[("archive", "archive:main")] == "deleted"

        # -- an Exercise copy ------------------------------------------------------------------
        drill_id = f"{eid}-DT"
        producer.send(check(flood_alert(drill_id, wards, "Exercise"), registry))
        drill_marker = article_marker(alert_uri(drill_id))
        wait_for(
            lambda: True if messages(drill_marker) and posts(drill_marker) else None,
            120,
            "the drill on the test page and group",
            procs,
        )
        drill_posts = posts(drill_marker)
        assert [p["page_id"] for p in drill_posts] == [TEST_PAGE]
        assert drill_posts[0]["message"].startswith("[DIỄN TẬP]")
        assert [m["recipient"] for m in messages(drill_marker)] == [TEST_GROUP]
        assert not client.list_objects_v2(Bucket=bucket, Prefix=article_prefix("", alert_uri(drill_id))).get(
            "Contents"
        )  # no test archive: an exercise is not archived, nor in the feed
        assert feed_ids(s3_get("alerts/feed.atom")) == [] and feed_ids(web_feed()) == []
    finally:
        producer.close()
        for p in procs.values():
            p.stop()
        emus.close()
