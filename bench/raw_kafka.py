"""raw_kafka_msgs_s: Kafka's own ProducerPerformance and ConsumerPerformance on the real broker.

The yardstick every other figure is compared with. Both tools run from the kafka-tools classpath
(``fetch_jars(tools=True)``, kept apart from the broker's) against the broker of this run, on a
fresh topic with as many partitions as a channel's command topic. The records are ~1 KB JSON
channel commands (``payload_file``): ProducerPerformance picks one line of that file per record,
so the passthrough bench (bench/passthrough.py) then consumes these very records.

``raw_kafka_msgs_s`` is the slower of the two sides (a consume → produce loop cannot beat either);
both sides are reported on their own as well. Producer: ``acks=all`` and idempotence, as Lantoa's
producers. Consumer: ``fetch.nMsg.sec`` (fetch time, rebalance excluded) is the consume figure.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.common import Result
from infra.kafka import clients
from schemas.settings import KafkaConnection

RECORDS = 200_000
RECORD_BYTES = 1024
PARTITIONS = 6  # a channel command topic's count (schemas/topics/distribution.*.commands.yaml)
DISTINCT_PAYLOADS = 64

_PRODUCER_LINE = re.compile(
    r"(\d+) records sent, ([\d.]+) records/sec \(([\d.]+) MB/sec\), ([\d.]+) ms avg latency, "
    r"([\d.]+) ms max latency, (\d+) ms 50th, (\d+) ms 95th, (\d+) ms 99th"
)


@dataclass(frozen=True)
class RawTopic:
    """The topic ProducerPerformance filled: what passthrough reads."""

    name: str
    records: int
    record_bytes: int


def command_payloads(count: int = DISTINCT_PAYLOADS, size: int = RECORD_BYTES) -> list[bytes]:
    """``count`` distinct fanpage commands as JSON, each padded to exactly ``size`` bytes."""
    from schemas.codec import encode
    from schemas.models import Action, Command, IdempotencyKey, Priority
    from schemas.topics import Channel

    out: list[bytes] = []
    for i in range(count):
        uri = f"urn:lantoa:bench:raw-{i:04d}"
        key = IdempotencyKey(uri, 1, Channel.FANPAGE, f"fanpage:p{i % 50}", Action.PUBLISH)

        def build(fill: int) -> bytes:
            message = "Thông báo của Ủy ban nhân dân phường về lịch tiêm chủng. " + "x" * fill
            cmd = Command(
                key,
                Priority.NORMAL,
                "2026-11-26T01:00:00Z",
                {"message": message, "link": f"https://tin.lantoa.example.vn/a/{i}"},
                published_at="2026-11-26T01:00:00Z",
            )
            return encode(cmd.to_dict())

        base = len(build(0))
        line = build(max(0, size - base))
        assert b"\n" not in line and len(line) == size, (len(line), size)
        out.append(line)
    return out


def create_topic(bootstrap: str, name: str, partitions: int = PARTITIONS) -> None:
    from kafka.admin import NewTopic

    admin = clients.admin(KafkaConnection(bootstrap), client_id="lantoa-bench-admin")
    try:
        admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        admin.close()


def _java(main_class: str, *args: str, timeout: float = 600) -> str:
    from infra.local.kafka.broker import TOOL_JVM_OPTS
    from infra.local.kafka.jars import fetch_jars, java_executable

    tools = fetch_jars(tools=True)
    jvm = [
        opt for opt in TOOL_JVM_OPTS if not opt.startswith("-XX:TieredStopAtLevel")
    ]  # full JIT: a throughput run
    cmd = [java_executable(), *jvm, "-cp", f"{tools}/*", main_class, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{main_class} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    return proc.stdout


def producer_performance(bootstrap: str, topic: str, records: int, payload_file: Path) -> dict[str, float]:
    out = _java(
        "org.apache.kafka.tools.ProducerPerformance",
        "--topic",
        topic,
        "--num-records",
        str(records),
        "--payload-file",
        str(payload_file),
        "--throughput",
        "-1",
        "--producer-props",
        f"bootstrap.servers={bootstrap}",
        "acks=all",
        "enable.idempotence=true",
        "linger.ms=5",
        "batch.size=262144",
        "compression.type=none",
    )
    matches = _PRODUCER_LINE.findall(out)
    if not matches:
        raise RuntimeError(f"no summary line in ProducerPerformance output:\n{out[-2000:]}")
    sent, rate, mb, avg, mx, p50, p95, p99 = matches[-1]  # the last line is the run's summary
    if int(sent) != records:
        raise RuntimeError(f"ProducerPerformance sent {sent}/{records}")
    return {"msgs_s": float(rate), "mb_s": float(mb), "avg_ms": float(avg), "p99_ms": float(p99)}


def consumer_performance(bootstrap: str, topic: str, records: int) -> dict[str, float]:
    out = _java(
        "org.apache.kafka.tools.ConsumerPerformance",
        "--bootstrap-server",
        bootstrap,
        "--topic",
        topic,
        "--messages",
        str(records),
        "--timeout",
        "60000",
        "--group",
        f"bench-cp-{uuid.uuid4().hex[:6]}",
    )
    lines = [ln for ln in out.splitlines() if ln.strip()]
    header = next(i for i, ln in enumerate(lines) if ln.startswith("start.time"))
    names = [h.strip() for h in lines[header].split(",")]
    values = [v.strip() for v in lines[header + 1].split(",")]
    row = dict(zip(names, values, strict=True))
    consumed = int(float(row["data.consumed.in.nMsg"]))
    if consumed < records:
        raise RuntimeError(f"ConsumerPerformance read {consumed}/{records}")
    return {
        "msgs_s": float(row["fetch.nMsg.sec"]),
        "with_rebalance_msgs_s": float(row["nMsg.sec"]),
        "mb_s": float(row["fetch.MB.sec"]),
        "rebalance_ms": float(row["rebalance.time.ms"]),
    }


def fill(bootstrap: str, records: int = RECORDS) -> tuple[RawTopic, dict[str, float]]:
    """A fresh topic filled by ProducerPerformance with ~1 KB commands; the producer's figures."""
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    create_topic(bootstrap, topic)
    with tempfile.TemporaryDirectory(prefix="lantoa-bench-raw-") as tmp:
        payload_file = Path(tmp) / "payloads.jsonl"
        payload_file.write_bytes(b"\n".join(command_payloads()))
        produced = producer_performance(bootstrap, topic, records, payload_file)
    return RawTopic(topic, records, RECORD_BYTES), produced


_LAST: RawTopic | None = None


def filled_topic() -> RawTopic | None:
    """The topic this run's raw bench filled (passthrough reads it), if it ran."""
    return _LAST


def run(bootstrap: str) -> list[Result]:
    global _LAST
    started = time.monotonic()
    raw, produced = fill(bootstrap)
    consumed = consumer_performance(bootstrap, raw.name, raw.records)
    _LAST = raw
    note = (
        f"{raw.records:,} records of {raw.record_bytes} B (JSON commands), {PARTITIONS} partitions, acks=all; "
        f"min(produce, consume); {time.monotonic() - started:.0f}s"
    )
    return [
        Result("raw_kafka_msgs_s", min(produced["msgs_s"], consumed["msgs_s"]), "msg/s", "baseline", note),
        Result(
            "raw_kafka_produce_msgs_s",
            produced["msgs_s"],
            "msg/s",
            "",
            f"ProducerPerformance; {produced['mb_s']:.1f} MB/s, avg {produced['avg_ms']:.0f} ms, "
            f"p99 {produced['p99_ms']:.0f} ms",
        ),
        Result(
            "raw_kafka_consume_msgs_s",
            consumed["msgs_s"],
            "msg/s",
            "",
            f"ConsumerPerformance fetch.nMsg.sec; {consumed['with_rebalance_msgs_s']:,.0f} msg/s "
            f"counting the {consumed['rebalance_ms']:.0f} ms group join",
        ),
    ]
