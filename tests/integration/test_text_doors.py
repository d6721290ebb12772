"""Text hygiene at the doors, end to end on the real broker with the stream worker in process.

- an article published under its NFC uri and retracted with the NFD form of that uri is retracted:
  through ``lantoa retract`` (the CLI sends NFC) and through an outside producer that keys and
  writes the retraction in NFD (the worker forwards it to the partition of the NFC key and reads
  the uri as NFC);
- bidi and zero-width controls in an article's headline and summary reach no channel command.
"""

from __future__ import annotations

import asyncio
import unicodedata
import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from helpers import article_doc, encode_doc, with_payloads

from infra.kafka.partitioning import partition_for
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from producers.cli.main import main as lantoa
from producers.client import PublishClient, retraction
from producers.targets import load_targets
from schemas.settings import Settings
from schemas.text import INVISIBLE
from schemas.topics import Channel, Topic
from streams.app import StreamWorker

PLACES = [{"name": "Ba Đình", "uri": "urn:lantoa:place:ward:4"}]
SPOOF = "\u202eTin giả\u202c \u2066đảo\u2069 ng\u200bược\ufeff \u200fchiều\u200e \U000e0041"


@pytest.fixture(scope="module")
def env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    prefix = f"t{uuid.uuid4().hex[:8]}."
    return {
        "LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "LANTOA_TOPIC_PREFIX": prefix,
        "LANTOA_APP_ID": f"{prefix}streams",
        "LANTOA_DATA_DIR": str(tmp_path_factory.mktemp("text")),
        "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": "6000",
    }


@pytest.fixture(scope="module")
def settings(env: dict[str, str]) -> Settings:
    s = Settings.from_env(env)
    apply_topics(s)
    load_targets(s)
    return s


def vietnamese_uri(settings: Settings) -> tuple[str, str]:
    """(NFC, NFD) of a fresh uri whose two forms hash to different cms.articles partitions, so an
    NFD retraction left where its own key hashes would find no state there."""
    count = settings.partitions(Topic.CMS_ARTICLES)
    for _ in range(200):
        nfc = f"urn:lantoa:article:tin-hà-nội-lũ-lụt-{uuid.uuid4().hex[:6]}"
        nfd = unicodedata.normalize("NFD", nfc)
        assert nfd != nfc
        if partition_for(nfc.encode(), count) != partition_for(nfd.encode(), count):
            return nfc, nfd
    raise AssertionError("no uri whose NFC and NFD forms part partitions")


def outcomes(tail: TopicTail, uri: str) -> list[str]:
    tail.poll()
    return [orjson.loads(r.value)["outcome"] for r in tail.records if r.key == uri.encode()]


async def run_until(
    settings: Settings, done: Callable[[], bool], timeout: float = 90.0, what: str = ""
) -> None:
    """Run a stream worker until ``done()`` holds; then stop it."""
    stop = asyncio.Event()
    task = asyncio.create_task(StreamWorker(settings).run(stop))
    try:
        deadline = asyncio.get_running_loop().time() + timeout
        while not await asyncio.to_thread(done):
            assert not task.done(), f"the worker stopped: {task.exception() if task.done() else ''}"
            assert asyncio.get_running_loop().time() < deadline, (
                f"timed out waiting for {what or 'the condition'}"
            )
            await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def commands_of(tails: dict[Channel, TopicTail], uri: str) -> list[dict[str, Any]]:
    out = []
    for tail in tails.values():
        tail.poll()
        out += [c for c in (orjson.loads(r.value) for r in tail.records) if c["uri"] == uri]
    return out


@pytest.fixture
def tails(settings: Settings) -> Any:
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    commands = {
        c: TopicTail(settings.kafka, settings.topic(Topic.commands(c)))
        for c in (Channel.FANPAGE, Channel.ZALO, Channel.LOUDSPEAKER)
    }
    yield receipts, commands
    receipts.close()
    for t in commands.values():
        t.close()


def publish(settings: Settings, uri: str, **fields: Any) -> None:
    with PublishClient(settings) as client:
        client.publish(encode_doc(article_doc(uri, 1, places=PLACES, **fields)))


async def test_an_nfd_retraction_from_the_cli_retracts_the_nfc_article(
    settings: Settings,
    env: dict[str, str],
    tails: Any,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receipts, commands = tails
    nfc, nfd = vietnamese_uri(settings)
    publish(settings, nfc)
    await run_until(settings, lambda: "routed" in outcomes(receipts, nfc))
    published = commands_of(commands, nfc)
    assert published and {c["action"] for c in published} == {"publish"}

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert lantoa(["retract", nfd, "--reason", "đính chính"]) == 0

    await run_until(settings, lambda: "retracted" in outcomes(receipts, nfc), what=f"the retraction of {nfc}")
    retracts = with_payloads(settings, [c for c in commands_of(commands, nfc) if c["action"] == "retract"])
    assert {(c["channel"], c["target"]) for c in retracts} == {(c["channel"], c["target"]) for c in published}
    assert "retract_unknown" not in outcomes(receipts, nfc) + outcomes(receipts, nfd)
    assert f"retraction of {nfc} sent" in capsys.readouterr().out  # the CLI says what it sent: the NFC uri


async def test_an_nfd_keyed_retraction_from_an_outside_producer_retracts_the_nfc_article(
    settings: Settings, tails: Any
) -> None:
    receipts, commands = tails
    nfc, nfd = vietnamese_uri(settings)
    publish(settings, nfc)
    await run_until(settings, lambda: "routed" in outcomes(receipts, nfc))

    # What a CMS with its own producer might send: key, body and subject all in NFD.
    _, value, headers = retraction(nfc, reason="gỡ bài")
    value = orjson.dumps({**orjson.loads(value), "uri": nfd})
    with PublishClient(settings) as client:
        client.send_raw(
            nfd.encode(), value, [(k, nfd.encode() if k == "ce_subject" else v) for k, v in headers]
        )

    await run_until(settings, lambda: "retracted" in outcomes(receipts, nfc), what=f"the retraction of {nfc}")
    retracts = [c for c in commands_of(commands, nfc) if c["action"] == "retract"]
    assert retracts and all(c["payload"]["reason"] == "gỡ bài" for c in retracts)
    assert "retract_unknown" not in outcomes(receipts, nfc) + outcomes(receipts, nfd)
    assert "dead_lettered" not in outcomes(receipts, nfc) + outcomes(receipts, nfd)


async def test_bidi_and_zero_width_controls_reach_no_channel(settings: Settings, tails: Any) -> None:
    receipts, commands = tails
    uri = f"urn:lantoa:article:bidi-{uuid.uuid4().hex[:6]}"
    publish(
        settings,
        uri,
        headlines=[{"role": "main", "value": SPOOF}],
        descriptions=[
            {
                "role": "summary",
                "contentType": "text/html",
                "value": "<p>&#x202E;Tóm tắt&#x202C; có&#8203; điều khiển</p>",
            }
        ],
    )
    await run_until(settings, lambda: "routed" in outcomes(receipts, uri))
    sent = with_payloads(settings, commands_of(commands, uri))
    assert {c["channel"] for c in sent} >= {"loudspeaker"}
    for cmd in sent:
        found = INVISIBLE.findall(orjson.dumps(cmd["payload"]).decode())  # orjson writes non-ASCII as it is
        assert not found, (cmd["channel"], found)
        assert "Tin giả đảo ngược chiều" in str(cmd["payload"]), cmd["payload"]
        assert "Tóm tắt có điều khiển" in str(cmd["payload"]), cmd["payload"]
