"""The archive streams the audio: hashed, measured and uploaded from the file in chunks, never
held whole. A store that reads bodies as a socket would (in chunks) and keeps only their digests,
so what this measures is the adapter's own memory. The real server: test_archive_s3_audio.py."""

from __future__ import annotations

import base64
import hashlib
import io
import itertools
import tracemalloc
import uuid
from pathlib import Path, PosixPath
from typing import Any

import pytest
from botocore.exceptions import ClientError

from consumers.archive.adapter import ArchiveAdapter
from consumers.archive.config import ArchiveConfig, S3Credentials
from consumers.archive.store import CHUNK_BYTES, file_blob
from consumers.delivery.base import Prior
from consumers.delivery.errors import TransientDeliveryError
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel

AUDIO_BYTES = 50 * 1024 * 1024


class SpyFile(io.FileIO):
    """A file that remembers the largest read asked of it and whether it was closed."""

    largest = 0
    opened: list[SpyFile] = []

    def __init__(self, path: str) -> None:
        super().__init__(path, "rb")
        SpyFile.opened.append(self)

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        SpyFile.largest = max(SpyFile.largest, len(data))
        return data

    def readall(self) -> bytes:
        data = super().readall()
        SpyFile.largest = max(SpyFile.largest, len(data))
        return data


class SpyPath(PosixPath):
    def open(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return SpyFile(str(self))


@pytest.fixture(autouse=True)
def _reset_spy() -> None:
    SpyFile.largest = 0
    SpyFile.opened = []


def refused(code: str, status: int, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


class StreamingS3:
    """put_object reads a file body in 64 kB reads, like a socket sender; keeps digests only."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, type] = {}
        self.ids = itertools.count(1)

    def get_bucket_versioning(self, **_: Any) -> dict[str, Any]:
        return {"Status": "Enabled"}

    def head_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        if Key not in self.objects:
            raise refused("404", 404, "HeadObject")
        o = self.objects[Key]
        return {
            "ETag": o["etag"],
            "Metadata": o["meta"],
            "VersionId": o["id"],
            "ContentLength": o["size"],
            "ChecksumSHA256": o["checksum"],
        }

    def get_object(self, *, Key: str, **_: Any) -> dict[str, Any]:
        if Key not in self.objects or "raw" not in self.objects[Key]:
            raise refused("NoSuchKey", 404, "GetObject")
        o = self.objects[Key]
        return {"Body": io.BytesIO(o["raw"]), "ETag": o["etag"]}

    def put_object(
        self,
        *,
        Key: str,
        Body: Any,
        ChecksumSHA256: str,
        Metadata: dict[str, str],
        IfNoneMatch: str | None = None,
        IfMatch: str | None = None,
        **_: Any,
    ) -> dict[str, Any]:
        if IfNoneMatch == "*" and Key in self.objects:
            raise refused("PreconditionFailed", 412, "PutObject")
        self.bodies[Key] = type(Body)
        digest, size = hashlib.sha256(), 0
        if isinstance(Body, bytes):
            digest.update(Body)
            size = len(Body)
        else:
            for chunk in iter(lambda: Body.read(1 << 16), b""):
                digest.update(chunk)
                size += len(chunk)
        checksum = base64.b64encode(digest.digest()).decode()
        if checksum != ChecksumSHA256:
            raise refused("BadDigest", 400, "PutObject")
        o = {
            "etag": f'"{digest.hexdigest()[:32]}"',
            "meta": dict(Metadata),
            "id": f"v{next(self.ids)}",
            "size": size,
            "checksum": checksum,
        }
        if Key.endswith("manifest.json"):
            o["raw"] = Body
        self.objects[Key] = o
        return {"ETag": o["etag"], "VersionId": o["id"], "ChecksumSHA256": checksum}

    def close(self) -> None:
        pass


def fake_wav(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        f.write(b"RIFF" + (size - 8).to_bytes(4, "little") + b"WAVEfmt ")
        f.write(bytes(range(256)) * 4)  # not all zeros: a hash over the wrong bytes would differ
        f.truncate(size)  # the rest sparse
    return path


def command(uri: str) -> Command:
    doc = {
        "uri": uri,
        "version": "1",
        "type": "text",
        "headlines": [{"role": "main", "value": "Tiêu đề"}],
        "bodies": [{"role": "main", "contentType": "text/plain", "value": "Đoạn một."}],
    }
    return Command(
        key=IdempotencyKey(uri, 1, Channel.ARCHIVE, "archive:main", Action.PUBLISH),
        priority=Priority.NORMAL,
        issued_at="2026-11-26T01:00:01.000Z",
        payload={"document": doc, "public_url": "https://tin.lantoa.example.vn/a/x", "ninjs_version": "3.1"},
        published_at="2026-11-26T08:00:00+07:00",
        event_id=str(uuid.uuid4()),
    )


def adapter_for(wav: Path) -> tuple[ArchiveAdapter, StreamingS3]:
    s3 = StreamingS3()
    config = ArchiveConfig(
        bucket="b",
        endpoint_url="http://127.0.0.1:1",
        credentials=S3Credentials("AK", "SK"),
        audio_lookup=lambda uri, version: SpyPath(wav),
    )
    return ArchiveAdapter(config, client=s3), s3


async def test_a_50_mb_audio_is_uploaded_without_being_held(tmp_path: Path) -> None:
    wav = fake_wav(tmp_path / "long.wav", AUDIO_BYTES)
    expected = hashlib.sha256()
    with wav.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            expected.update(chunk)
    adapter, s3 = adapter_for(wav)
    await adapter.start()

    tracemalloc.start()
    try:
        effect = await adapter.deliver(command("urn:x:audio"), Prior())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    record = effect.detail["objects"]["audio.wav"]
    assert record["written"] and record["size"] == AUDIO_BYTES and record["sha256"] == expected.hexdigest()
    [audio_key] = [k for k in s3.objects if k.endswith("/audio.wav")]
    assert s3.objects[audio_key]["size"] == AUDIO_BYTES
    assert peak < 4 * CHUNK_BYTES < AUDIO_BYTES / 10, f"peak {peak:,} bytes while archiving {AUDIO_BYTES:,}"
    assert s3.bodies[audio_key] is SpyFile, "the audio reaches the S3 client as the open file, not as bytes"
    assert 0 < SpyFile.largest <= CHUNK_BYTES, f"largest read of the audio: {SpyFile.largest:,} bytes"
    assert SpyFile.opened and all(f.closed for f in SpyFile.opened), (
        "the audio file is closed after the command"
    )

    # A replay finds the same digest and size at HEAD: nothing uploaded, still in chunks.
    s3.bodies.clear()
    again = await adapter.deliver(command("urn:x:audio"), Prior())
    assert not again.detail["objects"]["audio.wav"]["written"] and audio_key not in s3.bodies
    assert SpyFile.largest <= CHUNK_BYTES and all(f.closed for f in SpyFile.opened)


async def test_an_unreadable_audio_file_is_transient(tmp_path: Path) -> None:
    adapter, _ = adapter_for(tmp_path / "missing.wav")
    await adapter.start()
    with pytest.raises(TransientDeliveryError, match="unreadable"):
        await adapter.deliver(command("urn:x:gone"), Prior())


def test_file_blob_hashes_and_measures_in_chunks_from_the_start(tmp_path: Path) -> None:
    wav = fake_wav(tmp_path / "a.wav", 3 * CHUNK_BYTES + 17)
    with SpyFile(str(wav)) as f:
        f.seek(1234)  # wherever the file was, the blob is all of it
        item = file_blob("audio.wav", f, "audio/wav")
        assert f.tell() == 0 and item.body is f
    with wav.open("rb") as g:
        assert item.sha256 == hashlib.file_digest(g, "sha256").hexdigest()
    assert item.size == 3 * CHUNK_BYTES + 17 and not item.immutable
    assert SpyFile.largest == CHUNK_BYTES
