"""Fuzz every input topic of a running pipeline: nothing crashes, nothing sticks, bad input is dead-lettered.

Hypothesis generates (derandomized, so every run sends the same records) random and mutated ninjs
(from the sample articles), CAP (from the sample alert and the cap-library test data) and channel
commands, plus 2 MB bodies, invalid UTF-8 and national articles at and past the bounds (every
field at its bound is accepted; one past a bound is dead-lettered), and they go into cms.articles, alerts.cap and every
distribution.<channel>.commands topic an adapter consumes, while the stream worker and the adapters
run as processes against the emulators and a real S3 server (bench/pipeline.py's stack). Then:

- every process is still alive and none restarted;
- every record is accounted for: a dead letter at its (topic, partition, offset) with a non-empty
  reason, or the receipt of normal processing (its ce_id, or its command id) when a mutation left
  it valid; records that can never be valid (not JSON/XML, invalid UTF-8, 2 MB) are dead-lettered;
- no record is refused by the broker: every input topic takes 4 MB records (max.message.bytes in
  schemas/topics), so even the 2 MB bodies reach their consumer and are dead-lettered with a reason
  (commands over their channel's limit: consumers/delivery/runtime.py MAX_COMMAND_BYTES);
- articles whose texts carry bidi, zero-width and other invisible controls are accepted, and no
  command of any channel carries one of those controls (schemas/text.py INVISIBLE);
- those articles, retracted afterwards by records keyed and written in NFD, are retracted (a
  "retracted" receipt under the NFC uri, never "retract_unknown");
- one valid record sent afterwards to every partition of every input topic gets through, and
  every consumer group has committed up to the end of its topic: no stuck partition.

The counts are printed and kept in test-artifacts/fuzz-inputs.json.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from fuzz_corpus import (
    Sent,
    alert_records,
    article_records,
    bidi_article_records,
    cap_sources,
    command_records,
    hostile_records,
    nfd_retraction_records,
    sample_docs,
    valid_command,
)
from helpers import ce_headers, s3, uncommitted, with_payloads
from kafka.errors import KafkaError

from bench.pipeline import PipelineStack, StackConfig
from infra.kafka import clients
from infra.kafka.tail import TopicTail
from infra.local.s3.versitygw import S3Server
from schemas.settings import KafkaConnection
from schemas.text import INVISIBLE
from schemas.topics import Channel, Topic

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------------------
# The test
# ------------------------------------------------------------------------------------------------


def produce(bootstrap: str, records: list[Sent]) -> None:
    # Not idempotent: an idempotent producer treats a refused oversized record as fatal and aborts
    # the other batches in flight with it.
    producer = clients.producer(
        KafkaConnection(bootstrap),
        acks="all",
        max_request_size=4 * 1024 * 1024,
        linger_ms=5,
        enable_idempotence=False,
    )
    try:
        futures = [
            (r, producer.send(r.topic, value=r.value, key=r.key, headers=r.headers, partition=r.partition))
            for r in records
        ]
        for r, f in futures:
            try:
                meta = f.get(timeout=60)
                r.partition, r.offset = meta.partition, meta.offset
            except KafkaError as exc:
                r.refused = f"{type(exc).__name__}: {exc}"
    finally:
        producer.close()


def wait_until(check: Callable[[], bool], timeout: float, what: str, stack: PipelineStack) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        for p in stack.procs.values():
            assert p.alive(), (
                f"{p.name} died (exit {p.proc.returncode}): {last_error(stack.workdir / (p.name + '.log'))}"
            )
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def last_error(log: Path) -> str:
    """The crash line and the exception that ended a process, from its log."""
    lines = log.read_text(errors="replace").splitlines()
    critical = next((ln for ln in reversed(lines) if "CRITICAL" in ln), "")
    exc = next(
        (
            ln
            for ln in reversed(lines)
            if ln and not ln.startswith(" ") and ("Error" in ln or "Exception" in ln)
        ),
        "",
    )
    where = [ln.strip() for ln in lines if ln.strip().startswith('File "') and "/site-packages/" not in ln][
        -2:
    ]
    return f"{critical} | {exc} | {' < '.join(reversed(where))} (log {log})"


@pytest.mark.timeout(420)
def test_fuzzed_inputs_are_dead_lettered_and_nothing_sticks(
    kafka_bootstrap: str, s3: S3Server, tmp_path: Path
) -> None:
    stack = PipelineStack(kafka_bootstrap, tmp_path / "stack", s3, StackConfig(pages=3, groups=2))
    topics = {
        "cms.articles": stack.settings.topic(Topic.CMS_ARTICLES),
        "alerts.cap": stack.settings.topic(Topic.ALERTS_CAP),
    }
    targets = {
        Channel.FANPAGE: "fanpage:p0",
        Channel.ZALO: "zalo:g0",
        Channel.ARCHIVE: "archive:main",
        Channel.LOUDSPEAKER: "zone:4",
    }
    bidi = bidi_article_records(topics["cms.articles"])
    records = article_records(topics["cms.articles"]) + bidi + alert_records(topics["alerts.cap"])
    records += hostile_records(topics["cms.articles"], topics["alerts.cap"])
    for channel in stack.channels:
        topic = stack.settings.topic(Topic.commands(channel))
        topics[f"distribution.{channel.value}.commands"] = topic
        records += command_records(topic, channel, targets[channel])
    receipts = TopicTail(stack.settings.kafka, stack.settings.topic(Topic.RECEIPTS))
    dlq = TopicTail(stack.settings.kafka, stack.settings.topic(Topic.DEADLETTER))
    command_tails = [
        TopicTail(stack.settings.kafka, stack.settings.topic(Topic.commands(c))) for c in stack.channels
    ]
    try:
        stack.start_workers()
        produce(kafka_bootstrap, records)
        by_origin = {(r.topic, r.partition, r.offset): r for r in records if r.refused is None}
        by_ce = {r.ce_id: r for r in records if r.ce_id and r.refused is None}
        by_cid: dict[str, list[Sent]] = {}
        for r in records:
            if r.command_id and r.refused is None:
                by_cid.setdefault(r.command_id, []).append(r)

        def account() -> bool:
            for rec in dlq.poll():
                h = {k: (v or b"").decode("utf-8", "replace") for k, v in rec.headers or []}
                r = by_origin.get(
                    (h.get("dlq_topic", ""), int(h.get("dlq_partition", -1)), int(h.get("dlq_offset", -1)))
                )
                if r is not None:
                    r.outcome, r.reason = "dead_lettered", h.get("dlq_reason", "")
            for rec in receipts.poll():
                rc = orjson.loads(rec.value)
                hit = by_ce.get(rc.get("event_id") or "")
                if hit is not None and hit.outcome is None and rc.get("stage") in ("fanout", "policy"):
                    hit.outcome = f"accepted: {rc.get('outcome')}"
                for r in by_cid.get(rc.get("command_id") or "", []):
                    if r.outcome is None and rc.get("outcome") in (
                        "delivered",
                        "failed",
                        "skipped",
                        "updated",
                        "deleted",
                    ):
                        r.outcome = f"accepted: {rc.get('outcome')}"
            return all(r.outcome is not None for r in by_origin.values())

        def pending() -> list[str]:
            return [r.label for r in by_origin.values() if r.outcome is None]

        try:
            wait_until(account, 150, "every fuzz record to be dead-lettered or processed", stack)
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {len(pending())} unaccounted, e.g. {pending()[:8]}") from None

        # Invisible controls: every such article got through, and no command carries a control.
        assert all((r.outcome or "").startswith("accepted") for r in bidi), [
            (r.label, r.outcome, r.reason) for r in bidi
        ]
        bidi_uris = {r.extra["uri"] for r in bidi}
        looked_at, leaked = invisible_in_commands(stack.settings, command_tails, bidi_uris)
        assert not leaked, leaked
        assert looked_at >= len(bidi), f"only {looked_at} commands of those articles were looked at"

        # NFD retractions of those articles retract them (the worker forwards each to the partition
        # of its NFC key and reads the uri as NFC).
        retractions = nfd_retraction_records(topics["cms.articles"], bidi)
        produce(kafka_bootstrap, retractions)
        assert all(r.refused is None for r in retractions)
        records += retractions

        def retracted() -> bool:
            receipts.poll()
            seen = {
                (rc.get("uri"), rc.get("outcome")) for rc in (orjson.loads(r.value) for r in receipts.records)
            }
            for r in retractions:
                if (r.extra["uri"], "retracted") in seen:
                    r.outcome = "accepted: retracted"
                elif (r.extra["uri"], "retract_unknown") in seen or (r.extra["uri"], "dead_lettered") in seen:
                    r.outcome = "lost"
            return all(r.outcome is not None for r in retractions)

        wait_until(retracted, 120, "the NFD retractions to retract their NFC articles", stack)
        assert all(r.outcome == "accepted: retracted" for r in retractions), [
            (r.label, r.extra["uri"], r.outcome) for r in retractions if r.outcome != "accepted: retracted"
        ]

        # No stuck partition: a valid record on every partition of every input topic gets through.
        sentinels = sentinel_records(stack, topics, targets)
        produce(kafka_bootstrap, sentinels)
        for s in sentinels:
            assert s.refused is None, s.refused
        want_ce = {s.ce_id for s in sentinels if s.ce_id}
        want_cid = {s.command_id for s in sentinels if s.command_id}

        def through() -> bool:
            receipts.poll()
            seen = [orjson.loads(r.value) for r in receipts.records]
            ok_ce = {rc.get("event_id") for rc in seen if rc.get("outcome") == "routed"}
            ok_cid = {rc.get("command_id") for rc in seen if rc.get("outcome") == "delivered"}
            return want_ce <= ok_ce and want_cid <= ok_cid

        wait_until(through, 120, "a valid record on every partition after the fuzz", stack)
        lag = committed_lag(kafka_bootstrap, stack, topics)
        alive = {name: p.alive() and p.restarts == 0 and p.crashes == 0 for name, p in stack.procs.items()}
    finally:
        receipts.close()
        dlq.close()
        for tail in command_tails:
            tail.close()
        stack.close()

    counts: dict[str, Counter[str]] = {}
    for r in records:
        c = counts.setdefault(next(k for k, t in topics.items() if t == r.topic), Counter())
        c["sent"] += 1
        c[
            "refused_by_broker"
            if r.refused
            else ("dead_lettered" if r.outcome == "dead_lettered" else "accepted")
        ] += 1
    report = {
        "counts": {k: dict(v) for k, v in counts.items()},
        "lag_at_end": lag,
        "processes_ok": alive,
        "channels": [c.value for c in stack.channels],
        "loudspeaker": stack.loudspeaker_reason,
        "refused": sorted({f"{r.label} → {r.refused.split(':')[0]}" for r in records if r.refused}),
        "reasons": Counter(
            str(r.reason).split(":")[0][:60] for r in records if r.outcome == "dead_lettered"
        ).most_common(25),
    }
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / "fuzz-inputs.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print("fuzz:", json.dumps(report["counts"], ensure_ascii=False), "lag:", lag)

    assert all(alive.values()), alive
    assert all(v == 0 for v in lag.values()), lag
    assert not report["refused"], report["refused"]
    no_reason = [r.label for r in records if r.outcome == "dead_lettered" and not (r.reason or "").strip()]
    assert not no_reason, no_reason
    slipped = [
        (r.label, r.outcome)
        for r in records
        if r.hopeless and r.refused is None and r.outcome != "dead_lettered"
    ]
    assert not slipped, slipped
    assert sum(c["dead_lettered"] for c in counts.values()) >= len(records) // 3
    at_bounds = [(r.label, r.outcome) for r in records if r.label.startswith("national") and not r.hopeless]
    assert at_bounds and all(str(o).startswith("accepted") for _, o in at_bounds), at_bounds


def invisible_in_commands(
    settings: Any, tails: list[TopicTail], uris: set[str]
) -> tuple[int, list[tuple[str, str, list[str]]]]:
    """How many commands for ``uris`` were looked at, and (channel, uri, controls) of each whose payload
    holds an invisible control.
    The archive's command carries the document as published, whole (the record of what was sent);
    its page is cleaned by the same rule (consumers/archive/render.py clean_text), so its commands
    are not looked at here. A payload stored once for many commands is read where it is stored."""
    leaked: list[tuple[str, str, list[str]]] = []
    mine: list[dict[str, Any]] = []
    for tail in tails:
        tail.poll()
        for rec in tail.records:
            try:
                cmd = orjson.loads(rec.value)
            except orjson.JSONDecodeError:
                continue  # the fuzzed commands
            if (
                isinstance(cmd, dict)
                and isinstance(cmd.get("uri"), str)  # a fuzzed command may carry any JSON there
                and cmd["uri"] in uris
                and cmd.get("channel") != Channel.ARCHIVE.value
            ):
                mine.append(cmd)
    for cmd in with_payloads(settings, mine):
        found = INVISIBLE.findall(orjson.dumps(cmd.get("payload")).decode())  # non-ASCII written as it is
        if found:
            leaked.append((str(cmd.get("channel")), str(cmd["uri"]), [f"U+{ord(c):04X}" for c in found]))
    looked_at = len(mine)
    return looked_at, leaked


def sentinel_records(stack: PipelineStack, topics: dict[str, str], targets: dict[Channel, str]) -> list[Sent]:
    doc = sample_docs()[2]
    cap = cap_sources()[0]
    out: list[Sent] = []
    consumer = clients.consumer(
        stack.settings.kafka,
    )
    try:
        for name, topic in topics.items():
            for p in sorted(consumer.partitions_for_topic(topic) or ()):
                tag = uuid.uuid4().hex[:10]
                if name == "cms.articles":
                    uri = f"urn:lantoa:fuzz:sentinel-{tag}"
                    ce = str(uuid.uuid4())
                    out.append(
                        Sent(
                            topic,
                            "article",
                            orjson.dumps(dict(doc, uri=uri)),
                            uri.encode(),
                            [(k, v.encode()) for k, v in ce_headers(ce_id=ce).items()],
                            False,
                            ce_id=ce,
                            partition=p,
                        )
                    )
                elif name == "alerts.cap":
                    ident = f"VN-FUZZ-SENTINEL-{tag}"
                    ce = str(uuid.uuid4())
                    raw = cap.replace(b"VN-NCHMF-2026-0917-BAO05-01", ident.encode())
                    out.append(
                        Sent(
                            topic,
                            "alert",
                            raw,
                            ident.encode(),
                            [(k, v.encode()) for k, v in ce_headers("alert.received", ce_id=ce).items()],
                            False,
                            ce_id=ce,
                            partition=p,
                        )
                    )
                else:
                    channel = Channel(name.split(".")[1])
                    cmd = valid_command(channel, targets[channel], f"urn:lantoa:fuzz:sentinel-{tag}")
                    out.append(
                        Sent(
                            topic,
                            f"command:{channel.value}",
                            orjson.dumps(cmd),
                            targets[channel].encode(),
                            [],
                            False,
                            command_id=cmd["command_id"],
                            partition=p,
                        )
                    )
    finally:
        consumer.close()
    return out


def committed_lag(bootstrap: str, stack: PipelineStack, topics: dict[str, str]) -> dict[str, int]:
    """Records each consumer group has not committed yet, per input topic (0 = nothing stuck)."""
    groups = {"cms.articles": stack.settings.app_id, "alerts.cap": f"{stack.settings.app_id}-alerts"}
    for c in stack.channels:
        groups[f"distribution.{c.value}.commands"] = f"{stack.settings.topic_prefix}lantoa-{c.value}"
    lag = uncommitted(bootstrap, {topic: groups[name] for name, topic in topics.items()})
    return {name: lag[topic] for name, topic in topics.items()}
