"""The archive adapter without a server: the QR renderer, the S3 request pattern of a publish
(against an in-memory store that honours If-None-Match / If-Match like S3), and start() while the
store is unreachable. The real-server behaviour is in tests/integration/test_archive_s3.py."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import logging
import uuid
from collections import Counter
from typing import Any

import pytest
import segno
from botocore.exceptions import ClientError, EndpointConnectionError

from consumers.archive.adapter import ArchiveAdapter, article_prefix, start_delay
from consumers.archive.config import ArchiveConfig, S3Credentials
from consumers.archive.render import qr_png, render_qr
from consumers.delivery.base import Prior
from consumers.delivery.errors import TargetPaused, TransientDeliveryError
from schemas import metrics
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel

URL = "https://tin.lantoa.example.vn/a/"


# --------------------------------------------------------------------------------------------
# QR code
# --------------------------------------------------------------------------------------------


def segno_png(url: str, scale: int = 8, border: int = 4) -> bytes:
    buf = io.BytesIO()
    segno.make(url, error="m", boost_error=False, micro=False).save(
        buf, kind="png", scale=scale, border=border
    )
    return buf.getvalue()


@pytest.mark.parametrize("length", [1, 20, 77, 150, 400, 1200])
def test_qr_png_is_byte_for_byte_segnos(length: int) -> None:
    url = URL + ("x" * length)[:length] + uuid.uuid4().hex
    assert render_qr(url) == segno_png(url)


@pytest.mark.parametrize(("scale", "border"), [(1, 0), (3, 2), (5, 1), (7, 3)])
def test_qr_png_other_geometries(scale: int, border: int) -> None:
    # Widths that are not a multiple of 8 pixels exercise the padding of each scanline.
    url = URL + uuid.uuid4().hex
    qr = segno.make(url, error="m", boost_error=False, micro=False)
    assert qr_png(qr.matrix, scale=scale, border=border) == segno_png(url, scale, border)


def test_qr_is_rendered_once_per_url() -> None:
    url = URL + uuid.uuid4().hex
    before = render_qr.cache_info()
    first = render_qr(url)
    assert render_qr(url) is first
    after = render_qr.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 1)
    assert after.maxsize is not None and after.maxsize <= 4096  # bounded
    assert render_qr(url + "2") != first


# --------------------------------------------------------------------------------------------
# An in-memory S3 bucket with versions and conditional writes
# --------------------------------------------------------------------------------------------


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": code},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        },
        "op",
    )


class Body:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def read(self) -> bytes:
        return self.data


class FakeS3:
    """Enough of boto3's S3 client for the adapter. ``honours_conditions=False`` plays a store
    that silently ignores If-None-Match / If-Match."""

    def __init__(self, honours_conditions: bool = True) -> None:
        self.honours = honours_conditions
        self.objects: dict[str, list[dict[str, Any]]] = {}  # key -> versions, latest last
        self.calls: Counter[str] = Counter()
        self.ids = itertools.count(1)
        self.down = 0  # fail that many calls with a connection error

    def _call(self, name: str) -> None:
        self.calls[name] += 1
        if self.down:
            self.down -= 1
            raise EndpointConnectionError(endpoint_url="http://127.0.0.1:1")

    def get_bucket_versioning(self, **_: Any) -> dict[str, Any]:
        self._call("get_bucket_versioning")
        return {"Status": "Enabled"}

    def head_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        self._call("head_object")
        if Key not in self.objects:
            raise client_error("404", 404)
        v = self.objects[Key][-1]
        return {
            "ETag": v["etag"],
            "Metadata": v["meta"],
            "VersionId": v["id"],
            "ContentLength": len(v["body"]),
            "ChecksumSHA256": v["checksum"],
        }

    def get_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        self._call("get_object")
        if Key not in self.objects:
            raise client_error("NoSuchKey", 404)
        v = self.objects[Key][-1]
        return {"Body": Body(v["body"]), "ETag": v["etag"]}

    def put_object(
        self,
        *,
        Key: str,
        Body: bytes,
        ChecksumSHA256: str,
        Metadata: dict[str, str],
        IfNoneMatch: str | None = None,
        IfMatch: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        self._call("put_object")
        current = self.objects.get(Key, [])
        if self.honours and IfNoneMatch == "*" and current:
            raise client_error("PreconditionFailed", 412)
        if self.honours and IfMatch is not None and (not current or current[-1]["etag"] != IfMatch):
            raise client_error("PreconditionFailed", 412)
        assert ChecksumSHA256 == base64.b64encode(hashlib.sha256(Body).digest()).decode()
        version = {
            "body": Body,
            "etag": f'"{hashlib.md5(Body).hexdigest()}"',
            "meta": dict(Metadata),
            "id": f"v{next(self.ids)}",
            "checksum": ChecksumSHA256,
        }
        self.objects.setdefault(Key, []).append(version)
        return {"ETag": version["etag"], "VersionId": version["id"], "ChecksumSHA256": ChecksumSHA256}

    def get_paginator(self, name: str) -> Any:
        fake = self

        class Pages:
            def paginate(self, *, Prefix: str, **_: Any) -> list[dict[str, Any]]:
                fake._call(name)
                return [{"Contents": [{"Key": k} for k in sorted(fake.objects) if k.startswith(Prefix)]}]

        return Pages()

    def close(self) -> None:
        pass

    def versions(self) -> list[tuple[str, str]]:
        return sorted((k, v["id"]) for k, vs in self.objects.items() for v in vs)


def cfg(**overrides: Any) -> ArchiveConfig:
    values: dict[str, Any] = dict(
        bucket="b",
        endpoint_url="http://127.0.0.1:1",
        credentials=S3Credentials("AK", "SK"),
        retry_after_s=1.0,
    )
    values.update(overrides)
    return ArchiveConfig(**values)


def command(
    uri: str, version: int = 1, action: Action = Action.PUBLISH, payload: dict[str, Any] | None = None
) -> Command:
    doc = {
        "uri": uri,
        "version": str(version),
        "type": "text",
        "headlines": [{"role": "main", "value": f"Tiêu đề {version}"}],
        "bodies": [{"role": "main", "contentType": "text/plain", "value": "Đoạn một.\nĐoạn hai."}],
    }
    if payload is None:
        payload = {
            "document": doc,
            "public_url": URL + hashlib.sha256(uri.encode()).hexdigest()[:16],
            "ninjs_version": "3.1",
        }
    return Command(
        key=IdempotencyKey(uri, version, Channel.ARCHIVE, "archive:main", action),
        priority=Priority.NORMAL,
        issued_at="2026-11-26T01:00:01.000Z",
        payload=payload,
        published_at="2026-11-26T08:00:00+07:00",
        event_id=str(uuid.uuid4()),
    )


async def test_new_version_is_written_without_heads_and_a_replay_uploads_nothing() -> None:
    s3 = FakeS3()
    adapter = ArchiveAdapter(cfg(), client=s3)
    await adapter.start()
    s3.calls.clear()
    effect = await adapter.deliver(command("urn:x:1"), Prior())
    assert effect.outcome == "delivered" and effect.detail["manifest_written"]
    # GET manifest (absent), four conditional creates, the manifest create: no HEAD, one GET.
    assert s3.calls == Counter({"put_object": 5, "get_object": 1})
    versions = s3.versions()

    s3.calls.clear()
    again = await adapter.deliver(command("urn:x:1"), Prior())
    assert (
        not any(o["written"] for o in again.detail["objects"].values())
        and not again.detail["manifest_written"]
    )
    assert s3.calls == Counter({"get_object": 1, "head_object": 4})  # nothing uploaded
    assert s3.versions() == versions

    s3.calls.clear()
    update = await adapter.deliver(command("urn:x:1", 2, Action.UPDATE), Prior())
    assert update.outcome == "updated"
    assert s3.calls == Counter({"put_object": 5, "get_object": 1})  # the manifest: If-Match on the first read
    assert len(s3.versions()) == len(versions) + 5


async def test_objects_without_a_manifest_record_converge_without_new_versions() -> None:
    # A crash after the objects and before the manifest: the replay's creates are refused,
    # the refusal's HEAD shows the same checksum, and only the manifest is written.
    s3 = FakeS3()
    adapter = ArchiveAdapter(cfg(), client=s3)
    await adapter.start()
    await adapter.deliver(command("urn:x:2"), Prior())
    manifest_key = article_prefix("", "urn:x:2") + "manifest.json"
    del s3.objects[manifest_key]
    objects = [v for v in s3.versions() if v[0] != manifest_key]
    effect = await adapter.deliver(command("urn:x:2"), Prior())
    assert effect.detail["manifest_written"] and not any(
        o["written"] for o in effect.detail["objects"].values()
    )
    assert [v for v in s3.versions() if v[0] != manifest_key] == objects


async def test_a_takedown_marker_on_an_unrecorded_object_is_never_overwritten() -> None:
    s3 = FakeS3()
    adapter = ArchiveAdapter(cfg(), client=s3)
    await adapter.start()
    uri = "urn:x:3"
    await adapter.deliver(command(uri, 2, Action.UPDATE), Prior())
    manifest_key = article_prefix("", uri) + "manifest.json"
    del s3.objects[manifest_key]  # version 2's record was lost (crash before the manifest)
    retracted = await adapter.deliver(command(uri, 1, Action.RETRACT, payload={"reason": "sai"}), Prior())
    assert retracted.detail["markers_written"] == 4
    before = s3.versions()
    replay = await adapter.deliver(command(uri, 2, Action.UPDATE), Prior())
    assert replay.outcome == "skipped" and "takedown marker" in replay.detail["reason"]
    assert s3.versions() == before
    assert all(s3.objects[k][-1]["meta"].get("takedown") for k in s3.objects if k != manifest_key)


async def test_a_store_that_ignores_conditions_is_headed_first() -> None:
    s3 = FakeS3(honours_conditions=False)
    adapter = ArchiveAdapter(cfg(conditional_writes=False), client=s3)
    await adapter.start()
    uri = "urn:x:4"
    await adapter.deliver(command(uri, 2, Action.UPDATE), Prior())
    del s3.objects[article_prefix("", uri) + "manifest.json"]
    await adapter.deliver(command(uri, 1, Action.RETRACT, payload={"reason": "sai"}), Prior())
    before = s3.versions()
    s3.calls.clear()
    assert (await adapter.deliver(command(uri, 2, Action.UPDATE), Prior())).outcome == "skipped"
    assert s3.versions() == before and s3.calls["put_object"] == 0

    # Unconditional writes are read back.
    s3.calls.clear()
    await adapter.deliver(command("urn:x:5"), Prior())
    assert s3.calls["head_object"] >= 2 * 4 and s3.calls["put_object"] == 5


# --------------------------------------------------------------------------------------------
# start() while the store is down
# --------------------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.paused_seen: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.paused_seen.append(metrics.PAUSED_TARGETS.labels("archive")._value.get())
        self.sleeps.append(seconds)
        self.now += seconds + 2.0  # each failed attempt also takes time (connect timeout)


async def test_start_waits_with_backoff_until_the_store_answers(caplog: pytest.LogCaptureFixture) -> None:
    s3 = FakeS3()
    s3.down = 9
    clock = FakeTime()
    adapter = ArchiveAdapter(
        cfg(start_retry_first_s=0.5, start_retry_cap_s=8.0),
        client=s3,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        rng=lambda: 1.0,
    )
    with caplog.at_level(logging.WARNING, logger="consumers.archive.adapter"):
        await adapter.start()
    assert adapter.start_attempts == 9
    assert clock.sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0, 8.0, 8.0]  # exponential, capped
    assert clock.paused_seen == [1.0] * 9  # the archive's one target shows as paused meanwhile
    assert metrics.PAUSED_TARGETS.labels("archive")._value.get() == 0.0
    waits = [r for r in caplog.records if "not ready at start" in r.getMessage()]
    assert len(waits) == 9 and "EndpointConnectionError" in waits[0].getMessage()
    assert "next attempt in 0.5 s" in waits[0].getMessage()
    assert any("ready after 9 failed attempts" in r.getMessage() for r in caplog.records)
    assert "SK" not in caplog.text  # the secret is never logged
    # And then it works.
    assert (await adapter.deliver(command("urn:x:6"), Prior())).outcome == "delivered"


def test_start_delays_are_jittered_within_bounds() -> None:
    config = cfg(start_retry_first_s=1.0, start_retry_cap_s=30.0)
    assert start_delay(config, 1, lambda: 0.0) == 0.5 and start_delay(config, 1, lambda: 1.0) == 1.0
    assert start_delay(config, 20, lambda: 0.0) == 15.0 and start_delay(config, 20, lambda: 1.0) == 30.0


async def test_start_gives_up_after_the_deadline() -> None:
    s3 = FakeS3()
    s3.down = 1000
    clock = FakeTime()
    adapter = ArchiveAdapter(
        cfg(start_deadline_s=60.0, start_retry_cap_s=8.0),
        client=s3,
        sleep=clock.sleep,
        monotonic=clock.monotonic,
        rng=lambda: 1.0,
    )
    with pytest.raises(TransientDeliveryError) as exc:
        await adapter.start()
    assert exc.value.code == "EndpointConnectionError"
    assert 60.0 <= clock.now <= 60.0 + 2.0 and s3.down > 0


async def test_start_does_not_wait_for_refused_credentials() -> None:
    class Refusing(FakeS3):
        def get_bucket_versioning(self, **_: Any) -> dict[str, Any]:
            self._call("get_bucket_versioning")
            raise client_error("SignatureDoesNotMatch", 403)

    clock = FakeTime()
    adapter = ArchiveAdapter(cfg(), client=Refusing(), sleep=clock.sleep, monotonic=clock.monotonic)
    with pytest.raises(TargetPaused) as exc:
        await adapter.start()
    assert exc.value.alert and clock.sleeps == []


# --------------------------------------------------------------------------------------------
# An outage while running
# --------------------------------------------------------------------------------------------


async def test_a_long_outage_pauses_the_target_instead_of_using_up_attempts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s3 = FakeS3()
    clock = FakeTime()
    adapter = ArchiveAdapter(
        cfg(outage_pause_after_s=60.0, outage_pause_s=45.0), client=s3, monotonic=clock.monotonic
    )
    await adapter.start()
    s3.down = 1000
    kinds: list[str] = []
    for _ in range(8):  # a failure every 20 s
        try:
            await adapter.deliver(command("urn:x:7"), Prior())
        except TargetPaused as exc:
            assert exc.retry_after == 45.0 and exc.code == "EndpointConnectionError" and not exc.alert
            kinds.append("paused")
        except TransientDeliveryError as exc:
            assert exc.code == "EndpointConnectionError"
            kinds.append("transient")
        clock.now += 20.0
    # Transient for the first minute (in-process and counted retries), then paused (uncounted).
    assert kinds == ["transient"] * 3 + ["paused"] * 5
    assert sum("pausing the archive target" in r.getMessage() for r in caplog.records) == 1

    s3.down = 0
    with caplog.at_level(logging.WARNING, logger="consumers.archive.adapter"):
        assert (await adapter.deliver(command("urn:x:7"), Prior())).outcome == "delivered"
    assert any("answers again" in r.getMessage() for r in caplog.records)
    # A new outage starts its own clock: transient again at first.
    s3.down = 1000
    with pytest.raises(TransientDeliveryError) as again:
        await adapter.deliver(command("urn:x:8"), Prior())
    assert not isinstance(again.value, TargetPaused)
