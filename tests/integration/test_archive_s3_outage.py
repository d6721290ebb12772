"""The archive adapter against a real S3 server that goes away: paused, restarting, down at start.

Same setup as test_archive_s3.py (versitygw on loopback, no Kafka); fixtures and helpers come from
archive_s3_support.py. The store is paused and stopped here, so these tests have their own server.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from archive_s3_support import (
    NAMES,
    NO_PRIOR,
    all_versions,
    bucket,
    command,
    config,
    current_keys,
    prefix_of,
    raw,
    s3,
    samples,
    started,
)

from consumers.archive.adapter import ArchiveAdapter
from consumers.delivery.base import Effect
from consumers.delivery.errors import TransientDeliveryError
from infra.local.s3.versitygw import S3Server

# The module fixture may build versitygw from source (~3 min cold on 2 cores) inside the first
# test's setup, which pytest-timeout counts; CI should run `python -m infra.local.s3 build` first.
pytestmark = pytest.mark.timeout(900)


# --------------------------------------------------------------------------------------------
# Store unavailable
# --------------------------------------------------------------------------------------------


async def test_store_unavailable_for_30s_retried_nothing_lost(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(
        s3, bucket, connect_timeout=1.0, read_timeout=2.0, max_attempts=1, retry_after_s=1.0
    )
    commands = [command(doc) for doc in samples()]
    await adapter.deliver(commands[0], NO_PRIOR)

    outage_s = 30.0
    s3.pause()  # SIGSTOP: connections hang, as with an overloaded or partitioned store
    down_at = time.monotonic()
    failures: list[TransientDeliveryError] = []
    delivered: list[Effect] = []
    try:
        # What the runtime does with a transient error: back off by retry_after and try again.
        for cmd in commands[1:]:
            while True:
                if s3.paused and time.monotonic() - down_at >= outage_s:
                    await asyncio.to_thread(s3.resume)
                try:
                    delivered.append(await adapter.deliver(cmd, NO_PRIOR))
                    break
                except TransientDeliveryError as exc:
                    assert s3.paused, f"transient error while the store was up: {exc}"
                    failures.append(exc)
                    await asyncio.sleep(exc.retry_after or 1.0)
    finally:
        if s3.paused:
            s3.resume()
    assert time.monotonic() - down_at >= outage_s
    assert len(failures) >= 5 and all(f.retry_after for f in failures)
    assert [e.outcome for e in delivered] == ["delivered"] * (len(commands) - 1)

    expected = {prefix_of(c.key.uri) + f"v1/{n}" for c in commands for n in NAMES}
    expected |= {prefix_of(c.key.uri) + "manifest.json" for c in commands}
    assert set(current_keys(raw, bucket)) == expected
    versions = all_versions(raw, bucket)
    assert len(versions) == len(expected)  # nothing duplicated: one version per key
    for cmd in commands:
        assert await adapter.reconcile(cmd, NO_PRIOR) is not None

    # The store restarting (connections refused rather than hanging) is transient too.
    s3.pause(mode="stop")
    try:
        with pytest.raises(TransientDeliveryError) as refused:
            await adapter.deliver(commands[0], NO_PRIOR)
        assert refused.value.code == "EndpointConnectionError"
    finally:
        s3.resume()
    assert (await adapter.deliver(commands[0], NO_PRIOR)).outcome == "delivered"
    assert len(all_versions(raw, bucket)) == len(expected)


async def test_start_while_the_store_is_down_waits_instead_of_failing(
    s3: S3Server, raw: Any, bucket: str
) -> None:
    adapter = ArchiveAdapter(
        config(
            s3, bucket, connect_timeout=1.0, max_attempts=1, start_retry_first_s=0.2, start_retry_cap_s=1.0
        )
    )
    s3.pause(mode="stop")  # connections refused, as while the store restarts
    try:
        starting = asyncio.create_task(adapter.start())
        await asyncio.sleep(4.0)
        assert not starting.done(), "start() gave up (or passed) while the store was down"
        assert adapter.start_attempts >= 3
    finally:
        await asyncio.to_thread(s3.resume)
    await asyncio.wait_for(starting, timeout=30.0)
    assert raw.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    assert (await adapter.deliver(command(samples()[0]), NO_PRIOR)).outcome == "delivered"
    await adapter.close()
