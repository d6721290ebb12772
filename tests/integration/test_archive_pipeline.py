"""The archive adapter behind the delivery runtime, on the real broker and a real S3 server.

S3 becomes unavailable for 30 s while commands arrive: they are retried, nothing is lost, and
no object gets an extra version.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import Counter
from typing import Any

import boto3
import orjson
import pytest
from helpers import s3, sample_paths

from consumers.archive.adapter import ArchiveAdapter, article_prefix
from consumers.archive.config import ArchiveConfig, S3Credentials
from consumers.delivery.retry import RetryPolicy
from consumers.delivery.runtime import DeliveryRuntime, RuntimeConfig
from infra.kafka import clients
from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from infra.local.s3.versitygw import S3Server
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import KafkaConnection, Settings
from schemas.topics import Channel, Topic

pytestmark = pytest.mark.timeout(900)
FAST = RuntimeConfig(
    policy=RetryPolicy(
        in_process=2, base_s=0.05, cap_s=0.2, max_attempts=30, tiers=(("10s", 1.0), ("1m", 2.0), ("10m", 4.0))
    )
)


def archive_command(path: Any, action: Action = Action.PUBLISH) -> Command:
    doc = orjson.loads(path.read_bytes())
    payload = {
        "document": doc,
        "public_url": f"https://tin.example.vn/a/{doc['uri'].rsplit(':', 1)[1]}",
        "ninjs_version": "3.1",
    }
    if action is Action.RETRACT:
        payload = {"reason": "đính chính"}
    return Command(
        IdempotencyKey(doc["uri"], 1, Channel.ARCHIVE, "archive:main", action),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        payload,
        published_at="2026-11-26T01:00:00Z",
    )


async def test_s3_down_for_30s_loses_nothing_and_adds_no_versions(kafka_bootstrap: str, s3: S3Server) -> None:
    settings = Settings.from_env(
        {"LANTOA_KAFKA_BOOTSTRAP": kafka_bootstrap, "LANTOA_TOPIC_PREFIX": f"ar{uuid.uuid4().hex[:6]}."}
    )
    apply_topics(settings)
    bucket = f"lt-{uuid.uuid4().hex[:12]}"
    config = ArchiveConfig(
        bucket=bucket,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        credentials=S3Credentials(s3.access_key, s3.secret_key),
        addressing_style="path",
        connect_timeout=1.0,
        read_timeout=3.0,
        max_attempts=1,
        retry_after_s=1.0,
    )
    runtime = DeliveryRuntime(settings, ArchiveAdapter(config), FAST)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    receipts = TopicTail(settings.kafka, settings.topic(Topic.RECEIPTS))
    try:
        await asyncio.sleep(3)  # the adapter created the bucket and turned versioning on
        s3.pause(mode="stop")
        down_at = time.monotonic()
        threading.Timer(30.0, s3.resume).start()
        producer = clients.producer(KafkaConnection(kafka_bootstrap), acks="all")
        for path in sample_paths():
            cmd = archive_command(path)
            producer.send(
                settings.topic(Topic.ARCHIVE_COMMANDS), key=b"archive:main", value=encode(cmd.to_dict())
            )
        producer.flush()
        # twice: a replay must not add versions
        for path in sample_paths():
            cmd = archive_command(path)
            producer.send(
                settings.topic(Topic.ARCHIVE_COMMANDS), key=b"archive:main", value=encode(cmd.to_dict())
            )
        producer.flush()
        producer.close()
        deadline = time.monotonic() + 180
        while True:
            await asyncio.to_thread(receipts.poll)
            outcomes = Counter(orjson.loads(r.value)["outcome"] for r in receipts.records)
            if outcomes["delivered"] >= 10:
                break
            assert not task.done(), task.exception()
            assert time.monotonic() < deadline, f"not delivered after S3 came back: {outcomes}"
            await asyncio.sleep(0.5)
        assert time.monotonic() - down_at >= 30  # nothing could have been written while it was down
        assert outcomes["retrying"] >= 1 and outcomes["failed"] == 0
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)
    client = boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=s3.access_key,
        aws_secret_access_key=s3.secret_key,
    )
    versions = client.list_object_versions(Bucket=bucket).get("Versions", [])
    per_key = Counter(v["Key"] for v in versions)
    for path in sample_paths():
        prefix = article_prefix("", orjson.loads(path.read_bytes())["uri"])
        keys = {k: n for k, n in per_key.items() if k.startswith(prefix)}
        assert f"{prefix}v1/document.json" in keys and f"{prefix}manifest.json" in keys
        assert set(keys.values()) == {1}, keys  # every object written once: no extra versions
