"""Alerts on every channel (issue 16): routing to pages, groups and the archive, one key per chain,
Update and Cancel following, exercises to test targets only, the wording, the public feed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from xml.etree import ElementTree as ET

import pytest
from helpers import SHARED

from schemas.cap import parse_cap
from schemas.cap_feed import ATOM_NS, CAP_TYPE, atom_feed, checked_entry, next_expiry
from schemas.cap_model import (
    Alert,
    Area,
    Category,
    Certainty,
    Info,
    MsgType,
    Reference,
    Scope,
    Severity,
    Status,
    Urgency,
)
from schemas.errors import InvalidContent
from schemas.models import Action, Priority
from schemas.registry import Registry, build_targets
from schemas.settings import Settings
from schemas.topics import Channel
from streams.alerts.lane import plan_records
from streams.alerts.plan import dry_run_json, plan_alert, root_of, version_of
from streams.alerts.render import render_alert

ICT = timezone(timedelta(hours=7))
SENT = datetime(2026, 9, 17, 5, 30, tzinfo=ICT)
NOW = datetime(2026, 9, 17, 5, 31, tzinfo=ICT)
SAMPLE = SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap"

CONFIG = {
    "loudspeaker": {"test_zones": [{"id": "zone:test-ha-tinh", "province_code": 42}]},
    "fanpage": [
        {"id": "fanpage:national", "page_id": "1", "provinces": []},
        {"id": "fanpage:ha-tinh", "page_id": "42", "provinces": [42], "subjects": ["urn:x:chuyen-doi-so"]},
        {"id": "fanpage:ha-noi", "page_id": "2", "provinces": [1]},
        {"id": "fanpage:test", "page_id": "9", "provinces": [], "test": True},
    ],
    "zalo": [
        {"id": "zalo:national", "group_id": "g1", "provinces": []},
        {"id": "zalo:ha-tinh-a", "group_id": "g42a", "provinces": [42]},
        {"id": "zalo:ha-tinh-b", "group_id": "g42b", "provinces": [42, 44]},
        {"id": "zalo:ha-noi", "group_id": "g2", "provinces": [1]},
        {"id": "zalo:test-ha-noi", "group_id": "g9", "provinces": [1], "test": True},
    ],
    "archive": [{"id": "archive:main", "bucket": "b"}],
}


@pytest.fixture(scope="module")
def registry() -> Registry:
    return Registry.of(build_targets(CONFIG))


def info(codes: tuple[str, ...] = ("42",), areas: int = 1) -> Info:
    return Info(
        "vi-VN",
        (Category.MET,),
        "Lũ quét",
        Urgency.IMMEDIATE,
        Severity.SEVERE,
        Certainty.OBSERVED,
        effective=SENT,
        expires=SENT + timedelta(hours=12),
        headline="Cảnh báo lũ quét tại 4 phường",
        description="Mưa lớn gây lũ quét.",
        instruction="Di chuyển lên vùng cao.",
        sender_name="Đài KTTV Hà Tĩnh",
        areas=tuple(Area(f"Phường {i}", tuple(("VN-DVHC", c) for c in codes)) for i in range(areas)),
    )


def alert(
    ident: str = "A-1",
    status: Status = Status.ACTUAL,
    msg_type: MsgType = MsgType.ALERT,
    refs: tuple[Reference, ...] = (),
    sent: datetime = SENT,
    codes: tuple[str, ...] = ("42",),
) -> Alert:
    return Alert(
        ident, "kttv@example.vn", sent, status, msg_type, Scope.PUBLIC, refs, (info(codes),), "1.2", "0" * 64
    )


def ids(plan_targets: dict[Channel, list] | object, channel: Channel) -> list[str]:  # type: ignore[type-arg]
    return [t.id for t in plan_targets.get(channel, [])]  # type: ignore[attr-defined]


def test_a_provincial_warning_reaches_every_page_and_group_of_its_province_and_no_national_one(
    registry: Registry,
) -> None:
    plan = plan_alert(alert(), registry)
    # Hà Tĩnh's page takes it although its subject filter would refuse an article of no subject.
    assert ids(plan.targets, Channel.FANPAGE) == ["fanpage:ha-tinh"]
    assert ids(plan.targets, Channel.ZALO) == ["zalo:ha-tinh-a", "zalo:ha-tinh-b"]
    assert ids(plan.targets, Channel.ARCHIVE) == ["archive:main"]
    assert all(not t for t in plan.withdrawn.values())  # nothing to take back for a first alert
    out = dry_run_json(plan)
    assert out["targets"]["zalo"] == ["zalo:ha-tinh-a", "zalo:ha-tinh-b"]
    assert len(out["targets"]["loudspeaker"]) == len(out["zones"]) > 0


def test_a_national_warning_reaches_the_national_targets_too(registry: Registry) -> None:
    provinces = sorted({t.province_code for t in registry.public_zones() if t.province_code})
    plan = plan_alert(alert(codes=tuple(f"{p:02d}" for p in provinces)), registry)
    assert ids(plan.targets, Channel.FANPAGE) == ["fanpage:ha-noi", "fanpage:ha-tinh", "fanpage:national"]
    assert "zalo:national" in ids(plan.targets, Channel.ZALO)
    # One province short of national: the national targets stay out.
    plan = plan_alert(alert(codes=tuple(f"{p:02d}" for p in provinces[1:])), registry)
    assert "fanpage:national" not in ids(plan.targets, Channel.FANPAGE)


@pytest.mark.parametrize("status", [Status.EXERCISE, Status.TEST])
def test_an_exercise_reaches_only_test_targets_on_every_channel(registry: Registry, status: Status) -> None:
    plan = plan_alert(alert(status=status), registry)
    every = [t for ts in plan.targets.values() for t in ts] + plan.zones
    assert every and all(t.test for t in every)
    assert ids(plan.targets, Channel.FANPAGE) == ["fanpage:test"]
    # no Hà Tĩnh test group: every test group rather than none (as test zones do)
    assert ids(plan.targets, Channel.ZALO) == ["zalo:test-ha-noi"]
    assert ids(plan.targets, Channel.ARCHIVE) == []  # no test archive configured: not archived
    _, commands, _ = plan_records(alert(status=status), plan, Settings(), NOW, None, None)
    assert commands and all(c.test for c in commands)
    mark = "[DIỄN TẬP]" if status is Status.EXERCISE else "[THỬ NGHIỆM]"
    fan = next(c for c in commands if c.channel is Channel.FANPAGE)
    assert fan.payload["message"].startswith(mark)


def test_the_chain_shares_one_uri_and_later_messages_have_higher_versions(registry: Registry) -> None:
    original = alert()
    update = alert(
        "A-2",
        msg_type=MsgType.UPDATE,
        refs=(Reference("kttv@example.vn", "A-1", SENT),),
        sent=SENT - timedelta(seconds=30),  # the office's clock lags: still above the original
    )
    assert root_of(original) == "A-1" and root_of(update) == "A-1"
    assert version_of(update) > version_of(original) == int(SENT.timestamp())
    chain = alert(
        "A-3",
        msg_type=MsgType.CANCEL,
        refs=(
            Reference("kttv@example.vn", "A-2", SENT + timedelta(minutes=5)),
            Reference("kttv@example.vn", "A-1", SENT),
        ),
        sent=SENT + timedelta(minutes=10),
    )
    assert root_of(chain) == "A-1"  # the earliest-sent reference, whatever the order listed


def test_an_update_edits_where_it_still_applies_and_withdraws_elsewhere(registry: Registry) -> None:
    refs = (Reference("kttv@example.vn", "A-1", SENT),)
    update = alert("A-2", msg_type=MsgType.UPDATE, refs=refs, sent=SENT + timedelta(hours=1), codes=("44",))
    plan = plan_alert(update, registry)
    _, commands, receipt = plan_records(update, plan, Settings(), NOW, None, "ce-2")
    social = [c for c in commands if c.channel is not Channel.LOUDSPEAKER]
    assert {c.key.uri for c in social} == {"urn:lantoa:cap:A-1"}
    assert {c.key.version for c in social} == {version_of(update)}
    by = {(c.channel.value, c.target): c.key.action for c in social}
    assert by[("zalo", "zalo:ha-tinh-b")] is Action.UPDATE  # 44 is still its province
    assert by[("zalo", "zalo:ha-tinh-a")] is Action.RETRACT  # 42 only: no longer concerned
    assert by[("fanpage", "fanpage:ha-tinh")] is Action.RETRACT
    assert by[("archive", "archive:main")] is Action.UPDATE
    assert ("fanpage", "fanpage:test") not in by  # never a test target for an Actual message
    assert receipt.counts["zalo"] == 4  # two updates, two withdrawals (every public group)


def test_a_cancel_takes_the_alert_back_everywhere_with_a_cancellation_notice(registry: Registry) -> None:
    cancel = alert(
        "A-9",
        msg_type=MsgType.CANCEL,
        refs=(Reference("kttv@example.vn", "A-1", SENT),),
        sent=SENT + timedelta(hours=2),
    )
    plan = plan_alert(cancel, registry)
    assert plan.lane == "emergency"
    _, commands, _ = plan_records(cancel, plan, Settings(), NOW, None, None)
    social = [c for c in commands if c.channel is not Channel.LOUDSPEAKER]
    public = {
        t.id for c in (Channel.FANPAGE, Channel.ZALO, Channel.ARCHIVE) for t in registry.channel_targets(c)
    }
    public -= {"fanpage:test", "zalo:test-ha-noi"}
    assert {c.target for c in social} == public
    assert all(c.key.action is Action.RETRACT and c.priority is Priority.EMERGENCY for c in social)
    zalo = next(c for c in social if c.channel is Channel.ZALO)
    assert zalo.payload["notice"] == "ĐÃ HỦY CẢNH BÁO" and "lũ quét" in zalo.payload["reason"].lower()


def test_the_wording_comes_from_the_vietnamese_info_in_local_time(registry: Registry) -> None:
    a = parse_cap(SAMPLE.read_bytes())
    payloads = render_alert(a, a.identifier, version_of(a), "https://tin.example.vn", SAMPLE.read_text())
    message = payloads[Channel.FANPAGE]["message"]
    vi = next(i for i in a.infos if i.language.lower().startswith("vi"))
    assert vi.headline and vi.headline in message and (vi.instruction or "")[:40] in message
    assert vi.event.upper() in message.split("\n", 1)[0]
    assert "Khu vực: " in message and "Nguồn: " in message
    assert vi.expires is not None and vi.expires.astimezone(ICT).strftime("%H:%M ngày %d/%m/%Y") in message
    link = payloads[Channel.FANPAGE]["link"]
    assert link.startswith("https://tin.example.vn/a/") and link in payloads[Channel.ZALO]["text"]
    doc = payloads[Channel.ARCHIVE]["document"]
    assert doc["uri"] == f"urn:lantoa:cap:{a.identifier}" and doc["version"] == version_of(a)
    assert len(doc["cap"]["infos"]) == len(a.infos)
    assert payloads[Channel.ARCHIVE]["cap_xml"] == SAMPLE.read_text()  # as received
    assert payloads[Channel.ARCHIVE]["alert"]["expires"] is not None


def test_the_vietnamese_info_drives_the_text_and_every_info_is_kept() -> None:
    from dataclasses import replace

    english = replace(info(), language="en-US", headline="Flash flood warning", event="Flash flood")
    a = Alert("A-1", "s", SENT, Status.ACTUAL, MsgType.ALERT, Scope.PUBLIC, (), (english, info()), "1.2", "")
    payloads = render_alert(a, "A-1", 1, "https://x.vn", None)
    assert "Cảnh báo lũ quét" in payloads[Channel.FANPAGE]["message"]
    assert "Flash flood" not in payloads[Channel.FANPAGE]["message"]
    langs = [i["language"] for i in payloads[Channel.ARCHIVE]["document"]["cap"]["infos"]]
    assert langs == ["en-US", "vi-VN"] and "cap_xml" not in payloads[Channel.ARCHIVE]


def test_a_long_area_list_is_named_in_part(registry: Registry) -> None:
    a = Alert("A-1", "s", SENT, Status.ACTUAL, MsgType.ALERT, Scope.PUBLIC, (), (info(areas=40),), "1.2", "")
    message = render_alert(a, "A-1", 1, "https://x.vn", None)[Channel.FANPAGE]["message"]
    assert "Phường 11" in message and "Phường 12;" not in message and "và 28 khu vực khác" in message


# -- the feed ------------------------------------------------------------------------------------


def entry(ident: str, sent: datetime, expires: datetime | None) -> dict[str, object]:
    return checked_entry(
        {
            "identifier": ident,
            "uri": f"urn:lantoa:cap:{ident}",
            "version": int(sent.timestamp()),
            "sent": sent.isoformat(),
            "expires": expires.isoformat() if expires else None,
            "headline": f"Cảnh báo <{ident}> & co",
            "event": "Lũ",
            "area": "Phường 1",
            "sender": "KTTV",
            "status": "Actual",
            "msg_type": "Alert",
        }
    )


def test_the_feed_lists_alerts_in_force_newest_first_with_typed_cap_links() -> None:
    now = datetime(2026, 9, 17, 0, 0, tzinfo=UTC)
    entries = [
        entry("old", now - timedelta(hours=3), now + timedelta(hours=1)),
        entry("new", now - timedelta(hours=1), None),
        entry("gone", now - timedelta(hours=2), now - timedelta(seconds=1)),
    ]
    body = atom_feed(
        entries,
        feed_id="urn:f",
        self_href="feed.atom",
        cap_href=lambda e: f"../{e['identifier']}/cap.xml",
        page_href=lambda e: None,
        now=now,
    )
    root = ET.fromstring(body)
    ns = {"a": ATOM_NS}
    got = [e.findtext("a:id", namespaces=ns) for e in root.findall("a:entry", ns)]
    assert got == ["urn:lantoa:cap:new", "urn:lantoa:cap:old"]  # the expired one is out
    link = root.find("a:entry/a:link", ns)
    assert link is not None and link.get("type") == CAP_TYPE and link.get("href") == "../new/cap.xml"
    assert root.findtext("a:entry/a:title", namespaces=ns) == "Cảnh báo <new> & co"  # escaped, read back
    assert next_expiry(entries, now) == now + timedelta(hours=1)


def test_an_empty_feed_is_the_same_bytes_each_time_it_is_written() -> None:
    changed = datetime(2026, 9, 1, tzinfo=UTC)

    def render(now: datetime) -> bytes:
        return atom_feed(
            [], feed_id="f", self_href="s", cap_href=str, page_href=str, now=now, updated=changed
        )

    assert render(changed + timedelta(minutes=1)) == render(changed + timedelta(hours=5))


@pytest.mark.parametrize(
    "bad",
    [
        {"identifier": "x", "uri": "u", "version": 0, "sent": SENT.isoformat()},
        {"identifier": "x", "uri": "u", "version": True, "sent": SENT.isoformat()},
        {"identifier": "x", "uri": "u", "version": 1, "sent": "yesterday"},
        {"identifier": "x", "uri": "u", "version": 1, "sent": "2026-09-17T05:30:00"},
        {"identifier": "", "uri": "u", "version": 1, "sent": SENT.isoformat()},
        {"identifier": 5, "uri": "u", "version": 1, "sent": SENT.isoformat()},
        ["not", "an", "object"],
    ],
)
def test_a_malformed_feed_entry_is_refused(bad: object) -> None:
    with pytest.raises(InvalidContent):
        checked_entry(bad)


def test_versions_at_the_oldest_and_newest_sent_times() -> None:
    oldest = datetime(1, 1, 1, tzinfo=UTC)
    newest = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert version_of(alert(sent=oldest)) == 1  # before 1970: still a valid version
    assert version_of(alert(sent=newest)) == int(newest.timestamp())
    late = alert("A-2", msg_type=MsgType.UPDATE, refs=(Reference("s", "A-1", newest),), sent=oldest)
    assert version_of(late) == int(newest.timestamp()) + 1  # above what it references, always


def test_the_feed_keeps_the_newest_thousand_and_forgets_the_oldest_cancellations() -> None:
    from schemas.cap_feed import MAX_CANCELLED, MAX_ENTRIES, in_force_only, merge_alert, merge_cancel

    now = datetime(2026, 9, 17, tzinfo=UTC)
    entries: dict[str, object] = {}
    cancelled: dict[str, int] = {}
    for i in range(MAX_ENTRIES + 1):
        e = entry(f"A{i:04d}", now - timedelta(seconds=MAX_ENTRIES + 1 - i), None)
        assert merge_alert(entries, cancelled, e)  # type: ignore[arg-type]
    kept = in_force_only(entries, now)  # type: ignore[arg-type]
    assert len(kept) == MAX_ENTRIES and "urn:lantoa:cap:A0000" not in kept  # the oldest goes
    assert "urn:lantoa:cap:A1000" in kept
    for i in range(MAX_CANCELLED + 1):
        merge_cancel(kept, cancelled, f"urn:lantoa:cap:C{i}", i + 1)
    assert len(cancelled) <= MAX_CANCELLED and f"urn:lantoa:cap:C{MAX_CANCELLED}" in cancelled
    assert "urn:lantoa:cap:C0" not in cancelled
    # a cancelled chain never comes back at or below its cancelled version
    e = entry("C5", now, None)
    cancelled["urn:lantoa:cap:C5"] = e["version"]  # type: ignore[assignment]
    assert not merge_alert(kept, cancelled, e)  # type: ignore[arg-type]


def test_an_archived_cap_xml_is_bounded_like_a_cap_alert() -> None:
    from contextlib import ExitStack

    from consumers.archive.adapter import ArchiveAdapter
    from consumers.archive.config import ArchiveConfig
    from schemas.cap import MAX_CAP_BYTES
    from schemas.models import Command, IdempotencyKey

    a = alert()
    payload = render_alert(a, "A-1", 7, "https://tin.example.vn", None)[Channel.ARCHIVE]
    adapter = ArchiveAdapter(ArchiveConfig(bucket="b"), client=object())

    def blobs(xml: str) -> list[str]:
        cmd = Command(
            IdempotencyKey("urn:lantoa:cap:A-1", 7, Channel.ARCHIVE, "archive:main", Action.PUBLISH),
            Priority.EMERGENCY,
            "2026-09-17T00:00:00Z",
            {**payload, "cap_xml": xml},
        )
        with ExitStack() as files:
            return [b.name for b in adapter._render(cmd, files)[0]]

    assert "cap.xml" in blobs("x" * MAX_CAP_BYTES)  # at the bound
    with pytest.raises(InvalidContent, match="cap_xml"):
        blobs("x" * (MAX_CAP_BYTES + 1))  # one past it
