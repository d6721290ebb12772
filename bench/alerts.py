"""national_alert_p50_s / national_alert_p99_s: a CAP alert for all 34 provinces → each of the 3,321
zones pre-empted at the loudspeaker platform emulator, latency from the moment it is produced.

Path measured: `AlertProducer.send` (CAP XML onto alerts.cap) → stream app alert agent (parse,
plan, one record on distribution.emergency.commands) → emergency lane (render the text once,
one bulk POST) → the emulator's pre-emption record per zone (its wall clock, same machine).
Latency per zone = pre-emption time − the time just before the send. Warm-up alert first; then
RUNS alerts, each with a new text (so every run renders its audio: the worst case).
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import Result, Worker, percentile

RUNS = 10
VN = ZoneInfo("Asia/Ho_Chi_Minh")


def national_alert(identifier: str, n: int) -> bytes:
    now = datetime.now(VN).replace(microsecond=0)
    sent, expires = now.isoformat(), (now + timedelta(hours=2)).isoformat()
    from vietnam_provinces import Province

    geocodes = "".join(
        f"<geocode><valueName>VN-DVHC</valueName><value>{int(p.code):02d}</value></geocode>"
        for p in Province.iter_all()
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>canhbao@nchmf.example.vn</sender><sent>{sent}</sent>
  <status>Actual</status><msgType>Alert</msgType><scope>Public</scope>
  <info><language>vi-VN</language><category>Met</category><event>Diễn biến thời tiết nguy hiểm</event>
    <urgency>Immediate</urgency><severity>Extreme</severity><certainty>Observed</certainty>
    <expires>{expires}</expires>
    <headline>Khẩn cấp toàn quốc số {n}</headline>
    <description>Cảnh báo số {n}: mưa lớn diện rộng, gió mạnh cấp 8, giật cấp 10 tại nhiều địa phương.</description>
    <instruction>Người dân theo dõi loa truyền thanh cơ sở và thực hiện hướng dẫn của chính quyền.</instruction>
    <area><areaDesc>Toàn quốc</areaDesc>{geocodes}</area>
  </info>
</alert>""".encode()


def run(bootstrap: str) -> list[Result]:
    from infra.local.stack import Emulators, Proc
    from producers.cap_ingest import AlertProducer, check
    from producers.targets import local_registry
    from schemas.registry import DEFAULT_TARGETS_FILE

    emus = Emulators(
        Path(__import__("tempfile").mkdtemp(prefix="lantoa-bench-alerts-")), DEFAULT_TARGETS_FILE
    )
    worker = Worker(bootstrap, **emus.env)
    lane = Proc("emergency", ["adapter", "emergency"], worker.env, worker.tmp / "emergency.log")
    registry = local_registry(worker.settings)
    producer = AlertProducer(worker.settings)
    latencies: list[float] = []
    per_alert: list[float] = []
    try:
        for i in range(RUNS + 1):
            eid = f"VN-BENCH-{uuid.uuid4().hex[:10]}"
            checked = check(national_alert(eid, i), registry)
            assert len(checked.plan.zones) == 3321, len(checked.plan.zones)
            t0 = time.time()
            producer.send(checked, "urn:lantoa:bench")
            deadline = time.monotonic() + 120
            while True:
                got = emus.control("loudspeaker", "GET", f"/_control/preemptions?emergency_id={eid}")
                if got["zones"] >= 3321:
                    break
                if not lane.alive() or worker.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"alert {eid}: {got['zones']} zones after {time.monotonic() - deadline + 120:.0f}s"
                    )
                time.sleep(0.02)
            zone_at: dict[str, float] = {}
            for p in got["preemptions"]:
                at = datetime.fromisoformat(str(p["at"]).replace("Z", "+00:00")).timestamp()
                zone_at[p["zone"]] = min(zone_at.get(p["zone"], at), at)
            if i == 0:
                continue  # warm-up: the first alert also starts connections and loads the registry
            lat = [at - t0 for at in zone_at.values()]
            latencies.extend(lat)
            per_alert.append(max(lat))
    finally:
        producer.close()
        lane.stop()
        worker.close()
        emus.close()
    note = f"{RUNS} national alerts × 3,321 zones after a warm-up; worst alert {max(per_alert):.3f}s"
    return [
        Result("national_alert_p50_s", percentile(latencies, 50), "s", "<= 1.0 (p99)", note),
        Result("national_alert_p99_s", percentile(latencies, 99), "s", "<= 1.0", note),
    ]
