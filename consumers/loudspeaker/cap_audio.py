"""A CAP alert's own audio (``<resource>`` with an ``audio/*`` mimeType) on the loudspeakers.

An office may record its warning: an embedded ``derefUri`` (base64 in the XML) or a remote
``uri``. The zones play it before the synthesised text (``mode = "before"``, the default) or
instead of it (``"instead"``). What is accepted:

- an embedded resource, decoded strictly (invalid base64 is refused), at most ``max_bytes``;
- a remote one only over http(s) from a host on the allow-list (``LANTOA_CAP_AUDIO_HOSTS``, exact
  host names; empty: no remote audio at all), no redirects (a redirect could leave the list), at
  most ``max_bytes`` read (the download stops there) within ``timeout_s``;
- the ``digest`` when given (SHA-1 in CAP 1.2, SHA-256 accepted too) must match;
- the content must decode as audio: ffmpeg (Debian) converts it to the WAV the platform gets for
  every bulletin (22,050 Hz mono 16-bit, as espeak-ng writes), at most ``max_seconds`` long.
  The declared mimeType is not trusted; what ffmpeg cannot decode is refused.

A refused resource never stops the warning: the lane airs the synthesised text and says why in
its result (``PushResult.audio_refused``, the receipt's reason). Files are content-addressed under the audio cache, so a
replay or another worker makes the same file once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import os
import shutil
import tempfile
import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import aiohttp

from schemas.errors import InvalidContent

Mode = Literal["before", "instead"]
MAX_AUDIO_BYTES: Final = 10 * 1024 * 1024
MAX_AUDIO_SECONDS: Final = 600.0
CONVERT_TIMEOUT_S: Final = 60.0
GAP_S: Final = 0.8  # silence between the office's recording and the synthesised text


@dataclass(frozen=True)
class AudioPolicy:
    hosts: frozenset[str] = frozenset()
    max_bytes: int = MAX_AUDIO_BYTES
    timeout_s: float = 10.0
    mode: Mode = "before"
    max_seconds: float = MAX_AUDIO_SECONDS

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> AudioPolicy:
        hosts = frozenset(
            h.strip().lower() for h in env.get("LANTOA_CAP_AUDIO_HOSTS", "").split(",") if h.strip()
        )
        mode = env.get("LANTOA_CAP_AUDIO_MODE", "before").strip() or "before"
        if mode not in ("before", "instead"):
            raise SystemExit(f"LANTOA_CAP_AUDIO_MODE must be before or instead, not {mode[:20]!r}")
        try:
            max_bytes = int(env.get("LANTOA_CAP_AUDIO_MAX_BYTES") or MAX_AUDIO_BYTES)
            timeout_s = float(env.get("LANTOA_CAP_AUDIO_TIMEOUT_S") or 10.0)
        except ValueError:
            raise SystemExit(
                "LANTOA_CAP_AUDIO_MAX_BYTES and LANTOA_CAP_AUDIO_TIMEOUT_S must be numbers"
            ) from None
        if not (1 <= max_bytes <= 100 * 1024 * 1024 and 0.1 <= timeout_s <= 120):
            raise SystemExit(
                "LANTOA_CAP_AUDIO_MAX_BYTES must be 1..100 MiB, LANTOA_CAP_AUDIO_TIMEOUT_S 0.1..120 s"
            )
        return cls(hosts, max_bytes, timeout_s, mode)  # type: ignore[arg-type]


@dataclass(frozen=True)
class AlertAudio:
    """The office's recording as a WAV in the cache, and how long it plays."""

    path: Path
    duration_s: float


def _check_digest(data: bytes, digest: str | None) -> None:
    if not digest:
        return
    want = digest.strip().lower()
    got = hashlib.sha1(data).hexdigest() if len(want) == 40 else hashlib.sha256(data).hexdigest()
    if got != want:
        raise InvalidContent(f"audio resource digest {want[:64]} does not match its content ({got})")


async def fetch_bytes(
    res: Mapping[str, Any], policy: AudioPolicy, session: aiohttp.ClientSession | None
) -> bytes:
    """The resource's bytes (embedded, else fetched under the policy). Raises InvalidContent."""
    deref = res.get("deref")
    if isinstance(deref, str) and deref:
        if len(deref) > policy.max_bytes * 4 // 3 + 4:
            raise InvalidContent(f"embedded audio over {policy.max_bytes} bytes")
        try:
            data = base64.b64decode(deref, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidContent("embedded audio (derefUri) is not valid base64") from None
    else:
        uri = res.get("uri")
        if not isinstance(uri, str) or not uri:
            raise InvalidContent("audio resource without derefUri or uri")
        parts = urlsplit(uri)
        host = (parts.hostname or "").lower()
        if parts.scheme not in ("http", "https") or not host:
            raise InvalidContent(f"audio uri {uri[:100]!r}: only http(s) URLs are fetched")
        if host not in policy.hosts:
            raise InvalidContent(
                f"audio host {host[:100]!r} is not on the allow-list (LANTOA_CAP_AUDIO_HOSTS)"
            )
        if session is None:
            raise InvalidContent("no HTTP session to fetch remote audio")
        try:
            async with session.get(
                uri, allow_redirects=False, timeout=aiohttp.ClientTimeout(total=policy.timeout_s)
            ) as resp:
                if resp.status != 200:
                    raise InvalidContent(f"audio uri answered {resp.status}")
                chunks, total = [], 0
                async for chunk in resp.content.iter_chunked(65536):
                    total += len(chunk)
                    if total > policy.max_bytes:
                        raise InvalidContent(f"remote audio over {policy.max_bytes} bytes")
                    chunks.append(chunk)
                data = b"".join(chunks)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise InvalidContent(
                f"audio uri could not be fetched in {policy.timeout_s} s: {type(exc).__name__}"
            ) from None
    if not data:
        raise InvalidContent("empty audio resource")
    if len(data) > policy.max_bytes:
        raise InvalidContent(f"audio resource over {policy.max_bytes} bytes")
    _check_digest(data, res.get("digest") if isinstance(res.get("digest"), str) else None)
    return data


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())


async def _run(args: list[str], stdin: bytes | None = None) -> None:
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(stdin), CONVERT_TIMEOUT_S)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise InvalidContent(f"{args[0]} took longer than {CONVERT_TIMEOUT_S:.0f} s") from None
    if proc.returncode != 0:
        tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise InvalidContent(f"not decodable as audio ({args[0]}: {tail[0][:200]})")


async def to_wav(data: bytes, cache_dir: Path, policy: AudioPolicy) -> AlertAudio:
    """Decode ``data`` (any format ffmpeg reads) to the platform's WAV under ``cache_dir``."""
    digest = hashlib.sha256(data).hexdigest()
    out = Path(cache_dir) / "cap-audio" / f"{digest}.wav"
    if out.exists():
        return AlertAudio(out, wav_seconds(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise InvalidContent("ffmpeg is not installed: the office's audio cannot be checked")
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".wav")
    os.close(fd)
    try:
        await _run(
            [
                ffmpeg,
                "-nostdin",
                "-hide_banner",
                "-loglevel",
                "error",
                "-y",
                "-i",
                "pipe:0",
                "-t",
                str(policy.max_seconds),
                "-vn",
                "-ac",
                "1",
                "-ar",
                "22050",
                "-c:a",
                "pcm_s16le",
                "-f",
                "wav",
                tmp,
            ],
            stdin=data,
        )
        seconds = wav_seconds(Path(tmp))
        if seconds <= 0.05:
            raise InvalidContent("the audio resource holds no sound")
        os.replace(tmp, out)
    except (wave.Error, EOFError):
        raise InvalidContent("not decodable as audio (no WAV came out)") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return AlertAudio(out, seconds)


def join_wavs(first: Path, second: Path, cache_dir: Path) -> Path:
    """``first``, a short silence, then ``second``: one WAV (same format, as both are ours)."""
    key = hashlib.sha256(f"{first.name}\x00{second.name}".encode()).hexdigest()
    out = Path(cache_dir) / "cap-audio" / f"joined-{key}.wav"
    if out.exists():
        return out
    with wave.open(str(first), "rb") as a, wave.open(str(second), "rb") as b:
        params = a.getparams()
        if (b.getnchannels(), b.getsampwidth(), b.getframerate()) != (
            params.nchannels,
            params.sampwidth,
            params.framerate,
        ):
            raise InvalidContent("the recording and the speech differ in format")
        fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".wav")
        os.close(fd)
        with wave.open(tmp, "wb") as w:
            w.setnchannels(params.nchannels)
            w.setsampwidth(params.sampwidth)
            w.setframerate(params.framerate)
            while frames := a.readframes(65536):
                w.writeframes(frames)
            w.writeframes(b"\x00" * int(GAP_S * params.framerate) * params.sampwidth * params.nchannels)
            while frames := b.readframes(65536):
                w.writeframes(frames)
    os.replace(tmp, out)
    return out
