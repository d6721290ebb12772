"""Test helpers: paths to ../shared and builders of article events (import as `helpers`)."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from kafka import TopicPartition

from infra.kafka import clients
from schemas.settings import KafkaConnection

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
    codes = "".join(f"\n        <geocode><valueName>VN-DVHC</valueName><value>{int(w.code):05d}</value></geocode>"
                    for w in Ward.iter_all())
    area = f"<area>\n        <areaDesc>Toàn quốc: mọi xã, phường, đặc khu</areaDesc>{codes}\n      </area>"
    info = info[:area_start] + area + info[area_end:]
    return (text[:start] + "\n  ".join([info] * infos) + text[end:]).encode("utf-8")
