"""Loudspeaker audio: bulletins spoken once with espeak-ng (content-addressed, single flight),
and the per-version index the archive reads to store the audio the stations play."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from consumers.delivery.errors import PermanentDeliveryError, TransientDeliveryError
from consumers.loudspeaker.cap_audio import AudioPolicy, fetch_bytes, join_wavs, to_wav, wav_seconds
from consumers.loudspeaker.tts import (
    LARGEST_WAV_BYTES,
    RenderedAudio,
    TTSRenderError,
    render_audio,
    speakable,
)
from schemas.errors import InvalidContent


@dataclass(frozen=True)
class Audio:
    """A rendered bulletin: where the platform fetches it, the file under the cache, its length."""

    url: str
    path: str
    duration_s: float
    sha256: str


class AudioRenderer:
    """Speaks texts with espeak-ng, once per text: on disk (``render_audio`` is content-addressed)
    and in process (single flight: concurrent zones asking for the same text wait for one render,
    later ones reuse the result). Rendering runs in a thread, so the event loop keeps serving.
    The audio never passes through Python: espeak-ng writes the file, which is hashed in chunks.

    Raises ``InvalidContent`` (nothing to speak, or longer than Lantoa speaks: see
    ``consumers.loudspeaker.tts.longest_speech_s``; remembered like a result, so the thousands of zones
    of one over-long bulletin are refused without running espeak-ng again),
    ``TransientDeliveryError`` (espeak-ng failed or timed out) and lets ``TTSUnavailable``
    through (no espeak-ng on this host: crash, fix it).
    """

    def __init__(
        self,
        cache_dir: Path,
        base_url: str,
        *,
        voice: str = "vi",
        speed_wpm: int = 150,
        executable: str = "espeak-ng",
        memo_size: int = 1024,
    ) -> None:
        self.cache_dir, self.base_url = Path(cache_dir), base_url.rstrip("/")
        self.voice, self.speed_wpm, self.executable = voice, speed_wpm, executable
        self._memo: OrderedDict[str, asyncio.Future[Audio]] = OrderedDict()
        self._memo_size = memo_size
        self.renders = 0  # files espeak-ng wrote for this process (cache misses on disk)

    async def render(self, text: str) -> Audio:
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()
        pending = self._memo.get(key)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._memo[key] = pending
            while len(self._memo) > self._memo_size:
                self._memo.popitem(last=False)
            try:
                rendered = await asyncio.to_thread(self._render, text)
            except asyncio.CancelledError:
                self._memo.pop(key, None)
                pending.cancel()
                raise
            except Exception as exc:
                if not isinstance(exc, InvalidContent):
                    self._memo.pop(key, None)  # a retry renders again; refused content stays refused
                pending.set_exception(exc)
                pending.exception()  # retrieved: the callers waiting on it re-raise it themselves
                raise
            if not rendered.cache_hit:
                self.renders += 1
            relative = rendered.path.relative_to(self.cache_dir.resolve()).as_posix()
            pending.set_result(
                Audio(f"{self.base_url}/{quote(relative)}", relative, rendered.duration_s, rendered.sha256)
            )
        else:
            self._memo.move_to_end(key)
        return await asyncio.shield(pending)

    async def render_start(self, text: str) -> tuple[Audio, str | None]:
        """For what must air whatever its length (an emergency): speak ``text``, or only its start
        when it is longer than Lantoa speaks (``consumers.loudspeaker.tts.speakable``); the audio and
        why it was shortened (None when whole). Raises as ``render``."""
        spoken, shortened = speakable(text)
        return await self.render(spoken), shortened

    async def render_alert(
        self,
        text: str,
        resource: Mapping[str, Any] | None,
        policy: AudioPolicy,
        session: aiohttp.ClientSession | None,
    ) -> tuple[Audio, str | None, str | None]:
        """A CAP alert's audio: the office's recording (consumers/loudspeaker/cap_audio.py) before
        or instead of the spoken ``text``; (audio, why the speech was shortened, why the recording
        was refused). A refused recording leaves the spoken text alone: the warning airs."""
        refused = None
        if resource is not None:
            try:
                recording = await to_wav(await fetch_bytes(resource, policy, session), self.cache_dir, policy)
            except InvalidContent as exc:
                refused = f"the alert's audio resource is not aired: {exc.reason}"
            else:
                if policy.mode == "instead":
                    return self._file_audio(recording.path), None, None
                spoken, shortened = await self.render_start(text)
                joined = await asyncio.to_thread(
                    join_wavs, recording.path, self.cache_dir.resolve() / spoken.path, self.cache_dir
                )
                return self._file_audio(joined), shortened, None
        spoken, shortened = await self.render_start(text)
        return spoken, shortened, refused

    def _file_audio(self, path: Path) -> Audio:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
        relative = path.resolve().relative_to(self.cache_dir.resolve()).as_posix()
        return Audio(f"{self.base_url}/{quote(relative)}", relative, wav_seconds(path), digest.hexdigest())

    def index(self, uri: str, version: int, audio: Audio) -> None:
        """Name the rendered file by article version too, so the archive can store the audio
        the stations play (``audio_for``). One small pointer file, written once per version."""
        pointer = article_audio_pointer(self.cache_dir, uri, version)
        if not pointer.exists():
            pointer.parent.mkdir(parents=True, exist_ok=True)
            tmp = pointer.with_suffix(".tmp")
            tmp.write_text(audio.path)
            os.replace(tmp, pointer)

    def _render(self, text: str) -> RenderedAudio:
        try:
            return render_audio(
                text,
                voice=self.voice,
                speed_wpm=self.speed_wpm,
                cache_dir=self.cache_dir,
                executable=self.executable,
            )
        except TTSRenderError as exc:
            raise TransientDeliveryError(f"text-to-speech failed: {exc}") from exc


def article_audio_pointer(cache_dir: Path, uri: str, version: int) -> Path:
    return Path(cache_dir) / "by-article" / f"{hashlib.sha256(uri.encode()).hexdigest()}-v{version}.txt"


def audio_for(cache_dir: Path) -> Callable[[str, int], Path | None]:
    """The archive's audio lookup: (uri, version) → the WAV the loudspeaker channel rendered, if any.

    Raises ``PermanentDeliveryError`` (alert) for a file larger than any speech Lantoa synthesises
    (``LARGEST_WAV_BYTES``, the longest speech at the slowest speed): not audio of ours, never archived.
    """

    def lookup(uri: str, version: int) -> Path | None:
        pointer = article_audio_pointer(cache_dir, uri, version)
        try:
            relative = pointer.read_text().strip()
        except FileNotFoundError:
            return None
        path = (Path(cache_dir) / relative).resolve()
        if not (path.is_file() and Path(cache_dir).resolve() in path.parents):
            return None
        size = path.stat().st_size
        if size > LARGEST_WAV_BYTES:
            raise PermanentDeliveryError(
                f"audio of {uri[:200]!r} v{version} is {size:,} bytes, more than the longest speech Lantoa "
                f"synthesises ({LARGEST_WAV_BYTES:,} bytes): not archived",
                code="AudioTooLong",
                alert=True,
            )
        return path

    return lookup
