"""The status web behind authentication (issue 15, item 5), without a broker: 401 with a Basic
challenge without a token, viewer/editor/ops roles, a viewer not shown who did each step, an
editor's article page as informative as before, /healthz open, and no identities at all."""

from __future__ import annotations

import base64
from urllib.parse import quote

from aiohttp.test_utils import TestClient, TestServer
from html_dom import dom

from schemas.access import AccessList, Identity, Role, token_digest
from schemas.models import Receipt
from streams.status.view import StatusView
from streams.status.web import make_app

URI = "urn:lantoa:article:trust"
AT = "2026-12-04T01:00:00.000+00:00"


def ident(name: str, *roles: Role) -> tuple[Identity, str]:
    token = f"{name}-status-token-0123456789"
    return Identity(name, frozenset(roles), token_digest(token)), token


def basic(name: str, token: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode()}


def view() -> StatusView:
    v = StatusView(clock=lambda: 1_796_000_000.0)
    v.caught_up = True
    v.fold.add_receipt(
        Receipt(URI, "fanout", "routed", AT, 1, counts={"fanpage": 1}, actor="editor-lan").to_dict()
    )
    return v


async def test_roles_and_refusals() -> None:
    viewer, viewer_token = ident("commune-op", Role.VIEWER)
    editor, editor_token = ident("editor-lan", Role.EDITOR)
    ops, ops_token = ident("ops-on-call", Role.OPS)
    sender, sender_token = ident("nchmf", Role.SENDER)
    access = AccessList([viewer, editor, ops, sender])
    json_path = f"/articles/{quote(URI, safe='')}/status"
    page_path = f"/status/{quote(URI, safe='')}"
    async with TestClient(TestServer(make_app(view(), access=access))) as client:
        assert (await client.get("/healthz")).status == 200  # liveness stays open
        for path in (json_path, page_path, "/articles", "/status", "/timeline/zone:26734"):
            resp = await client.get(path)
            assert resp.status == 401 and "Basic" in resp.headers["WWW-Authenticate"], path
            wrong = await client.get(path, headers=basic("commune-op", "x" * 30))
            assert wrong.status == 401, path
        resp = await client.get(json_path, headers=basic("nchmf", sender_token))  # a CAP sender only
        assert resp.status == 403
        # the viewer: the article, not who did it
        body = await (await client.get(json_path, headers=basic("commune-op", viewer_token))).json()
        assert body["uri"] == URI and all("actor" not in ev for ev in body["events"])
        page = await (await client.get(page_path, headers=basic("commune-op", viewer_token))).text()
        assert "editor-lan" not in page and URI in page
        # editor and ops: the same page as before, with the actor
        for name, token in (("editor-lan", editor_token), ("ops-on-call", ops_token)):
            body = await (await client.get(json_path, headers={"Authorization": f"Bearer {token}"})).json()
            assert [ev.get("actor") for ev in body["events"]] == ["editor-lan"], name
            html = dom(await (await client.get(page_path, headers=basic(name, token))).text())
            assert [td.text for td in html.all("td") if td.attrs.get("class") == "actor"] == ["editor-lan"]


async def test_without_identities_every_page_says_how_to_add_them() -> None:
    async with TestClient(TestServer(make_app(view()))) as client:
        resp = await client.get("/articles")
        assert resp.status == 401 and "lantoa access add" in (await resp.json())["error"]
        assert (await client.get("/healthz")).status == 200
    async with TestClient(TestServer(make_app(view(), insecure=True))) as client:
        assert (await client.get("/articles")).status == 200


def pending(identifier: str, state: str, expires_at: str, **more: object) -> dict[str, object]:
    return {
        "schema_version": 1,
        "state": state,
        "identifier": identifier,
        "sender": "canhbao@nchmf.example.vn",
        "submitted_by": "nchmf",
        "submitted_at": "2026-12-04T01:00:00.000+00:00",
        "expires_at": expires_at,
        "zones": 3321,
        "reason": "Actual alert to 3321 zones (more than 50)",
        "cap_b64": "PGFsZXJ0Lz4=",
        **more,
    }


async def test_pending_approved_and_expired_alerts_are_visible_in_status() -> None:
    viewer, viewer_token = ident("commune-op", Role.VIEWER)
    editor, editor_token = ident("editor-lan", Role.EDITOR)
    v = view()  # its clock: 2026-11-30T...; 1_796_000_000 s
    with v.lock:
        v.note_approval("VN-1", pending("VN-1", "pending", "2027-01-01T00:00:00.000+00:00"))
        v.note_approval("VN-2", pending("VN-2", "pending", "2026-01-01T00:00:00.000+00:00"))
        v.note_approval(
            "VN-3",
            pending(
                "VN-3",
                "approved",
                "2027-01-01T00:00:00.000+00:00",
                approved_by="duty-officer",
                approved_at="2026-12-04T01:05:00.000+00:00",
            ),
        )
        v.note_approval("VN-4", pending("VN-4", "pending", "2027-01-01T00:00:00.000+00:00"))
        v.note_approval("VN-4", None)  # a tombstone
    access = AccessList([viewer, editor])
    async with TestClient(TestServer(make_app(v, access=access))) as client:
        body = await (await client.get("/alerts/approvals", headers=basic("editor-lan", editor_token))).json()
        states = {a["identifier"]: (a["state"], a.get("approved_by")) for a in body["alerts"]}
        assert states == {
            "VN-1": ("pending", None),
            "VN-2": ("expired", None),
            "VN-3": ("approved", "duty-officer"),
        }
        assert all("cap_b64" not in a for a in body["alerts"])
        body = await (await client.get("/alerts/approvals", headers=basic("commune-op", viewer_token))).json()
        assert len(body["alerts"]) == 3 and all(
            "submitted_by" not in a and "approved_by" not in a for a in body["alerts"]
        )
        assert (await client.get("/alerts/approvals")).status == 401
        page = dom(await (await client.get("/status", headers=basic("editor-lan", editor_token))).text())
        rows = {
            tr.attrs["data-alert"]: tr.attrs["data-state"]
            for tr in page.all("tr")
            if "data-alert" in tr.attrs
        }
        assert rows == {"VN-1": "pending", "VN-2": "expired", "VN-3": "approved"}
        assert "duty-officer" in page.one("tr", data_alert="VN-3").text
