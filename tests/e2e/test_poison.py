"""Issue 12 end to end: poison in every input of every process, then good records; nothing restarts.

The fuzz test's stack (bench/pipeline.py: the stream worker and one adapter per channel against the
emulators and a real S3 server), plus the emergency lane, the triage and the CAP HTTP endpoint, each
its own process. Into every input topic (cms.articles, alerts.cap, streams.embargo.releases, every
distribution.<channel>.commands and its retry tiers, distribution.emergency.commands,
engagement.inbound, distribution.targets) goes one record of each poison class: times every schema
allows but that overflow in UTC (year 9999 at -14:00, year 1 at +14:00) in ce_time, ninjs, CAP,
command, emergency and engagement fields; command versions past 64 bits (1e300 is a JSON Schema
integer, orjson cannot write it back); nesting deeper than Lantoa's limit (a ninjs 2.0 document 200
associations deep, which orjson reads but cannot write back) and deeper than orjson reads; a number
JSON cannot hold (1e309); and forged internal headers (dlq_attempts, retry_attempt, retry_due_at,
dlq_topic naming another topic). The CAP endpoint gets the poison alerts over HTTP. Then one good
record per partition of every input topic, a good alert over HTTP and a good citizen comment.
Asserted:

- every process is the one started (same pid, no restart, no crash);
- every good record is delivered (its routed or delivered receipt; the comment becomes a question);
- every poison record is a dead letter (found by the ``poison_id`` header it carries) whose
  ``dlq_reason`` says why, and the endpoint refuses each poison alert with a 400 and the reason
  (poison targets are not dead letters: the registry every process follows skips them, logged);
- every consumer group has committed to the end of every input topic.
"""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import test_fuzz_inputs as fuzz
from fuzz_corpus import Sent, cap_sources, sample_docs, valid_command
from helpers import ce_headers, uncommitted

from bench.pipeline import PipelineStack, StackConfig
from infra.kafka.tail import TopicTail
from infra.local.s3.versitygw import S3Server
from infra.local.stack import Proc
from schemas.topics import Channel, Topic

s3 = fuzz.s3  # the fuzz test's module-scoped S3 server fixture

LATE = "9999-12-31T23:00:00-14:00"
EARLY = "0001-01-01T00:00:00+14:00"
TARGETS = {
    Channel.FANPAGE: "fanpage:p0",
    Channel.ZALO: "zalo:g0",
    Channel.ARCHIVE: "archive:main",
    Channel.LOUDSPEAKER: "zone:4",
}
FORGED = [
    ("dlq_attempts", b"abc"),
    ("retry_attempt", b"x"),
    ("retry_due_at", b"1e400"),
    ("dlq_topic", b"distribution.receipts"),
]


def deep_json(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def deep_ninjs2(uri: str, levels: int = 200) -> bytes:
    """A schema-valid ninjs 2.0 document whose associations nest ``levels`` deep (2 JSON levels each)."""
    inner = b'{"uri":"' + uri.encode() + b':a","type":"text"}'
    for _ in range(levels):
        inner = b'{"uri":"' + uri.encode() + b':a","type":"text","associations":{"a":' + inner + b"}}"
    head = b'{"uri":"' + uri.encode() + b'","version":"1","type":"text","pubstatus":"usable",'
    return head + b'"headlines":[{"role":"main","value":"Tin"}],"associations":{"a":' + inner + b"}}"


def expected_reason(label: str) -> str:
    """What the dead letter's reason must say for a poison record of this label."""
    rules = [
        ("tick version abc", "bad release tick"),
        ("tick without version", "bad release tick"),
        ("orjson reads", "depth limit"),
        ("deep", "nested deeper than"),
        ("1e309", "not JSON"),
        ("command version", "version"),
    ]
    return next(
        (why for part, why in rules if part in label), "outside the years"
    )  # every other poison is a time


def poison(topic: str, label: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]) -> Sent:
    tag = uuid.uuid4().hex
    return Sent(
        topic,
        label,
        value,
        key,
        [*headers, ("poison_id", tag.encode())],
        True,
        label=label,
        extra={"id": tag},
    )


def article_poison(topic: str) -> list[Sent]:
    doc = sample_docs()[2]
    out: list[Sent] = []

    def art(label: str, headers: dict[str, str] | None = None, version: str = "3.1", **fields: Any) -> None:
        uri = f"urn:lantoa:poison:{uuid.uuid4().hex[:10]}"
        hs = [(k, v.encode()) for k, v in ce_headers(version=version, **(headers or {})).items()]
        out.append(
            poison(topic, f"article {label}", orjson.dumps(dict(doc, uri=uri, **fields)), uri.encode(), hs)
        )

    art("ce_time year 9999 -14:00", {"ce_time": LATE})
    art("ce_time year 1 +14:00", {"ce_time": EARLY})
    art("versionCreated far future", versionCreated=LATE)
    art("embargo far future", embargoedUntil=LATE)
    art("firstCreated year 1", firstCreated=EARLY)
    hs = [(k, v.encode()) for k, v in ce_headers(version="2.0").items()]
    uri = f"urn:lantoa:poison:deep-{uuid.uuid4().hex[:8]}"
    out.append(poison(topic, "article ninjs 2.0 200 associations deep", deep_ninjs2(uri), uri.encode(), hs))
    hs = [(k, v.encode()) for k, v in ce_headers().items()]
    out.append(poison(topic, "article deeper than orjson reads", deep_json(1100), b"urn:lantoa:poison:d", hs))
    out.append(
        poison(
            topic,
            "article number 1e309",
            orjson.dumps(dict(doc, uri="urn:lantoa:poison:n")).replace(
                b'"version":"1"', b'"version":"1","urgency":1e309'
            ),
            b"urn:lantoa:poison:n",
            hs,
        )
    )
    for name, value in FORGED:  # on a poison record: its dead letter must say where it really came from
        uri = f"urn:lantoa:poison:forged-{uuid.uuid4().hex[:8]}"
        hs = [(k, v.encode()) for k, v in ce_headers(ce_time=LATE).items()] + [(name, value)]
        out.append(
            poison(topic, f"article forged {name}", orjson.dumps(dict(doc, uri=uri)), uri.encode(), hs)
        )
    return out


def cap_poison() -> list[tuple[str, bytes]]:
    base = cap_sources()[0].decode()
    out = []
    for element in ("sent", "effective", "expires"):
        start = base.index(f"<{element}>")
        end = base.index(f"</{element}>", start)
        for value in (LATE, EARLY):
            out.append(
                (f"CAP <{element}> {value}", (base[:start] + f"<{element}>{value}" + base[end:]).encode())
            )
    return out


def alert_poison(topic: str) -> list[Sent]:
    out = [
        poison(
            topic, label, raw, b"poison", [(k, v.encode()) for k, v in ce_headers("alert.received").items()]
        )
        for label, raw in cap_poison()
    ]
    for name, value in FORGED:
        raw = cap_poison()[-1][1]
        out.append(poison(topic, f"CAP forged {name}", raw, b"poison", [(name, value)]))
    return out


def command_poison(topic: str, channel: Channel) -> list[Sent]:
    out: list[Sent] = []

    def cmd(label: str, change: Any, headers: list[tuple[str, bytes]] = ()) -> None:  # type: ignore[assignment]
        raw = valid_command(channel, TARGETS[channel], f"urn:lantoa:poison:{uuid.uuid4().hex[:10]}")
        change(raw)
        out.append(
            poison(
                topic,
                f"{channel.value} command {label}",
                orjson.dumps(raw),
                TARGETS[channel].encode(),
                list(headers),
            )
        )

    cmd("published_at year 9999 -14:00", lambda r: r.update(published_at=LATE))
    cmd("issued_at year 1 +14:00", lambda r: r.update(issued_at=EARLY))
    cmd("payload expires_at far future", lambda r: r["payload"].update(expires_at=LATE))
    deep = valid_command(channel, TARGETS[channel], f"urn:lantoa:poison:{uuid.uuid4().hex[:10]}")
    body = orjson.dumps(deep).replace(b'"payload":{', b'"payload":{"deep":' + deep_json(300) + b",", 1)
    out.append(
        poison(topic, f"{channel.value} command payload 300 deep", body, TARGETS[channel].encode(), [])
    )
    out.append(
        poison(
            topic,
            f"{channel.value} command 1e309",
            orjson.dumps(deep).replace(b'"version":1', b'"version":1e309', 1),
            TARGETS[channel].encode(),
            [],
        )
    )
    for number in (b"1e300", b"18446744073709551616"):  # JSON Schema integers past 64 bits
        out.append(
            poison(
                topic,
                f"{channel.value} command version {number.decode()}",
                orjson.dumps(deep).replace(b'"version":1', b'"version":' + number),
                TARGETS[channel].encode(),
                [],
            )
        )
    for name, value in FORGED:
        cmd(f"forged {name}", lambda r: r.update(published_at=LATE), [(name, value)])
    return out


def emergency_value(eid: str, **changes: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    value: dict[str, Any] = {
        "schema_version": 1,
        "emergency_id": eid,
        "action": "start",
        "msg_type": "Alert",
        "status": "Actual",
        "exercise": False,
        "zones": ["zone:4"],
        "headline": "Bão số 5",
        "text": "Bão số 5 đang tiến vào đất liền.",
        "language": "vi-VN",
        "expires_at": (now + timedelta(hours=1)).isoformat(),
        "repeat_interval_s": 600,
        "replaces": [],
        "sent": now.isoformat(),
        "published_at": now.isoformat(),
        "issued_at": now.isoformat(),
    }
    value.update(changes)
    return value


def emergency_poison(topic: str) -> list[Sent]:
    out = []
    for label, changes in (
        ("expires_at year 9999 -14:00", {"expires_at": LATE}),
        ("published_at year 1 +14:00", {"published_at": EARLY}),
    ):
        eid = f"VN-POISON-{uuid.uuid4().hex[:8]}"
        out.append(
            poison(
                topic, f"emergency {label}", orjson.dumps(emergency_value(eid, **changes)), eid.encode(), []
            )
        )
    eid = f"VN-POISON-{uuid.uuid4().hex[:8]}"
    raw = orjson.dumps(emergency_value(eid)).replace(
        b'"replaces":[]', b'"replaces":[],"deep":' + deep_json(300), 1
    )
    out.append(poison(topic, "emergency 300 deep", raw, eid.encode(), []))
    for name, value in FORGED:
        eid = f"VN-POISON-{uuid.uuid4().hex[:8]}"
        out.append(
            poison(
                topic,
                f"emergency forged {name}",
                orjson.dumps(emergency_value(eid, expires_at=LATE)),
                eid.encode(),
                [(name, value)],
            )
        )
    return out


def engagement_value(message_id: str, **changes: Any) -> dict[str, Any]:
    value = {
        "schema_version": 1,
        "platform": "fanpage",
        "message_id": message_id,
        "text": "Khi nào có điện lại?",
        "post_id": "300000000000000_1",
        "page_id": "300000000000000",
        "sender_id": "u1",
        "received_at": datetime.now(UTC).isoformat(),
        "created_at": None,
        "kind": "message",
    }
    value.update(changes)
    return value


def engagement_poison(topic: str) -> list[Sent]:
    out = []
    for label, changes in (
        ("received_at year 9999 -14:00", {"received_at": LATE}),
        ("created_at year 1 +14:00", {"created_at": EARLY}),
    ):
        mid = f"poison-{uuid.uuid4().hex[:8]}"
        out.append(
            poison(
                topic,
                f"engagement {label}",
                orjson.dumps(engagement_value(mid, **changes)),
                f"fb:{mid}".encode(),
                [],
            )
        )
    mid = f"poison-{uuid.uuid4().hex[:8]}"
    raw = orjson.dumps(engagement_value(mid)).replace(b'"kind"', b'"deep":' + deep_json(300) + b',"kind"', 1)
    out.append(poison(topic, "engagement 300 deep", raw, f"fb:{mid}".encode(), []))
    out.append(
        poison(
            topic,
            "engagement 1e309",
            orjson.dumps(engagement_value(mid)).replace(b'"schema_version":1', b'"schema_version":1e309', 1),
            f"fb:{mid}".encode(),
            [],
        )
    )
    for name, value in FORGED:
        mid = f"poison-{uuid.uuid4().hex[:8]}"
        out.append(
            poison(
                topic,
                f"engagement forged {name}",
                orjson.dumps(engagement_value(mid, received_at=LATE)),
                f"fb:{mid}".encode(),
                [(name, value)],
            )
        )
    return out


def release_poison(topic: str) -> list[Sent]:
    """Embargo release ticks the worker consumes (it writes them itself; anyone may)."""
    uri = "urn:lantoa:poison:tick"
    ticks = [
        ("tick 300 deep", b'{"uri":"' + uri.encode() + b'","version":1,"x":' + deep_json(300) + b"}"),
        ("tick version 1e309", b'{"uri":"' + uri.encode() + b'","version":1e309}'),
        ("tick version abc", orjson.dumps({"uri": uri, "version": "abc"})),
        ("tick without version", orjson.dumps({"uri": uri})),
    ]
    return [poison(topic, label, raw, uri.encode(), list(FORGED)) for label, raw in ticks]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


CAP_TOKEN = uuid.uuid4().hex + uuid.uuid4().hex  # the alert-server's sender token (LANTOA_CAP_TOKEN)


def post_cap(port: int, body: bytes) -> tuple[int, dict[str, Any]]:
    headers = {"Content-Type": "application/xml", "Authorization": f"Bearer {CAP_TOKEN}"}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/cap", data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, orjson.loads(exc.read())


def wait_for_port(port: int, proc: Proc, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.alive(), f"{proc.name} exited {proc.proc.returncode}"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert time.monotonic() < deadline, f"{proc.name} not listening on {port}"
        time.sleep(0.3)


@pytest.mark.timeout(300)
def test_poison_in_every_input_is_dead_lettered_and_every_process_survives(
    kafka_bootstrap: str, s3: S3Server, tmp_path: Path
) -> None:
    stack = PipelineStack(kafka_bootstrap, tmp_path / "stack", s3, StackConfig(pages=1, groups=1))
    st = stack.settings
    prefix = st.topic_prefix
    topics = {"cms.articles": st.topic(Topic.CMS_ARTICLES), "alerts.cap": st.topic(Topic.ALERTS_CAP)}
    groups = {topics["cms.articles"]: st.app_id, topics["alerts.cap"]: f"{st.app_id}-alerts"}
    records = article_poison(topics["cms.articles"]) + alert_poison(topics["alerts.cap"])
    for channel in stack.channels:
        group = f"{prefix}lantoa-{channel.value}"
        topic = st.topic(Topic.commands(channel))
        topics[f"distribution.{channel.value}.commands"] = topic
        groups[topic] = group
        records += command_poison(topic, channel)
        for tier in ("10s", "1m", "10m"):
            retry = st.topic(Topic.retry(channel, tier))
            groups[retry] = group
            records += [
                r for r in command_poison(retry, channel) if "year" in r.label or "forged retry" in r.label
            ]
    inbound = st.topic(Topic.ENGAGEMENT_INBOUND)
    groups[inbound] = f"{prefix}lantoa-engagement"
    records += engagement_poison(inbound)
    releases = st.topic(Topic.EMBARGO_RELEASES)
    groups[releases] = st.app_id
    records += release_poison(releases)
    emergency_topic = st.topic(Topic.EMERGENCY_COMMANDS)
    groups[emergency_topic] = f"{prefix}lantoa-emergency"
    records += emergency_poison(emergency_topic)

    port = free_port()
    receipts = TopicTail(st.kafka, st.topic(Topic.RECEIPTS))
    dlq = TopicTail(st.kafka, st.topic(Topic.DEADLETTER))
    questions = TopicTail(st.kafka, st.topic(Topic.ENGAGEMENT_QUESTIONS))
    try:
        procs = stack.start_workers()
        procs["emergency"] = Proc(
            "emergency", ["adapter", "emergency"], stack.env, stack.workdir / "emergency.log"
        )
        procs["alert-server"] = Proc(
            "alert-server",
            ["alert-server", "--port", str(port)],
            {**stack.env, "LANTOA_CAP_TOKEN": CAP_TOKEN},
            stack.workdir / "alert-server.log",
        )
        procs["triage"] = Proc("triage", ["triage"], stack.env, stack.workdir / "triage.log")
        pids = {name: p.proc.pid for name, p in procs.items()}
        wait_for_port(port, procs["alert-server"])
        refused = {label: post_cap(port, raw) for label, raw in cap_poison()}
        targets_topic = st.topic(Topic.TARGETS)
        fuzz.produce(
            kafka_bootstrap,
            records
            + [  # the registry every process follows skips them, logged
                Sent(
                    targets_topic,
                    "target 300 deep",
                    b'{"id":"poison:deep","config":' + deep_json(300) + b"}",
                    b"poison:deep",
                    list(FORGED),
                    True,
                ),
                Sent(
                    targets_topic,
                    "target 1e309",
                    b'{"id":"poison:n","ward_code":1e309}',
                    b"poison:n",
                    [],
                    True,
                ),
            ],
        )
        assert not [r.label for r in records if r.refused], [
            (r.label, r.refused) for r in records if r.refused
        ]
        by_id = {r.extra["id"]: r for r in records}

        def all_dead_lettered() -> bool:
            for rec in dlq.poll():
                h = {k: (v or b"").decode("utf-8", "replace") for k, v in rec.headers or []}
                r = by_id.get(h.get("poison_id", ""))
                if r is not None:
                    r.outcome, r.reason = "dead_lettered", h.get("dlq_reason", "")
                    r.extra["dlq_topic"] = h.get("dlq_topic")
            return all(r.outcome for r in records)

        try:
            fuzz.wait_until(all_dead_lettered, 120, "every poison record to be dead-lettered", stack)
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: not dead-lettered: {[r.label for r in records if not r.outcome]}"
            ) from None

        # Good records after the poison: one per partition of every input topic, and one alert by HTTP.
        good_topics = dict(topics)
        for channel in stack.channels:
            good_topics[f"distribution.{channel.value}.retry.10s"] = st.topic(Topic.retry(channel, "10s"))
        sentinels = fuzz.sentinel_records(stack, good_topics, TARGETS)
        eid = f"VN-POISON-GOOD-{uuid.uuid4().hex[:8]}"
        sentinels.append(
            Sent(emergency_topic, "emergency", orjson.dumps(emergency_value(eid)), eid.encode(), [], False)
        )
        mid = f"good-{uuid.uuid4().hex[:8]}"
        sentinels.append(
            Sent(inbound, "engagement", orjson.dumps(engagement_value(mid)), f"fb:{mid}".encode(), [], False)
        )
        fuzz.produce(kafka_bootstrap, sentinels)
        good_cap = cap_sources()[0].replace(
            b"VN-NCHMF-2026-0917-BAO05-01", f"VN-POISON-HTTP-{uuid.uuid4().hex[:6]}".encode()
        )
        http_good = post_cap(port, good_cap)
        want_ce = {s.ce_id for s in sentinels if s.ce_id}
        want_cid = {s.command_id for s in sentinels if s.command_id}

        def through() -> bool:
            receipts.poll()
            seen = [orjson.loads(r.value) for r in receipts.records]
            ok_ce = {rc.get("event_id") for rc in seen if rc.get("outcome") == "routed"}
            ok_cid = {rc.get("command_id") for rc in seen if rc.get("outcome") == "delivered"}
            emergency = any(
                rc.get("channel") == "emergency"
                and rc.get("outcome") == "delivered"
                and rc.get("uri") == f"urn:lantoa:cap:{eid}"
                for rc in seen
            )
            return want_ce <= ok_ce and want_cid <= ok_cid and emergency

        fuzz.wait_until(through, 120, "every good record after the poison", stack)
        question = (
            "q-" + hashlib.sha256(f"fanpage:{mid}".encode()).hexdigest()[:10]
        )  # streams.engagement.question_id

        def asked() -> bool:
            questions.poll()
            return question in {(r.key or b"").decode() for r in questions.records}

        fuzz.wait_until(asked, 60, "the good engagement record to become a question", stack)
        lag = uncommitted(kafka_bootstrap, groups)
        survived = {
            name: (p.alive(), p.proc.pid == pids[name], p.restarts + p.crashes) for name, p in procs.items()
        }
    finally:
        receipts.close()
        dlq.close()
        questions.close()
        stack.close()

    assert all(alive and same and not n for alive, same, n in survived.values()), survived
    for label, (status, body) in refused.items():
        assert status == 400 and "outside the years" in str(body.get("reason")), (label, status, body)
    assert http_good[0] == 202, http_good
    wrong = [(r.label, r.reason) for r in records if expected_reason(r.label) not in (r.reason or "")]
    assert not wrong, wrong
    assert all(v == 0 for v in lag.values()), lag
