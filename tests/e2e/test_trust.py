"""Trust for public warnings, end to end on the real broker (issue 15): a warning office that must
sign, a national Actual alert that waits for a second person, and the audit trail naming both.

The stream worker (status web behind identities), the emergency adapter, the loudspeaker platform
emulator and ``lantoa alert-server`` with named senders and a trust store run as processes:

1. an unsigned alert from a sender that must sign is refused (400, the reason), nothing produced;
2. the same alert signed, naming every ward of the country, is accepted as *pending*
   (alerts.pending), nothing on alerts.cap; its submitter cannot approve it (403), nor can an
   identity without the approver role;
3. the duty officer approves it: it goes to alerts.cap with ce_actor = the submitter and
   ce_approver = the approver, and pre-empts every zone at the platform;
4. audit.actions names both people (submit, refuse, approve, alert); `lantoa audit --uri` lists
   them; `lantoa approvals` shows it approved;
5. the status web answers 401 without a token, shows the alert pending then approved, its history
   with its actor to an editor and without it to a viewer; a CLI publish carries LANTOA_ACTOR to
   the receipts.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from cap_signing import make_signer, sign, write_trust
from helpers import every_ward_alert, free_port, in_force, lantoa, sample_paths, wait_for

from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.approvals import PendingStore
from producers.targets import load_targets
from schemas.access import Role, add_identity
from schemas.emergency import alert_uri
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.settings import Settings
from schemas.topics import Topic

SENDER = "canhbao@nchmf.example.vn"


def national(identifier: str) -> bytes:
    """Every ward of the country, still in force today."""
    return in_force(every_ward_alert(identifier))


def http(
    method: str, url: str, body: bytes | None = None, token: str | None = None, name: str | None = None
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/cap+xml"}
    if token is not None:
        headers["Authorization"] = (
            "Basic " + base64.b64encode(f"{name}:{token}".encode()).decode() if name else f"Bearer {token}"
        )
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        raw, status = exc.read(), exc.code
    except urllib.error.URLError:  # not listening yet
        return 0, ""
    try:
        return status, orjson.loads(raw)
    except orjson.JSONDecodeError:
        return status, raw.decode("utf-8", "replace")


@pytest.mark.timeout(600)
def test_signed_national_alert_waits_for_a_second_person_and_the_audit_names_both(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    emus = Emulators(tmp_path / "emu", DEFAULT_TARGETS_FILE)
    prefix = f"tr{uuid.uuid4().hex[:6]}."
    identities = tmp_path / "identities.json"
    tokens = {
        "nchmf": add_identity(identities, "nchmf", [Role.SENDER], [SENDER]),
        "duty-officer": add_identity(identities, "duty-officer", [Role.APPROVER]),
        "editor-lan": add_identity(identities, "editor-lan", [Role.EDITOR]),
        "commune-op": add_identity(identities, "commune-op", [Role.VIEWER]),
    }
    office = make_signer("canhbao.nchmf.example.vn")
    trust = write_trust(tmp_path, [{"sender": SENDER, "certs": [office], "signatures": "required"}])
    web_port, cap_port = free_port(), free_port()
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_WEB_PORT": str(web_port),
        "LANTOA_DATA_DIR": str(tmp_path / "data"),
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_EMERGENCY_REPEAT_S": "600",
        "LANTOA_ACCESS_FILE": str(identities),
        "LANTOA_CAP_TRUST_FILE": str(trust),
        # the product's defaults (tests/conftest.py turns them off for the other tests)
        "LANTOA_APPROVAL_MAX_ZONES": "50",
        "LANTOA_APPROVAL_WHOLE_PROVINCE": "1",
        "LANTOA_STATUS_INSECURE_NO_AUTH": "0",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    procs = {
        "streams": Proc("streams", ["worker"], env, tmp_path / "streams.log"),
        "emergency": Proc("emergency", ["adapter", "emergency"], env, tmp_path / "emergency.log"),
        "alert-server": Proc(
            "alert-server", ["alert-server", "--port", str(cap_port)], env, tmp_path / "alert-server.log"
        ),
    }
    cap, web = f"http://127.0.0.1:{cap_port}", f"http://127.0.0.1:{web_port}"
    alerts = TopicTail(settings.kafka, settings.topic(Topic.ALERTS_CAP))
    audit = TopicTail(settings.kafka, settings.topic(Topic.AUDIT))
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    store = PendingStore(settings)
    eid = f"VN-NCHMF-{uuid.uuid4().hex[:10]}"
    try:
        wait_for(lambda: http("GET", f"{cap}/healthz")[0] == 200, 60, "the CAP endpoint", procs)

        # 1. unsigned, from a sender that must sign: refused with the reason, nothing produced
        status, reply = http("POST", f"{cap}/cap", national(eid), tokens["nchmf"])
        assert status == 400 and "must sign" in reply["reason"], reply
        # no token at all: 401 before anything is read
        assert http("POST", f"{cap}/cap", national(eid))[0] == 401

        # 2. signed: pending, nothing on alerts.cap; the submitter cannot approve it
        signed = sign(national(eid), office)
        status, reply = http("POST", f"{cap}/cap", signed, tokens["nchmf"])
        assert status == 202 and reply["pending"] is True, reply
        zones = reply["zones"]
        assert zones > 3000  # the whole country
        assert "more than 50" in reply["reason"]
        held = wait_for(lambda: store.read().get(eid), 30, "the pending alert", procs)
        assert held.state == "pending" and held.submitted_by == "nchmf" and held.raw == signed
        approve = f"{cap}/cap/approve/{urllib.parse.quote(eid, safe='')}"
        status, reply = http("POST", approve, b"", tokens["nchmf"])
        assert status == 403 and "approver" in reply["reason"]
        status, reply = http("POST", approve, b"", tokens["editor-lan"])
        assert status == 403
        listed = lantoa(env, "approvals", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [(a["identifier"], a["state"]) for a in json.loads(listed.stdout)] == [(eid, "pending")]

        def on_status_web(state: str) -> bool:
            code, body = http("GET", f"{web}/alerts/approvals", token=tokens["editor-lan"], name="editor-lan")
            return code == 200 and [(a["identifier"], a["state"]) for a in body["alerts"]] == [(eid, state)]

        wait_for(lambda: on_status_web("pending"), 60, "the pending alert on the status web", procs)
        alerts.settle(1.0)
        assert not [r for r in alerts.records if r.key == eid.encode()]

        # 3. the duty officer approves: on alerts.cap with both names, every zone pre-empted
        status, reply = http("POST", approve, b"", tokens["duty-officer"])
        assert status == 200 and reply["approved_by"] == "duty-officer" and reply["submitted_by"] == "nchmf"

        def on_alerts() -> list[Any]:
            alerts.poll()
            return [r for r in alerts.records if r.key == eid.encode()]

        sent = wait_for(on_alerts, 30, "the approved alert on alerts.cap", procs)
        headers = {k: v.decode() for k, v in sent[0].headers}
        assert headers["ce_actor"] == "nchmf" and headers["ce_approver"] == "duty-officer"
        assert sent[0].value == signed  # byte for byte: the signature still verifies downstream
        assert http("POST", approve, b"", tokens["duty-officer"])[0] == 409  # once

        def preempted() -> Any:
            got = emus.control("loudspeaker", "GET", f"/_control/preemptions?emergency_id={eid}")
            return got if got["zones"] >= zones else None

        got = wait_for(preempted, 300, "the national alert at the loudspeaker platform", procs)
        assert len({p["zone"] for p in got["preemptions"]}) == zones

        # 4. the audit trail names both people
        def trail() -> list[dict[str, Any]]:
            audit.poll()
            return [orjson.loads(r.value) for r in audit.records if r.key == eid.encode()]

        recorded = wait_for(lambda: t if len(t := trail()) >= 5 else None, 30, "the audit records", procs)
        steps = [(r["action"], r["actor"]) for r in recorded]
        assert steps[0] == ("submit", "nchmf") and ("approve", "duty-officer") in steps
        assert ("refuse", "nchmf") in steps and ("refuse", "editor-lan") in steps
        alerted = [r for r in recorded if r["action"] == "alert"]
        assert [(r["actor"], r["detail"]["approved_by"]) for r in alerted] == [("nchmf", "duty-officer")]
        listed = lantoa(env, "audit", "--uri", eid)
        assert listed.returncode == 0 and "nchmf" in listed.stdout and "duty-officer" in listed.stdout
        approvals = json.loads(lantoa(env, "approvals", "--json").stdout)
        assert [(a["state"], a["approved_by"]) for a in approvals] == [("approved", "duty-officer")]
        wait_for(lambda: on_status_web("approved"), 60, "the approved alert on the status web", procs)

        # 5. the status web: 401 without a token, the actor for an editor, not for a viewer
        path = f"{web}/articles/{urllib.parse.quote(alert_uri(eid), safe='')}/status"
        assert http("GET", path)[0] == 401
        status, body = wait_for(
            lambda: (
                r
                if (r := http("GET", path, token=tokens["editor-lan"], name="editor-lan"))[0] == 200
                else None
            ),
            60,
            "the alert on the status web",
            procs,
        )
        assert "nchmf" in [ev.get("actor") for ev in body["events"]]
        status, body = http("GET", path, token=tokens["commune-op"], name="commune-op")
        assert status == 200 and all("actor" not in ev for ev in body["events"])

        sample = sample_paths()[0]
        published = lantoa({**env, "LANTOA_ACTOR": "editor-lan"}, "publish", str(sample))
        assert published.returncode == 0, published.stderr
        uri = orjson.loads(sample.read_bytes())["uri"]

        def routed() -> Any:
            receipts.poll()
            rs = [orjson.loads(r.value) for r in receipts.records if r.key == uri.encode()]
            return [r for r in rs if r["stage"] == "fanout"]

        fanout = wait_for(routed, 60, "the article's fan-out receipt", procs)
        assert fanout[0]["actor"] == "editor-lan"
        mine = lantoa(env, "audit", "--actor", "editor-lan", "--since", "1h", "--json")
        by_editor = [(r["action"], r["subject"]) for r in json.loads(mine.stdout)]
        assert by_editor == [("refuse", eid), ("publish", uri)]
    finally:
        for p in procs.values():
            p.stop()
        for t in (alerts, audit, receipts):
            t.close()
        store.close()
        emus.close()
