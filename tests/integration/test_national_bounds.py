"""A national article at the bounds fans out on the real broker, one past them is dead-lettered.

The stream worker runs as a process (conftest ``Pipeline``) with the real targets registry: 3,321
zones, the fanpages, the Zalo groups and the archive. An article with every field at its bound
(uri, headline, summary, body: schemas/article.py) reaches every zone, fanpage and the archive,
while the Zalo groups, whose contract it exceeds, each get a fan-out receipt ``failed`` saying why
(streams/articles/bounds.py). Its bulletin is stored once and referenced by every zone's command; the
worker's peak memory (VmHWM) for it is printed and bounded. One
character past the summary bound, the record is dead-lettered with the reason and the publish
client refuses it before sending.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest
from helpers import article_doc, ce_headers, encode_doc, with_payloads

from producers.targets import local_registry
from schemas.article import BODY_MAX_CHARS, HEADLINE_MAX_CHARS, SUMMARY_MAX_CHARS, URI_MAX_CHARS
from schemas.errors import InvalidContent
from schemas.topics import Channel, Topic
from streams.routing import RouteInput, route

SENTENCE = (
    "Ủy ban nhân dân tỉnh thông báo lịch tiêm chủng mở rộng cho trẻ em dưới năm tuổi tại các trạm y tế xã. "
)
SUBJECT = [{"name": "Chuyển đổi số", "uri": "urn:lantoa:subject:chuyen-doi-so"}]
# What the worker may hold at its peak for the largest accepted national article. Its bulletin is
# stored once (distribution.payloads) and its 3,321 loudspeaker commands reference it: about 7.6 MB
# of commands (each ~2.3 kB: a 512-character uri twice and the 500-character title beside the
# reference), measured 109 MB VmHWM after the warm-up and 125 MB after the article (with the
# bulletin inline: 44.8 MB of commands, 176 MB). The bounds leave room for a slower, busier CI.
PEAK_MB = 250
GROWTH_MB = 60
COMMAND_MB = 10


def text(n: int) -> str:
    return (SENTENCE * (n // len(SENTENCE) + 1))[:n]


def national(uri: str, summary: int = SUMMARY_MAX_CHARS) -> dict[str, Any]:
    return article_doc(
        uri,
        headlines=[{"role": "main", "value": text(HEADLINE_MAX_CHARS)}],
        descriptions=[{"role": "summary", "contentType": "text/plain", "value": text(summary)}],
        bodies=[{"role": "main", "contentType": "text/plain", "value": text(BODY_MAX_CHARS)}],
        subjects=SUBJECT,
    )


def vm_kb(pid: int, key: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise LookupError(key)


def of(records: list[Any], uri: str) -> list[dict[str, Any]]:
    key = uri.encode()
    return [orjson.loads(r.value) for r in records if r.key == key]


@pytest.mark.timeout(300)
def test_a_national_article_at_the_bounds_fans_out_and_one_past_them_is_dead_lettered(pipeline: Any) -> None:
    expected = {
        c: len(ts)
        for c, ts in route(
            RouteInput((), ("urn:lantoa:subject:chuyen-doi-so",)), local_registry(pipeline.settings)
        ).items()
    }
    assert expected[Channel.LOUDSPEAKER] == 3321 and expected[Channel.ZALO] > 0
    receipts = pipeline.reader(Topic.RECEIPTS)
    loudspeaker = pipeline.reader(Topic.LOUDSPEAKER_COMMANDS)

    # Warm-up: a small national article, so the figure below is the large article's, not the start's.
    warm = f"urn:lantoa:article:warm-{uuid.uuid4().hex[:8]}"
    pipeline.client.publish(encode_doc(national(warm, summary=200)))
    receipts.wait_for(
        lambda recs: any(r["outcome"] == "routed" for r in of(recs, warm)), 120, "the warm-up fan-out"
    )
    loudspeaker.wait_for(
        lambda recs: sum(1 for r in recs if orjson.loads(r.value)["uri"] == warm) == 3321,
        120,
        "the warm-up's zones",
    )
    rest_mb = vm_kb(pipeline.proc.pid, "VmHWM") / 1024

    uri = ("urn:lantoa:article:national-" + uuid.uuid4().hex + "-" + "x" * URI_MAX_CHARS)[:URI_MAX_CHARS]
    raw = encode_doc(national(uri))
    sent = pipeline.client.publish(raw)
    assert sent.uri == uri
    receipts.wait_for(
        lambda recs: any(r["outcome"] == "routed" for r in of(recs, uri)), 120, "the national fan-out"
    )
    zone_commands = loudspeaker.wait_for(
        lambda recs: sum(1 for r in recs if orjson.loads(r.value)["uri"] == uri) == 3321,
        120,
        "every zone's command",
    )
    peak_mb = vm_kb(pipeline.proc.pid, "VmHWM") / 1024
    ours = [r for r in zone_commands if orjson.loads(r.value)["uri"] == uri]
    command_mb = sum(len(r.value) for r in ours) / 1e6
    docs = [orjson.loads(r.value) for r in ours]
    refs = {orjson.dumps(d.get("payload_ref")) for d in docs}
    print(
        f"national article at the bounds: record {len(raw):,} bytes, {len(ours)} loudspeaker commands "
        f"{command_mb:.1f} MB (largest {max(len(r.value) for r in ours):,} bytes, {len(refs)} stored payload); "
        f"worker VmHWM {rest_mb:.0f} MB after the warm-up, {peak_mb:.0f} MB after the article"
    )
    # The bulletin is stored once (distribution.payloads) and every zone's command references it.
    assert len(refs) == 1 and all("payload" not in d and d["payload_ref"] for d in docs)
    [resolved] = with_payloads(pipeline.settings, docs[:1])
    assert "Ủy ban nhân dân tỉnh thông báo" in str(resolved["payload"])
    assert resolved["payload"]["title"] == docs[0]["payload_ref"]["title"]
    assert command_mb < COMMAND_MB
    assert peak_mb < PEAK_MB, f"the worker peaked at {peak_mb:.0f} MB"
    assert peak_mb - rest_mb < GROWTH_MB, (
        f"the article took the worker from {rest_mb:.0f} to {peak_mb:.0f} MB"
    )

    mine = of(receipts.settle(1.0), uri)
    [routed] = [r for r in mine if r["outcome"] == "routed"]
    assert routed["counts"] == {c.value: n for c, n in expected.items()}
    refused = [r for r in mine if r["stage"] == "fanout" and r["outcome"] == "failed"]
    assert {r["channel"] for r in refused} == {"zalo"} and len(refused) == expected[Channel.ZALO]
    assert all("zalo text of" in r["reason"] and r["target"] for r in refused)
    fanpage = pipeline.reader(Topic.FANPAGE_COMMANDS).wait_for(
        lambda recs: sum(1 for r in recs if orjson.loads(r.value)["uri"] == uri) == expected[Channel.FANPAGE],
        60,
        "the fanpages' commands",
    )
    assert fanpage

    # One character past the summary bound: the client refuses it, and sent anyway it is dead-lettered.
    over = f"urn:lantoa:article:over-{uuid.uuid4().hex[:8]}"
    doc = national(over, summary=SUMMARY_MAX_CHARS + 1)
    with pytest.raises(InvalidContent, match="summary of 8,001 characters exceeds the 8,000-character limit"):
        pipeline.client.publish(encode_doc(doc))
    pipeline.client.send_raw(
        over.encode(), encode_doc(doc), [(k, v.encode()) for k, v in ce_headers().items()]
    )
    dead = pipeline.reader(Topic.DEADLETTER).wait_for(
        lambda recs: any(r.key == over.encode() for r in recs), 60, "the dead letter"
    )
    [letter] = [r for r in dead if r.key == over.encode()]
    headers = {k: v.decode() for k, v in letter.headers}
    assert headers["dlq_reason"] == "summary of 8,001 characters exceeds the 8,000-character limit"
    receipts.wait_for(
        lambda recs: any(r["outcome"] == "dead_lettered" for r in of(recs, over)), 60, "its receipt"
    )
    assert not [r for r in loudspeaker.poll() if orjson.loads(r.value)["uri"] == over]
    assert pipeline.alive(), pipeline.log_tail()
