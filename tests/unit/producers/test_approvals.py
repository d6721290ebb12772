"""The two-person rule (issue 15, item 3) without a broker: which alerts wait, who may approve,
what an own approval, a second approval, an expired wait or a resubmission get, and the audit
records each step leaves; then the same through POST /cap and POST /cap/approve/ID."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import TYPHOON_ALERT, memory_door

from producers.approvals import AlertDoor, ApprovalRefused
from producers.cap_http import make_app
from producers.cap_ingest import check
from producers.targets import local_registry
from schemas.access import AccessList, Identity, Role, token_digest
from schemas.audit import AuditAction
from schemas.settings import Settings
from streams.alerts.plan import approval_needed

RULE = Settings(approval_max_zones=50, approval_whole_province=True, approval_ttl_s=1800)
NOW = 1_900_000_000.0  # 2030-03-17: the sample's expiry is moved past it


def alert(
    status: str = "Actual", msg_type: str = "Alert", provinces: tuple[str, ...] = ("42", "44")
) -> bytes:
    """The typhoon sample (147 zones of Hà Tĩnh and Quảng Trị), still in force, with these fields."""
    raw = TYPHOON_ALERT.read_bytes()
    raw = raw.replace(
        b"<expires>2026-09-18T05:30:00+07:00</expires>", b"<expires>2031-01-01T00:00:00+07:00</expires>"
    )
    raw = raw.replace(b"<status>Actual</status>", f"<status>{status}</status>".encode())
    raw = raw.replace(b"<msgType>Alert</msgType>", f"<msgType>{msg_type}</msgType>".encode())
    if msg_type != "Alert":
        raw = raw.replace(
            b"<info>",
            b"<references>canhbao@nchmf.example.vn,VN-NCHMF-2026-0917-BAO05-00,2026-09-17T05:00:00+07:00</references>\n  <info>",
            1,
        )
    if provinces != ("42", "44"):
        raw = raw.replace(b"<value>44</value>", f"<value>{provinces[-1]}</value>".encode())
    return raw


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None, str | None]] = []

    def send(
        self, checked: Any, source: str = "", *, actor: str | None = None, approver: str | None = None
    ) -> dict[str, Any]:
        self.sent.append((checked.alert.identifier, actor, approver))
        return {
            "identifier": checked.alert.identifier,
            "lane": checked.plan.lane,
            "zones": len(checked.plan.zones),
        }


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


def door(settings: Settings = RULE) -> tuple[AlertDoor, FakeProducer, Clock]:
    producer, clock = FakeProducer(), Clock()
    return memory_door(producer, settings, clock=clock), producer, clock


def actions(d: AlertDoor) -> list[tuple[str, str]]:
    return [(r.action.value, r.actor) for r in d.audit.records]  # type: ignore[attr-defined]


def test_which_alerts_wait() -> None:
    registry = local_registry(Settings())

    def scope(raw: bytes, settings: Settings = RULE) -> Any:
        plan = check(raw, registry).plan
        return approval_needed(plan, registry, settings.approval_max_zones, settings.approval_whole_province)

    big = scope(alert())
    assert big is not None and "147 zones (more than 50)" in big.reason and big.provinces == (42, 44)
    assert "every zone of" in big.reason and set(big.whole_provinces) == {42, 44}
    assert scope(alert(status="Exercise")) is None and scope(alert(status="Test")) is None
    assert scope(alert(msg_type="Cancel")) is None  # sirens stop at once
    assert scope(alert(msg_type="Update")) is not None
    only_size = Settings(approval_max_zones=1000, approval_whole_province=True)
    whole = scope(alert(), only_size)
    assert whole is not None and "zones (more than" not in whole.reason and "Hà Tĩnh (42)" in whole.reason
    assert scope(alert(), Settings(approval_max_zones=1000, approval_whole_province=False)) is None
    assert scope(alert(), Settings(approval_max_zones=147, approval_whole_province=False)) is None
    assert scope(alert(), Settings(approval_max_zones=146, approval_whole_province=False)) is not None


def test_a_big_actual_alert_waits_for_a_second_person() -> None:
    d, producer, _ = door()
    checked = d.check(alert())
    held = d.take(checked, "nchmf", "cli", "urn:test")
    assert held["pending"] is True and held["zones"] == 147 and producer.sent == []
    assert d.list()[0]["state"] == "pending" and d.list()[0]["submitted_by"] == "nchmf"
    with pytest.raises(ApprovalRefused) as own:
        d.approve(checked.alert.identifier, "nchmf", "cli", "urn:test")
    assert own.value.status == 403 and "different person" in own.value.reason and producer.sent == []
    with pytest.raises(ApprovalRefused) as again:  # submitted twice while it waits
        d.take(checked, "other-sender", "cli", "urn:test")
    assert again.value.status == 409
    sent = d.approve(checked.alert.identifier, "duty-officer", "cli", "urn:test")
    assert sent["approved_by"] == "duty-officer" and sent["submitted_by"] == "nchmf"
    assert producer.sent == [(checked.alert.identifier, "nchmf", "duty-officer")]
    assert d.list()[0]["state"] == "approved" and d.list()[0]["approved_by"] == "duty-officer"
    with pytest.raises(ApprovalRefused) as twice:
        d.approve(checked.alert.identifier, "someone-else", "cli", "urn:test")
    assert twice.value.status == 409 and len(producer.sent) == 1
    with pytest.raises(ApprovalRefused) as unknown:
        d.approve("no-such-alert", "duty-officer", "cli", "urn:test")
    assert unknown.value.status == 404
    assert actions(d) == [
        ("submit", "nchmf"),
        ("refuse", "nchmf"),
        ("approve", "duty-officer"),
        ("alert", "nchmf"),
        ("refuse", "someone-else"),
        ("refuse", "duty-officer"),
    ]
    approve = d.audit.records[2]  # type: ignore[attr-defined]
    assert approve.action is AuditAction.APPROVE and approve.detail["submitted_by"] == "nchmf"


def test_exercises_cancels_and_small_alerts_go_at_once() -> None:
    d, producer, _ = door()
    for raw in (alert(status="Exercise"), alert(msg_type="Cancel")):
        assert d.take(d.check(raw), "nchmf", "cli", "urn:test")["pending"] is False
    assert len(producer.sent) == 2 and [a for a, _ in actions(d)] == ["alert", "alert"]


def test_an_unapproved_alert_expires_and_may_be_submitted_again() -> None:
    d, producer, clock = door()
    checked = d.check(alert())
    d.take(checked, "nchmf", "cli", "urn:test")
    clock.now += 1800
    assert d.list()[0]["state"] == "expired"
    with pytest.raises(ApprovalRefused) as late:
        d.approve(checked.alert.identifier, "duty-officer", "cli", "urn:test")
    assert late.value.status == 410 and "submit it again" in late.value.reason and producer.sent == []
    assert d.take(checked, "nchmf", "cli", "urn:test")["pending"] is True  # a fresh wait
    assert d.list()[0]["state"] == "pending"
    d.approve(checked.alert.identifier, "duty-officer", "cli", "urn:test")
    assert len(producer.sent) == 1


def test_an_alert_past_its_own_expiry_is_not_approved() -> None:
    d, producer, clock = door(Settings(approval_max_zones=50, approval_ttl_s=10**9))
    checked = d.check(alert())
    d.take(checked, "nchmf", "cli", "urn:test")
    clock.now = 1_925_000_000.0  # 2031-01-01T02:13Z, past the alert's own expires
    with pytest.raises(ApprovalRefused) as old:
        d.approve(checked.alert.identifier, "duty-officer", "cli", "urn:test")
    assert old.value.status == 410 and "expired at" in old.value.reason and producer.sent == []


def ident(name: str, *roles: Role) -> tuple[Identity, str]:
    token = f"{name}-token-0123456789abcdef"
    return Identity(name, frozenset(roles), token_digest(token)), token


async def test_the_http_doors_of_the_rule() -> None:
    sender, sender_token = ident("nchmf", Role.SENDER)
    both, both_token = ident("pctt-lead", Role.SENDER, Role.APPROVER)
    duty, duty_token = ident("duty-officer", Role.APPROVER)
    access = AccessList([sender, both, duty])
    d, producer, _ = door()
    body = alert()
    identifier = d.check(body).alert.identifier
    async with TestClient(TestServer(make_app(d, access))) as client:

        def auth(token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        resp = await client.post("/cap", data=body, headers=auth(both_token))
        reply = await resp.json()
        assert resp.status == 202 and reply["pending"] is True and producer.sent == []
        path = f"/cap/approve/{identifier}"
        assert (await client.post(path)).status == 401
        resp = await client.post(path, headers=auth(sender_token))  # no approver role
        assert resp.status == 403 and producer.sent == []
        resp = await client.post(path, headers=auth(both_token))  # its own submitter
        assert resp.status == 403 and "different person" in (await resp.json())["reason"]
        listed = await (await client.get("/cap/approvals", headers=auth(duty_token))).json()
        assert [a["state"] for a in listed["alerts"]] == ["pending"]
        assert (await client.get("/cap/approvals")).status == 401
        resp = await client.post(path, headers=auth(duty_token))
        reply = await resp.json()
        assert (
            resp.status == 200
            and reply["approved_by"] == "duty-officer"
            and reply["submitted_by"] == "pctt-lead"
        )
        assert producer.sent == [(identifier, "pctt-lead", "duty-officer")]
        resp = await client.post(path, headers=auth(duty_token))
        assert resp.status == 409
    assert ("refuse", "nchmf") in actions(d) and ("approve", "duty-officer") in actions(d)


async def test_no_approval_without_authentication() -> None:
    d, producer, _ = door()
    async with TestClient(TestServer(make_app(d, insecure=True))) as client:
        resp = await client.post("/cap", data=alert())
        assert resp.status == 202 and (await resp.json())["pending"] is True
        identifier = d.check(alert()).alert.identifier
        resp = await client.post(f"/cap/approve/{identifier}")
        assert resp.status == 403 and producer.sent == []


def test_a_cancel_or_update_withdraws_the_pending_alert_it_references() -> None:
    for msg_type in ("Cancel", "Update"):
        d, producer, _ = door(Settings(approval_max_zones=50, approval_whole_province=False))
        first = alert().replace(b"VN-NCHMF-2026-0917-BAO05-01", b"VN-NCHMF-2026-0917-BAO05-00")
        held = d.take(d.check(first), "nchmf", "cli", "urn:test")
        assert held["pending"] is True
        follow = d.check(alert(msg_type=msg_type))  # references ...-BAO05-00
        result = d.take(follow, "nchmf", "cli", "urn:test")
        assert result["withdrew"] == ["VN-NCHMF-2026-0917-BAO05-00"]
        states = {a["identifier"]: a["state"] for a in d.list()}
        assert states["VN-NCHMF-2026-0917-BAO05-00"] == "rejected"
        with pytest.raises(ApprovalRefused) as late:
            d.approve("VN-NCHMF-2026-0917-BAO05-00", "duty-officer", "cli", "urn:test")
        assert late.value.status == 409 and f"withdrawn by {msg_type}" in late.value.reason
        sent = [identifier for identifier, _, _ in producer.sent]
        assert "VN-NCHMF-2026-0917-BAO05-00" not in sent  # the withdrawn alert never airs
        if msg_type == "Cancel":
            assert sent == ["VN-NCHMF-2026-0917-BAO05-01"]  # the Cancel went at once
            withdrew = [r.detail.get("withdrew") for r in d.audit.records if r.action is AuditAction.ALERT]  # type: ignore[attr-defined]
            assert withdrew == [["VN-NCHMF-2026-0917-BAO05-00"]]
        else:  # the Update, as big, waits in its turn
            assert sent == [] and states["VN-NCHMF-2026-0917-BAO05-01"] == "pending"
