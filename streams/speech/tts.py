"""Offline Vietnamese text-to-speech with espeak-ng, content-addressed on disk.

``render_audio`` normalises the text (``streams.speech.normalize``), derives a cache key from
what decides the audio (spoken text, voice, speed, pause mode, espeak-ng version) and renders
``<cache_dir>/<key[:2]>/<key>.wav`` once: a second call with the same inputs reuses the file
without running espeak-ng. Files are written to a temporary name in the same directory and moved
into place with ``os.replace``, so a reader never sees half a WAV and two workers rendering the
same key at once both end with the same complete file.

The text reaches espeak-ng on stdin, never on the command line: a bulletin that starts with "-"
cannot be taken for an option, and no shell is involved.

Errors: ``TTSUnavailable`` (espeak-ng is not installed: an operations problem, the worker should
crash and be fixed), ``TTSRenderError`` (espeak-ng ran and failed: unknown voice, timeout, no
audio), ``InvalidContent`` (nothing speakable in the text: retrying cannot help),
``ValueError`` (a bad voice name or speed from the caller's configuration).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape

from schemas.errors import InvalidContent
from streams.speech.normalize import normalize

__all__ = [
    "PARAGRAPH_BREAK_MS",
    "RenderedAudio",
    "TTSRenderError",
    "TTSUnavailable",
    "cache_key",
    "espeak_version",
    "estimate_duration_s",
    "render_audio",
]

# Bumped whenever the way text becomes espeak-ng input changes, so old cache entries stop matching.
_KEY_FORMAT: Final = "lantoa-tts-1"
PARAGRAPH_BREAK_MS: Final = 800
MIN_SPEED_WPM: Final = 80
MAX_SPEED_WPM: Final = 450
# Measured with espeak-ng 1.51, voice vi: spoken syllables per minute ~ 1.33 x -s, and the pause
# espeak-ng makes at each mark at -s 150 (it shrinks roughly in proportion as the speed grows).
_SYLLABLES_PER_WORD: Final = 1.33
_PAUSES_AT_150_S: Final = {".": 0.5, "!": 0.5, "?": 0.5, ";": 0.4, ":": 0.4, ",": 0.3, "-": 0.15}
_VOICE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_+-]{0,63}")
_VERSION_RE: Final = re.compile(r"text-to-speech:\s*(\S+)")


class TTSUnavailable(RuntimeError):
    """espeak-ng is not installed (or not executable). Nothing can be rendered on this host until
    it is: not a content problem, do not dead-letter; let the worker fail so it is fixed."""


class TTSRenderError(RuntimeError):
    """espeak-ng ran but produced no usable audio (non-zero exit, unknown voice, timeout, empty or
    unreadable WAV). The message carries espeak-ng's stderr."""


@dataclass(frozen=True)
class RenderedAudio:
    """A rendered (or reused) WAV: 22,050 Hz mono 16-bit as espeak-ng writes it."""

    path: Path
    sha256: str
    duration_s: float
    voice: str
    speed_wpm: int
    cache_key: str
    cache_hit: bool


def _executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise TTSUnavailable(
            f"{name!r} not found on PATH: install espeak-ng (Debian/Ubuntu: apt-get install espeak-ng)"
        )
    return found


@functools.lru_cache(maxsize=8)
def espeak_version(executable: str = "espeak-ng") -> str:
    """The espeak-ng version string ("1.51"), part of every cache key. Cached per executable for
    the life of the process; raises ``TTSUnavailable`` if it is missing."""
    path = _executable(executable)
    try:
        done = subprocess.run([path, "--version"], capture_output=True, timeout=30, check=False)
    except OSError as exc:
        raise TTSUnavailable(f"cannot run {path}: {exc}") from exc
    out = done.stdout.decode("utf-8", "replace").strip()
    if done.returncode != 0 or not out:
        raise TTSUnavailable(f"{path} --version failed ({done.returncode}): {done.stderr!r}")
    m = _VERSION_RE.search(out)
    return m.group(1) if m else out.splitlines()[0]


def cache_key(spoken: str, *, voice: str, speed_wpm: int, version: str, ssml_pauses: bool) -> str:
    """sha256 (hex) of everything that decides the audio. ``spoken`` is the normalised text."""
    material = json.dumps([_KEY_FORMAT, spoken, voice, speed_wpm, version, ssml_pauses], ensure_ascii=False)
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _espeak_input(spoken: str, ssml_pauses: bool) -> str:
    if not ssml_pauses:
        return spoken
    # Escaped, so a "<" or "&" in a bulletin is read as text, never parsed as markup.
    paragraphs = [escape(p) for p in spoken.split("\n")]
    pause = f' <break time="{PARAGRAPH_BREAK_MS}ms"/> '
    return f"<speak>{pause.join(paragraphs)}</speak>"


def _wav_facts(path: Path) -> tuple[str, float]:
    """(sha256, duration in seconds from the header). Raises ``wave.Error``/``EOFError``/``OSError``
    if the file is not a readable WAV."""
    with wave.open(str(path), "rb") as w:
        frames, rate = w.getnframes(), w.getframerate()
    if frames <= 0 or rate <= 0:
        raise wave.Error(f"{path}: no audio frames")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 16), b""):
            digest.update(chunk)
    return digest.hexdigest(), frames / rate


def render_audio(
    text: str,
    *,
    voice: str = "vi",
    speed_wpm: int = 150,
    cache_dir: Path,
    ssml_pauses: bool = True,
    executable: str = "espeak-ng",
    timeout_s: float = 600.0,
) -> RenderedAudio:
    """Speak ``text`` (written form; it is normalised here) into a cached WAV.

    ``voice``: an espeak-ng voice (``vi``, ``vi-vn-x-central``, ``vi-vn-x-south``);
    ``speed_wpm``: espeak-ng ``-s`` (80-450); ``ssml_pauses``: paragraphs are separated by an
    explicit ``PARAGRAPH_BREAK_MS`` pause (SSML mode, ``-m``).

    Raises ``ValueError`` (bad voice name or speed), ``InvalidContent`` (nothing to speak),
    ``TTSUnavailable`` (no espeak-ng), ``TTSRenderError`` (espeak-ng failed).
    """
    if not _VOICE_RE.fullmatch(voice):
        raise ValueError(f"not an espeak-ng voice name: {voice!r}")
    if not MIN_SPEED_WPM <= speed_wpm <= MAX_SPEED_WPM:
        raise ValueError(f"speed_wpm must be {MIN_SPEED_WPM}-{MAX_SPEED_WPM}, got {speed_wpm}")
    spoken = normalize(text)
    if not any(ch.isalpha() for ch in spoken):
        raise InvalidContent("nothing to speak: the text has no words after normalisation")
    binary = _executable(executable)
    version = espeak_version(executable)
    key = cache_key(spoken, voice=voice, speed_wpm=speed_wpm, version=version, ssml_pauses=ssml_pauses)
    target = Path(cache_dir).resolve() / key[:2] / f"{key}.wav"

    if target.exists():
        try:
            digest, duration = _wav_facts(target)
        except (wave.Error, EOFError):
            pass  # a damaged entry (disk trouble, manual edit): render it again over the top
        else:
            return RenderedAudio(target, digest, duration, voice, speed_wpm, key, cache_hit=True)

    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{key}.", suffix=".wav.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        argv = [binary, "-v", voice, "-s", str(speed_wpm), "-w", str(tmp)]
        if ssml_pauses:
            argv.append("-m")
        argv.append("--stdin")
        try:
            done = subprocess.run(
                argv,
                input=_espeak_input(spoken, ssml_pauses).encode("utf-8"),
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TTSRenderError(f"espeak-ng took longer than {timeout_s}s ({len(spoken)} characters)") from exc
        stderr = done.stderr.decode("utf-8", "replace").strip()
        if done.returncode != 0:
            raise TTSRenderError(f"espeak-ng exited {done.returncode} (voice {voice!r}): {stderr}")
        try:
            digest, duration = _wav_facts(tmp)
        except (wave.Error, EOFError) as exc:
            raise TTSRenderError(f"espeak-ng wrote no usable WAV: {exc}; stderr: {stderr}") from exc
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return RenderedAudio(target, digest, duration, voice, speed_wpm, key, cache_hit=False)


def estimate_duration_s(text: str, speed_wpm: int, *, paragraph_pause_s: float = PARAGRAPH_BREAK_MS / 1000) -> float:
    """An *estimate* of how long espeak-ng takes to say ``text`` at ``speed_wpm``: syllables over
    the measured rate, plus the pauses at punctuation and paragraph breaks.

    Pass the spoken form (``normalize`` output): Vietnamese writes one syllable per
    space-separated token, but "7h30" is five syllables. Good for scheduling and sanity checks
    (within tens of percent of the rendered length); the WAV header is the truth.
    """
    if speed_wpm <= 0:
        raise ValueError(f"speed_wpm must be positive, got {speed_wpm}")
    syllables = sum(1 for token in text.split() if any(ch.isalnum() for ch in token))
    rate = _SYLLABLES_PER_WORD * speed_wpm / 60
    pauses = sum(_PAUSES_AT_150_S.get(ch, 0.0) for ch in text if ch != "-")
    pauses += _PAUSES_AT_150_S["-"] * len(re.findall(r"(?<= )-(?= )", text))
    paragraphs = sum(1 for line in text.split("\n") if line.strip())
    return syllables / rate + pauses * 150 / speed_wpm + max(paragraphs - 1, 0) * paragraph_pause_s
