"""CAP → ingest → stream app → emergency lane → loudspeaker platform, and a Cancel that stops it.

The sample typhoon alert must pre-empt exactly the 147 wards of provinces 42 and 44 at the
platform emulator; the CAP Cancel that references it stops the repeats; an Exercise copy reaches
only test zones.
"""

from __future__ import annotations

import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from helpers import SHARED, in_force, wait_for
from vietnam_provinces import Ward

from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.stack import Emulators, Proc
from producers.cap_ingest import AlertProducer, check
from producers.targets import load_targets, local_registry
from schemas.registry import DEFAULT_TARGETS_FILE
from schemas.settings import Settings
from schemas.topics import Topic

TYPHOON = in_force((SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap").read_bytes())
_TODAY = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()  # the alert's own (Vietnam) day


def cancel_of(alert: bytes, identifier: str) -> bytes:
    ref = f"canhbao@nchmf.example.vn,{identifier},{_TODAY.isoformat()}T05:30:00+07:00"
    text = alert.decode()
    text = text.replace(
        f"<identifier>{identifier}</identifier>", f"<identifier>{identifier}-CANCEL</identifier>"
    )
    text = text.replace("<msgType>Alert</msgType>", "<msgType>Cancel</msgType>")
    text = text.replace("<scope>Public</scope>", f"<scope>Public</scope>\n  <references>{ref}</references>")
    return text.encode()


@pytest.mark.timeout(300)
def test_typhoon_preempts_147_wards_and_cancel_stops_it(kafka_bootstrap: str, tmp_path: Path) -> None:
    emus = Emulators(tmp_path / "emu", DEFAULT_TARGETS_FILE)
    prefix = f"e{uuid.uuid4().hex[:6]}."
    env = {
        **os.environ,
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_WEB_PORT": "0",
        "LANTOA_DATA_DIR": str(tmp_path / "data"),
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "LANTOA_EMERGENCY_REPEAT_S": "60",
        **emus.env,
    }
    settings = Settings.from_env(env)
    apply_topics(settings)
    load_targets(settings)
    procs = {
        n: Proc(n, a, env, tmp_path / f"{n}.log")
        for n, a in (("streams", ["worker"]), ("emergency", ["adapter", "emergency"]))
    }
    registry = local_registry(settings)
    producer = AlertProducer(settings)
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    wards = {f"{int(w.code):05d}" for w in Ward.iter_all() if int(w.province_code) in (42, 44)}
    try:
        producer.send(check(TYPHOON, registry))
        eid = "VN-NCHMF-2026-0917-BAO05-01"

        def preempted() -> Any:
            got = emus.control("loudspeaker", "GET", f"/_control/preemptions?emergency_id={eid}")
            return got if got["zones"] >= 147 else None

        got = wait_for(preempted, 120, "the typhoon at the loudspeaker platform", procs)
        assert {p["zone"] for p in got["preemptions"]} == wards and len(wards) == 147
        emergencies = emus.control("loudspeaker", "GET", "/_control/emergencies")["emergencies"]
        live = [e for e in emergencies if e["emergency_id"] == eid]
        assert (
            len(live) == 1
            and live[0]["status"] in ("active", "playing", "repeating")
            and live[0]["zone_count"] == 147
        )

        def zone_receipts(outcome: str) -> set[str]:
            receipts.poll()
            rs = [orjson.loads(r.value) for r in receipts.records]
            return {r["target"] for r in rs if r.get("channel") == "emergency" and r["outcome"] == outcome}

        assert (
            len(
                wait_for(
                    lambda: zone_receipts("delivered") if len(zone_receipts("delivered")) >= 147 else None,
                    30,
                    "a receipt per zone",
                    procs,
                )
            )
            == 147
        )

        producer.send(check(cancel_of(TYPHOON, eid), registry))

        def stopped() -> Any:
            es = emus.control("loudspeaker", "GET", "/_control/emergencies")["emergencies"]
            mine = [e for e in es if e["emergency_id"] == eid]
            return mine if mine and mine[0]["stopped_at"] else None

        wait_for(stopped, 60, "the Cancel to stop the repeats", procs)
        exercise = TYPHOON.replace(b"<status>Actual</status>", b"<status>Exercise</status>").replace(
            b"BAO05-01</identifier>", b"BAO05-DRILL</identifier>"
        )
        producer.send(check(exercise, registry))
        drill = wait_for(
            lambda: emus.control(
                "loudspeaker", "GET", "/_control/preemptions?emergency_id=VN-NCHMF-2026-0917-BAO05-DRILL"
            )["preemptions"],
            60,
            "the exercise on test zones",
            procs,
        )
        assert not {p["zone"] for p in drill} & wards  # never a public ward
    finally:
        producer.close()
        for p in procs.values():
            p.stop()
        emus.close()
