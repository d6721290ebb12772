"""The archive's audio against a real S3 server (versitygw on loopback, no Kafka): streamed from the
file through botocore, never held whole, stored byte for byte with its verified checksum.

Same setup as test_archive_s3.py; fixtures and helpers come from archive_s3_support.py. The
longest-bulletin test is also the measurement the README quotes: peak Python memory while the
audio of the longest accepted bulletin is archived.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tracemalloc
from pathlib import Path, PosixPath
from typing import Any

import pytest
from archive_s3_support import NO_PRIOR, all_versions, bucket, command, prefix_of, raw, s3, samples, started
from helpers import SHARED

from consumers.archive.store import CHUNK_BYTES
from consumers.loudspeaker.audio import AudioRenderer, audio_for
from consumers.loudspeaker.tts import LONGEST_SPEECH_S, MAX_SPEECH_TEXT_CHARS
from infra.local.s3.versitygw import S3Server

# The module fixture may build versitygw from source (~3 min cold on 2 cores) inside the first
# test's setup, which pytest-timeout counts.
pytestmark = pytest.mark.timeout(900)


AUDIO_BYTES = 50 * 1024 * 1024


class SpyFile(io.FileIO):
    """Remembers the largest read botocore asks of the audio file."""

    largest = 0

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
        return SpyFile(str(self), "rb")


def streamed_digest(raw: Any, bucket: str, key: str) -> tuple[str, int, dict[str, Any]]:
    """The stored object's SHA-256 and size, read back in chunks (the test holds no copy either)."""
    r = raw.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    digest, size = hashlib.sha256(), 0
    for chunk in r["Body"].iter_chunks(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size, r


def file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


async def test_a_50_mb_audio_is_streamed_to_the_store_and_kept_byte_for_byte(
    s3: S3Server, raw: Any, bucket: str, tmp_path: Path
) -> None:
    wav = tmp_path / "long.wav"
    with wav.open("wb") as f:  # a RIFF header, then 50 MB that differ from block to block
        f.write(b"RIFF" + (AUDIO_BYTES - 8).to_bytes(4, "little") + b"WAVE")
        block = hashlib.sha256(b"lantoa").digest() * 2048  # 64 kB
        for i in range((AUDIO_BYTES - 12) // len(block)):
            f.write(i.to_bytes(4, "little") + block[4:])
        f.write(bytes(AUDIO_BYTES - f.tell()))
    assert wav.stat().st_size == AUDIO_BYTES
    doc = samples()[0]
    SpyFile.largest = 0
    adapter = await started(s3, bucket, audio_lookup=lambda uri, version: SpyPath(wav))

    tracemalloc.start()
    try:
        effect = await adapter.deliver(command(doc), NO_PRIOR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert effect.outcome == "delivered"
    print(
        f"\narchiving a {AUDIO_BYTES / 1e6:.0f} MB audio: tracemalloc peak {peak / 1e6:.1f} MB, "
        f"largest read {SpyFile.largest:,} bytes"
    )
    assert peak < 8_000_000 < AUDIO_BYTES / 6, f"peak {peak:,} bytes for a {AUDIO_BYTES:,}-byte audio"
    assert 0 < SpyFile.largest <= CHUNK_BYTES

    key = prefix_of(doc["uri"]) + "v1/audio.wav"
    digest, size, meta = streamed_digest(raw, bucket, key)
    assert (digest, size) == (file_digest(wav), AUDIO_BYTES)
    assert meta["ChecksumSHA256"] == base64.b64encode(bytes.fromhex(digest)).decode()
    assert meta["Metadata"]["sha256"] == digest and meta["ContentType"] == "audio/wav"
    record = effect.detail["objects"]["audio.wav"]
    assert (record["sha256"], record["size"], record["written"]) == (digest, AUDIO_BYTES, True)

    # A replay uploads nothing and creates no object version.
    before = all_versions(raw, bucket)
    again = await adapter.deliver(command(doc), NO_PRIOR)
    assert not again.detail["objects"]["audio.wav"]["written"]
    assert len(all_versions(raw, bucket)) == len(before)
    await adapter.close()


async def test_the_longest_accepted_bulletin_is_spoken_and_archived_in_bounded_memory(
    s3: S3Server, raw: Any, bucket: str, tmp_path: Path
) -> None:
    # The longest text the synthesiser accepts, real Vietnamese, through the loudspeaker's renderer
    # and its index to the archive, as the adapters run them.
    seed = (SHARED / "context" / "seed-article-vi.txt").read_text(encoding="utf-8")
    text = "\n\n".join([seed] * (MAX_SPEECH_TEXT_CHARS // len(seed) + 1))[:MAX_SPEECH_TEXT_CHARS]
    text = text[: text.rfind(" ")]
    doc = samples()[0]
    renderer = AudioRenderer(tmp_path / "audio", "https://loa.example.vn/audio")
    audio = await renderer.render(text)
    renderer.index(doc["uri"], int(doc["version"]), audio)
    assert audio.duration_s <= LONGEST_SPEECH_S
    wav = tmp_path / "audio" / audio.path
    adapter = await started(s3, bucket, audio_lookup=audio_for(tmp_path / "audio"))

    tracemalloc.start()
    try:
        effect = await adapter.deliver(command(doc), NO_PRIOR)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    size = wav.stat().st_size
    print(
        f"\nlongest accepted bulletin: {len(text):,} characters, {audio.duration_s:,.0f} s of speech, "
        f"{size / 1e6:.1f} MB of WAV; archived with a tracemalloc peak of {peak / 1e6:.1f} MB"
    )
    assert effect.outcome == "delivered"
    assert peak < 8_000_000 < size / 10
    digest, stored, _ = streamed_digest(raw, bucket, prefix_of(doc["uri"]) + "v1/audio.wav")
    assert (digest, stored) == (audio.sha256, size) == (file_digest(wav), size)
    await adapter.close()
