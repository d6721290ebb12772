"""The archive adapter's retraction against a real S3 server: takedown markers, kept history, legal hold.

Same setup as test_archive_s3.py (versitygw on loopback, no Kafka); fixtures and helpers come from
archive_s3_support.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from archive_s3_support import (
    NAMES,
    NO_PRIOR,
    all_versions,
    bucket,
    command,
    current_keys,
    manifest,
    prefix_of,
    raw,
    read,
    retract,
    s3,
    samples,
    started,
    write_wav,
)
from botocore.exceptions import ClientError

from consumers.archive.config import ArchiveConfigError
from infra.local.s3.versitygw import S3Server
from schemas.models import Action

# The module fixture may build versitygw from source (~3 min cold on 2 cores) inside the first
# test's setup, which pytest-timeout counts; CI should run `python -m infra.local.s3 build` first.
pytestmark = pytest.mark.timeout(900)


# --------------------------------------------------------------------------------------------
# Retraction
# --------------------------------------------------------------------------------------------


async def test_retraction_leaves_markers_and_keeps_history(
    s3: S3Server, raw: Any, bucket: str, tmp_path: Path
) -> None:
    wav = write_wav(tmp_path / "a.wav")
    adapter = await started(s3, bucket, audio_lookup=lambda uri, version: wav)
    doc1 = samples()[0]
    uri = doc1["uri"]
    doc2 = {**doc1, "version": "2", "headlines": [{"role": "main", "value": "Tiêu đề đã sửa"}]}
    assert (await adapter.deliver(command(doc1), NO_PRIOR)).outcome == "delivered"
    assert (await adapter.deliver(command(doc2, Action.UPDATE), NO_PRIOR)).outcome == "updated"
    public_keys = [k for k in current_keys(raw, bucket, prefix_of(uri)) if not k.endswith("manifest.json")]
    assert len(public_keys) == 2 * (len(NAMES) + 1)
    originals = {k: read(raw, bucket, k) for k in public_keys}

    reason = "Thông tin chưa chính xác, gỡ theo yêu cầu của Ban biên tập"
    cmd = retract(uri, 3, reason)
    effect = await adapter.deliver(cmd, NO_PRIOR)
    assert effect.outcome == "deleted" and effect.detail["markers_written"] == len(public_keys)

    for key in public_keys:
        body, meta = read(raw, bucket, key)
        assert meta["Metadata"]["takedown"] == cmd.key.command_id()
        assert hashlib.sha256(body).hexdigest() == meta["Metadata"]["sha256"]
        if key.endswith(".html"):
            text = body.decode()
            assert "Bài viết đã được gỡ" in text and reason in text and 'lang="vi"' in text
            assert "Tiêu đề" not in text
        else:
            marker = json.loads(body)
            assert (
                marker["takedown"] is True
                and marker["reason"] == reason
                and marker["message"] == "Bài viết đã được gỡ"
            )
            assert marker["taken_down_at"].endswith("Z") and marker["uri"] == uri
        # History: the content is still there, by VersionId, byte for byte.
        versions = [v for v in all_versions(raw, bucket, key) if v["Key"] == key]
        assert len(versions) == 2
        old = next(v for v in versions if not v["IsLatest"])
        assert old["VersionId"] == originals[key][1]["VersionId"]
        assert read(raw, bucket, key, old["VersionId"])[0] == originals[key][0]

    m = manifest(raw, bucket, uri)
    assert m["status"] == "taken_down" and [v["version"] for v in m["versions"]] == [1, 2]
    [takedown] = m["takedowns"]
    assert (
        takedown["reason"] == reason
        and takedown["version"] == 3
        and takedown["command_id"] == cmd.key.command_id()
    )
    recorded = {o["key"]: o for o in takedown["objects"]}
    assert set(recorded) == set(public_keys)
    for key, (body, meta) in originals.items():
        assert recorded[key]["content_version_id"] == meta["VersionId"]
        assert recorded[key]["content_sha256"] == hashlib.sha256(body).hexdigest()

    # Replays: the retraction again, and the old publish commands, change nothing.
    count = len(all_versions(raw, bucket))
    again = await adapter.deliver(cmd, NO_PRIOR)
    assert again.outcome == "deleted" and again.detail["markers_written"] == 0
    for old_cmd in (command(doc1), command(doc2, Action.UPDATE)):
        replayed = await adapter.deliver(old_cmd, NO_PRIOR)
        assert replayed.outcome == "skipped"
        reconciled = await adapter.reconcile(old_cmd, NO_PRIOR)
        assert reconciled is not None and reconciled.outcome == "skipped"
    assert len(all_versions(raw, bucket)) == count
    found = await adapter.reconcile(cmd, NO_PRIOR)
    assert found is not None and found.outcome == "deleted"
    assert read(raw, bucket, prefix_of(uri) + "v1/document.json")[1]["Metadata"]["takedown"]

    # A newer version published after the retraction is public again; history stays.
    doc4 = {**doc1, "version": "4"}
    assert (await adapter.deliver(command(doc4, Action.UPDATE), NO_PRIOR)).outcome == "updated"
    m = manifest(raw, bucket, uri)
    assert m["status"] == "public" and len(m["takedowns"]) == 1
    assert "takedown" not in read(raw, bucket, prefix_of(uri) + "v4/document.json")[1]["Metadata"]


async def test_retraction_before_archiving_blocks_a_late_publish(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket)
    doc = samples()[2]
    effect = await adapter.deliver(retract(doc["uri"], 1, "Gỡ trước khi lưu"), NO_PRIOR)
    assert effect.outcome == "deleted" and effect.detail["markers_written"] == 0
    late = await adapter.deliver(command(doc), NO_PRIOR)
    assert late.outcome == "skipped"
    assert current_keys(raw, bucket, prefix_of(doc["uri"])) == [prefix_of(doc["uri"]) + "manifest.json"]


async def test_retraction_with_legal_hold(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket, legal_hold=True)
    lock = raw.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock["ObjectLockEnabled"] == "Enabled"
    doc = samples()[3]
    await adapter.deliver(command(doc), NO_PRIOR)
    key = prefix_of(doc["uri"]) + "v1/document.json"
    content_version = read(raw, bucket, key)[1]["VersionId"]
    await adapter.deliver(retract(doc["uri"], 1, "Yêu cầu pháp lý"), NO_PRIOR)
    hold = raw.get_object_legal_hold(Bucket=bucket, Key=key, VersionId=content_version)
    assert hold["LegalHold"]["Status"] == "ON"
    with pytest.raises(ClientError) as refused:
        raw.delete_object(Bucket=bucket, Key=key, VersionId=content_version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert (
        read(raw, bucket, key, content_version)[0]
        == json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    )
    assert manifest(raw, bucket, doc["uri"])["takedowns"][0]["legal_hold"] is True

    # Legal hold asked of a bucket that was created without object lock: refused at start.
    plain = f"{bucket}-plain"
    raw.create_bucket(Bucket=plain)
    with pytest.raises(ArchiveConfigError, match="object lock"):
        await started(s3, plain, legal_hold=True)


async def test_a_takedown_marker_on_an_unrecorded_version_survives_a_replay(
    s3: S3Server, raw: Any, bucket: str
) -> None:
    # New objects are written with If-None-Match first (no HEAD): a key that already holds a
    # takedown marker must refuse that write, and the publish must skip.
    adapter = await started(s3, bucket)
    doc = {**samples()[4], "version": "2"}
    await adapter.deliver(command(doc, Action.UPDATE), NO_PRIOR)
    raw.delete_object(
        Bucket=bucket, Key=prefix_of(doc["uri"]) + "manifest.json"
    )  # as if it was never written
    effect = await adapter.deliver(retract(doc["uri"], 1, "Gỡ"), NO_PRIOR)
    assert effect.detail["markers_written"] == len(NAMES)
    before = all_versions(raw, bucket)
    replay = await adapter.deliver(command(doc, Action.UPDATE), NO_PRIOR)
    assert replay.outcome == "skipped"
    assert sorted((v["Key"], v["VersionId"]) for v in all_versions(raw, bucket)) == sorted(
        (v["Key"], v["VersionId"]) for v in before
    )
    for name in NAMES:
        assert read(raw, bucket, f"{prefix_of(doc['uri'])}v2/{name}")[1]["Metadata"]["takedown"]
