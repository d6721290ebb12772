"""article_fanout_s: one national article to every target, event produced → last command produced.

Times come from Kafka record timestamps (CreateTime, set by each producer on this machine): the
CMS event's and the latest of its commands'. A warm-up article goes first so the figure is the
steady state, not the worker's start.
"""

from __future__ import annotations

import time
import uuid

import orjson

from bench.common import Result, Worker, percentile
from infra.kafka import clients
from schemas.settings import KafkaConnection

RUNS = 5


def national_article(uri: str) -> bytes:
    return orjson.dumps(
        {
            "uri": uri,
            "type": "text",
            "version": "1",
            "pubStatus": "usable",
            "language": "vi",
            "versionCreated": "2026-11-26T08:00:00+07:00",
            "headlines": [{"role": "main", "value": "Thông báo toàn quốc về chuyển đổi số"}],
            "descriptions": [
                {"role": "summary", "contentType": "text/plain", "value": "Nội dung tóm tắt " * 20}
            ],
            "bodies": [{"role": "main", "contentType": "text/plain", "value": "Nội dung chính. " * 200}],
            "subjects": [{"name": "Chuyển đổi số", "uri": "urn:lantoa:subject:chuyen-doi-so"}],
        }
    )


def run(bootstrap: str) -> list[Result]:
    from infra.kafka.tail import TopicTail
    from producers.client import PublishClient
    from producers.targets import local_registry
    from schemas.topics import Channel, Topic
    from streams.routing import RouteInput, route

    worker = Worker(bootstrap)
    try:
        plan = route(RouteInput((), ("urn:lantoa:subject:chuyen-doi-so",)), local_registry(worker.settings))
        per_article = sum(len(v) for v in plan.values())
        tails = {
            c: TopicTail(worker.settings.kafka, worker.settings.topic(Topic.commands(c))) for c in Channel
        }
        durations: list[float] = []
        with PublishClient(worker.settings) as client:
            for i in range(RUNS + 1):
                uri = f"urn:lantoa:bench:fanout-{uuid.uuid4().hex[:8]}"
                sent = client.publish(national_article(uri))
                meta_ts = _event_timestamp(
                    bootstrap, worker.settings.topic(Topic.CMS_ARTICLES), sent.partition, sent.offset
                )
                deadline = time.monotonic() + 120
                last_ts, count = 0, 0
                while count < per_article:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {count}/{per_article} commands after 120s")
                    for tail in tails.values():
                        for rec in tail.poll():
                            if orjson.loads(rec.value)["uri"] == uri:
                                count += 1
                                last_ts = max(last_ts, rec.timestamp)
                    time.sleep(0.01)
                if i > 0:  # the first article warms the worker up
                    durations.append((last_ts - meta_ts) / 1000.0)
        for tail in tails.values():
            tail.close()
    finally:
        worker.close()
    note = f"{per_article} commands per article, {RUNS} runs after a warm-up; max {max(durations):.3f}s"
    return [
        Result("article_fanout_s", percentile(durations, 50), "s", "<= 1.0", note),
        Result("article_fanout_commands", float(per_article), "commands", "", "one national article"),
    ]


def _event_timestamp(bootstrap: str, topic: str, partition: int, offset: int) -> int:
    from kafka import TopicPartition

    consumer = clients.consumer(KafkaConnection(bootstrap), group_id=None, enable_auto_commit=False)
    tp = TopicPartition(topic, partition)
    consumer.assign([tp])
    consumer.seek(tp, offset)
    try:
        for _ in range(50):
            for recs in consumer.poll(timeout_ms=200).values():
                for rec in recs:
                    if rec.offset == offset:
                        return int(rec.timestamp)
        raise LookupError(f"event {topic}[{partition}]@{offset} not found")
    finally:
        consumer.close()
