"""Test helpers: paths to ../shared and builders of article events (import as `helpers`)."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from kafka import TopicPartition

from consumers.loudspeaker.emergency import EmergencyPlan
from infra.kafka import clients
from infra.local.s3.versitygw import S3Server, VersitygwError, build_versitygw
from producers.approvals import AlertDoor
from producers.targets import local_registry
from schemas.settings import KafkaConnection, Settings
from schemas.topics import Topic
from streams.alerts.lane import plan_records

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("LANTOA_SHARED_DIR", ROOT.parent / "shared")).resolve()
SAMPLES = SHARED / "samples" / "articles"


def sample_paths() -> list[Path]:
    paths = sorted(SAMPLES.glob("*.json"))
    assert len(paths) == 5, f"expected the five sample articles in {SAMPLES}"
    return paths


def ce_headers(ce_type: str = "article.published", version: str = "3.1", **extra: str) -> dict[str, str]:
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": "urn:lantoa:test",
        "ce_type": ce_type,
        "ce_time": "2026-11-26T08:00:00+07:00",
        "ce_dataschema": f"http://www.iptc.org/std/ninjs/ninjs-schema_{version}.json",
        "content-type": "application/json",
    }
    headers.update(extra)
    return headers


def article_doc(uri: str, version: int = 1, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "uri": uri,
        "type": "text",
        "version": str(version),
        "versionCreated": "2026-11-26T08:00:00+07:00",
        "pubStatus": "usable",
        "language": "vi",
        "headlines": [{"role": "main", "value": f"Tin thử nghiệm {uri} bản {version}"}],
        "descriptions": [{"role": "summary", "contentType": "text/plain", "value": "Tóm tắt."}],
        "bodies": [{"role": "main", "contentType": "text/plain", "value": "Nội dung."}],
    }
    doc.update(fields)
    return doc


def encode_doc(doc: dict[str, Any]) -> bytes:
    return orjson.dumps(doc)


def uncommitted(bootstrap: str, groups: dict[str, str]) -> dict[str, int]:
    """Records not committed yet by each topic's consumer group (0: nothing stuck), after up to 30 s."""
    out: dict[str, int] = {}
    deadline = time.monotonic() + 30
    for topic, group in groups.items():
        consumer = clients.consumer(KafkaConnection(bootstrap), group_id=group, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            while True:
                end = consumer.end_offsets(tps)
                out[topic] = sum(end[tp] - (consumer.committed(tp) or 0) for tp in tps)
                if out[topic] == 0 or time.monotonic() > deadline:
                    break
                time.sleep(1.0)
        finally:
            consumer.close()
    return out


TYPHOON_ALERT = SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap"


def every_ward_alert(identifier: str = "VN-NCHMF-2026-0917-BAO05-01", infos: int = 1) -> bytes:
    """The sample typhoon alert naming every ward of the country by its VN-DVHC geocode (~250 kB per
    info block): the largest real alert we expect, a national one. ``infos`` repeats the info block
    (still valid CAP) to build bigger, slower-to-parse alerts near MAX_CAP_BYTES."""
    from vietnam_provinces import Ward

    text = TYPHOON_ALERT.read_text(encoding="utf-8").replace("VN-NCHMF-2026-0917-BAO05-01", identifier)
    start, end = text.index("<info>"), text.index("</info>") + len("</info>")
    info = text[start:end]
    area_start, area_end = info.index("<area>"), info.index("</area>") + len("</area>")
    codes = "".join(
        f"\n        <geocode><valueName>VN-DVHC</valueName><value>{int(w.code):05d}</value></geocode>"
        for w in Ward.iter_all()
    )
    area = f"<area>\n        <areaDesc>Toàn quốc: mọi xã, phường, đặc khu</areaDesc>{codes}\n      </area>"
    info = info[:area_start] + area + info[area_end:]
    return (text[:start] + "\n  ".join([info] * infos) + text[end:]).encode("utf-8")


class AlertServer:
    """``lantoa alert-server`` as a process, on a topic prefix of its own, with an HTTP/1.1 client
    that sends exactly the bytes asked for (a Content-Length body or chunks of chosen sizes). It
    authenticates senders like a real one: one token file (0600), sent as a bearer token."""

    def __init__(self, bootstrap: str, workdir: Path) -> None:
        from infra.kafka.topics import apply_topics
        from schemas.settings import Settings

        prefix = f"t{uuid.uuid4().hex[:8]}."
        self.env = {**os.environ, "LANTOA_KAFKA_BOOTSTRAP": bootstrap, "LANTOA_TOPIC_PREFIX": prefix}
        self.settings = Settings.from_env(self.env)
        apply_topics(self.settings)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = int(s.getsockname()[1])
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        token_file = workdir / "cap.token"
        token_file.write_text(self.token + "\n")
        token_file.chmod(0o600)
        self.log_path = workdir / "alert-server.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "producers.cli", "alert-server", "--port", str(self.port)),
                *("--token-file", str(token_file)),
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, f"alert-server exited {self.proc.returncode}: {self.log_tail()}"
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            assert time.monotonic() < deadline, "alert-server is not listening"
            time.sleep(0.3)

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except Exception:
            self.proc.kill()
        self._log.close()

    def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        chunks: list[int] | None = None,
        timeout: float = 120,
        token: str | None = "",
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON reply). ``chunks``: Transfer-Encoding chunked, the body cut in these sizes
        (cycled), each chunk its own write; a refusal before the end is read all the same.
        ``token``: "" the server's own, None none, else that one."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/cap+xml\r\nConnection: close\r\n"
        if token is not None:  # "" (default): the server's own token; None: no credentials
            head += f"Authorization: Bearer {token or self.token}\r\n"
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            try:
                if chunks is None:
                    s.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
                else:
                    s.sendall(f"{head}Transfer-Encoding: chunked\r\n\r\n".encode())
                    i = n = 0
                    while i < len(body):
                        part = body[i : i + chunks[n % len(chunks)]]
                        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
                        i, n = i + len(part), n + 1
                    s.sendall(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server answered (413) and closed before the end of the body
            reply = b""
            try:
                while chunk := s.recv(65536):
                    reply += chunk
            except ConnectionResetError:
                pass  # closed after its answer while our unread bytes were in flight
        status_line, _, rest = reply.partition(b"\r\n\r\n")
        status = int(status_line.split()[1])
        if b"transfer-encoding: chunked" in status_line.lower():
            size, _, rest = rest.partition(b"\r\n")
            rest = rest[: int(size, 16)]
        return status, orjson.loads(rest)


def with_payloads(settings: Any, cmds: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Commands as read off their topic, each ``payload_ref`` replaced by the stored payload
    (infra/kafka/payloads.py): what an adapter sees. Each record's length and hash are checked;
    one read per stored payload."""
    stored: dict[str, Any] = {}
    out: list[dict[str, Any]] = []
    consumer = None
    try:
        for cmd in cmds:
            ref = cmd.get("payload_ref")
            if ref is None:
                out.append(cmd)
                continue
            if ref["sha256"] not in stored:
                if consumer is None:
                    consumer = clients.consumer(
                        settings.kafka, enable_auto_commit=False, consumer_timeout_ms=10000
                    )
                tp = TopicPartition(settings.topic(Topic.PAYLOADS), ref["partition"])
                consumer.assign([tp])
                consumer.seek(tp, ref["offset"])
                rec = next(iter(consumer))
                assert rec.offset == ref["offset"] and len(rec.value) == ref["bytes"]
                assert hashlib.sha256(rec.value).hexdigest() == ref["sha256"]
                stored[ref["sha256"]] = orjson.loads(rec.value)
            resolved = {k: v for k, v in cmd.items() if k != "payload_ref"}
            resolved["payload"] = stored[ref["sha256"]]
            out.append(resolved)
    finally:
        if consumer is not None:
            consumer.close()
    return out


def emergency_plan(alert: Any, plan: Any, *, repeat_interval_s: float, now: Any) -> EmergencyPlan:
    """The EmergencyPlan the pusher airs for a parsed CAP alert: the alert lane's record
    (streams/alerts/lane.py) read back as the pusher reads it."""
    records, _, _ = plan_records(alert, plan, Settings(emergency_repeat_s=repeat_interval_s), now, None, None)
    [record] = records
    return EmergencyPlan.from_record(orjson.loads(record.value))


class MemoryStore:
    """alerts.pending in memory (producers/approvals.py's Store), for tests without a broker."""

    def __init__(self) -> None:
        self.entries: dict[str, Any] = {}
        self.writes: list[Any] = []

    def write(self, pending: Any) -> None:
        self.entries[pending.identifier] = pending
        self.writes.append(pending)

    def read(self) -> dict[str, Any]:
        return dict(self.entries)


class MemoryAudit:
    """audit.actions in memory: the AuditRecords written, in order."""

    def __init__(self) -> None:
        self.records: list[Any] = []

    def write(self, record: Any) -> None:
        self.records.append(record)

    def close(self) -> None:
        pass


def memory_door(producer: Any, settings: Any = None, trust: Any = None, clock: Any = None) -> Any:
    """An AlertDoor over ``producer`` (a fake with ``send(checked, source, *, actor, approver)``)
    with the pending store and the audit trail in memory; the targets registry of ``settings``.
    Without ``settings`` the two-person rule is off (tests of other things send big alerts)."""
    settings = settings or Settings(approval_max_zones=10**6, approval_whole_province=False)
    kwargs = {"clock": clock} if clock is not None else {}
    return AlertDoor(
        settings, local_registry(settings), producer, MemoryStore(), MemoryAudit(), trust, **kwargs
    )


def in_force(raw: bytes) -> bytes:
    """A sample alert (issued 2026-09-17, expired the next day) moved to today in Vietnam, so that
    it is still in force: an expired alert is, rightly, neither approved nor aired."""
    today = datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
    return raw.replace(b"2026-09-18", (today + timedelta(days=1)).isoformat().encode()).replace(
        b"2026-09-17", today.isoformat().encode()
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, procs: dict[str, Any]) -> Any:
    """``predicate()``'s first true value, polled; fails when a process of ``procs`` (infra/local/
    stack.py Procs) died (with its log's end) or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        for p in procs.values():
            assert p.alive(), f"{p.name} died: {p.log_path.read_text(errors='replace')[-3000:]}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


def lantoa(env: dict[str, str], *args: str, timeout: float = 120) -> Any:
    """``lantoa ARGS`` as a process with ``env``: the CompletedProcess (text), never raising on
    a non-zero exit."""
    return subprocess.run(
        [sys.executable, "-m", "producers.cli", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """A real S3 server (versitygw, built once and cached) for one test module; import it as
    ``from helpers import s3``. A failure to build fails the test, never skips it."""
    try:
        build_versitygw()
    except VersitygwError as exc:
        pytest.fail(f"versitygw could not be built: {exc}")
    with S3Server() as server:
        yield server
