"""CAP signatures on the real broker, at every door: POST /cap (the endpoint's app with a trust store)
refuses a tampered alert and an unsigned one from a sender that must sign with 400 and the reason,
and nothing reaches alerts.cap; a correctly signed alert is accepted (202) and is on alerts.cap byte
for byte. ``lantoa validate`` and ``lantoa alert`` (LANTOA_CAP_TRUST_FILE) refuse the same alerts
with exit 1 and the reason, and send the signed one."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from cap_signing import Signer, make_signer, sign, write_trust
from helpers import TYPHOON_ALERT, memory_door

from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from producers.cap_http import make_app
from producers.cap_ingest import AlertProducer
from producers.cli.main import main
from schemas.cap_signature import TrustPolicy
from schemas.settings import Settings
from schemas.topics import Topic

SENDER = "canhbao@nchmf.example.vn"
ORIGINAL_ID = b"VN-NCHMF-2026-0917-BAO05-01"


@pytest.fixture(scope="module")
def broker_env(kafka_bootstrap: str) -> dict[str, str]:
    env = {"LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap, "LANTOA_TOPIC_PREFIX": f"t{uuid.uuid4().hex[:8]}."}
    apply_topics(Settings.from_env(env))
    return env


@pytest.fixture(scope="module")
def settings(broker_env: dict[str, str]) -> Settings:
    return Settings.from_env(broker_env)


@pytest.fixture(scope="module")
def office() -> Signer:
    return make_signer("canhbao.nchmf.example.vn")


@pytest.fixture(scope="module")
def trust_file(tmp_path_factory: pytest.TempPathFactory, office: Signer) -> Path:
    folder = tmp_path_factory.mktemp("cap-trust")
    return write_trust(folder, [{"sender": SENDER, "certs": [office], "signatures": "required"}])


@pytest.fixture(scope="module")
def alerts(settings: Settings) -> Iterator[TopicTail]:
    tail = TopicTail(settings.kafka, settings.topic(Topic.ALERTS_CAP))
    try:
        yield tail
    finally:
        tail.close()


@pytest.fixture
async def client(settings: Settings, trust_file: Path) -> AsyncIterator[TestClient[Any, Any]]:
    producer = AlertProducer(settings)
    app = make_app(memory_door(producer, trust=TrustPolicy.load(trust_file)), insecure=True)
    try:
        async with TestClient(TestServer(app)) as c:
            yield c
    finally:
        producer.close()


def alert(identifier: str) -> bytes:
    raw = TYPHOON_ALERT.read_bytes()
    assert raw.count(ORIGINAL_ID) == 1
    return raw.replace(ORIGINAL_ID, identifier.encode())


def ident() -> str:
    return f"VN-TEST-{uuid.uuid4().hex[:12]}"


def tampered(signed: bytes) -> bytes:
    changed = signed.replace("Bão số 5".encode(), "Bão số 6".encode(), 1)
    assert changed != signed
    return changed


def on_topic(alerts: TopicTail, identifier: str) -> list[Any]:
    alerts.poll()
    return [r for r in alerts.records if r.key == identifier.encode()]


async def post(client: TestClient[Any, Any], body: bytes) -> tuple[int, dict[str, Any]]:
    response = await client.post("/cap", data=body, headers={"Content-Type": "application/cap+xml"})
    return response.status, await response.json()


async def test_post_cap_refuses_tampered_and_unsigned_and_accepts_signed(
    client: TestClient[Any, Any], alerts: TopicTail, office: Signer
) -> None:
    bad_id, unsigned_id, good_id = ident(), ident(), ident()

    status, reply = await post(client, tampered(sign(alert(bad_id), office)))
    assert status == 400 and reply["accepted"] is False
    assert reply["reason"] == (
        f"XML signature does not verify: the alert was changed after sender {SENDER!r} signed it"
    )

    status, reply = await post(client, alert(unsigned_id))
    assert status == 400 and reply["reason"].startswith(f"unsigned CAP alert: sender {SENDER!r} must sign")

    stranger = make_signer("someone.else.example")
    status, reply = await post(client, sign(alert(ident()), stranger))
    assert status == 400 and reply["reason"].startswith("untrusted signer")

    signed = sign(alert(good_id), office)
    status, reply = await post(client, signed)
    assert status == 202 and reply["identifier"] == good_id, reply
    alerts.wait_for(lambda _: bool(on_topic(alerts, good_id)), timeout=60, what=good_id)
    assert on_topic(alerts, good_id)[0].value == signed
    # the refused ones were never produced (the accepted one, sent after them, is already here)
    assert on_topic(alerts, bad_id) == [] and on_topic(alerts, unsigned_id) == []


def test_the_cli_doors_refuse_what_the_trust_store_refuses(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broker_env: dict[str, str],
    trust_file: Path,
    alerts: TopicTail,
    office: Signer,
) -> None:
    for name, value in {**broker_env, "LANTOA_CAP_TRUST_FILE": str(trust_file)}.items():
        monkeypatch.setenv(name, value)
    bad_id, unsigned_id, good_id = ident(), ident(), ident()
    bad = tmp_path / "tampered.cap"
    bad.write_bytes(tampered(sign(alert(bad_id), office)))
    unsigned = tmp_path / "unsigned.cap"
    unsigned.write_bytes(alert(unsigned_id))
    good = tmp_path / "signed.cap"
    good.write_bytes(sign(alert(good_id), office))

    assert main(["validate", str(bad), str(unsigned), str(good)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"{bad}: XML signature does not verify: the alert was changed after sender {SENDER!r} signed it",
        f"{unsigned}: unsigned CAP alert: sender {SENDER!r} must sign its alerts (trust store)",
    ]
    assert main(["validate", str(good)]) == 0

    for path in (bad, unsigned):
        assert main(["alert", str(path)]) == 1
        assert capsys.readouterr().err.startswith(f"{path}: ")
    assert main(["alert", str(good)]) == 0
    assert good_id in capsys.readouterr().out
    alerts.wait_for(lambda _: bool(on_topic(alerts, good_id)), timeout=60, what=good_id)
    assert on_topic(alerts, good_id)[0].value == good.read_bytes()
    assert on_topic(alerts, bad_id) == [] and on_topic(alerts, unsigned_id) == []


def test_a_broken_trust_store_stops_the_cli(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    broker_env: dict[str, str],
) -> None:
    for name, value in broker_env.items():
        monkeypatch.setenv(name, value)
    broken = tmp_path / "trust.toml"
    broken.write_text('default = "sometimes"\n')
    monkeypatch.setenv("LANTOA_CAP_TRUST_FILE", str(broken))
    path = tmp_path / "a.cap"
    path.write_bytes(alert(ident()))
    assert main(["alert", str(path)]) == 78
    assert main(["validate", str(path)]) == 78
    err = capsys.readouterr().err
    assert 'default must be "required" or "optional"' in err and str(broken) in err
