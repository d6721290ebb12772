"""Offline Vietnamese text-to-speech with espeak-ng, content-addressed on disk.

``render_audio`` normalises the text (``schemas.speech.normalize``), derives a cache key from
what decides the audio (spoken text, voice, speed, pause mode, espeak-ng version) and renders
``<cache_dir>/<key[:2]>/<key>.wav`` once: a second call with the same inputs reuses the file
without running espeak-ng. Files are written to a temporary name in the same directory and moved
into place with ``os.replace``, so a reader never sees half a WAV and two workers rendering the
same key at once both end with the same complete file.

The text reaches espeak-ng on stdin, never on the command line: a bulletin that starts with "-"
cannot be taken for an option, and no shell is involved.

Bounded: espeak-ng writes the WAV straight to its file (Python never holds the audio, it hashes
and measures the file in chunks); a text longer than ``MAX_SPEECH_TEXT_CHARS`` is refused before
it is normalised, and espeak-ng is stopped as soon as its file grows past the longest speech at
the configured speed (``longest_speech_s``) or it runs longer than ``SYNTH_TIMEOUT_S``. So no
text, however it expands when spoken, yields a file longer than ``longest_speech_s(speed_wpm)``.

Errors: ``TTSUnavailable`` (espeak-ng is not installed: an operations problem, the worker should
crash and be fixed), ``TTSRenderError`` (espeak-ng ran and failed: unknown voice, timeout, no
audio), ``InvalidContent`` (nothing speakable in the text, or more than Lantoa speaks: retrying
cannot help),
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
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from xml.sax.saxutils import escape

from schemas.errors import InvalidContent
from schemas.speech.duration import PARAGRAPH_BREAK_MS
from schemas.speech.normalize import normalize

__all__ = [
    "DEFAULT_SPEED_WPM",
    "LARGEST_WAV_BYTES",
    "LONGEST_SPEECH_S",
    "MAX_SPEECH_TEXT_CHARS",
    "SYNTH_TIMEOUT_S",
    "RenderedAudio",
    "TTSRenderError",
    "TTSUnavailable",
    "cache_key",
    "espeak_version",
    "longest_speech_s",
    "max_wav_bytes",
    "render_audio",
    "speakable",
]

# Bumped whenever the way text becomes espeak-ng input changes, so old cache entries stop matching.
_KEY_FORMAT: Final = "lantoa-tts-1"
MIN_SPEED_WPM: Final = 80
MAX_SPEED_WPM: Final = 450
DEFAULT_SPEED_WPM: Final = 150  # LANTOA_LOUDSPEAKER_SPEED_WPM when it is not set

# -- the longest speech Lantoa synthesises ---------------------------------------------------
# A second line of defence behind the intake caps (schemas/article.py): an article's loudspeaker
# text is headline + summary, and the longest one intake accepts must stay at or under this, or
# accepted articles would be refused here (issue 14's caps, 500 + 8,000, make it 8,502). The
# margin is for CAP alerts, whose description and instruction are bounded only by the alert's
# size, and corrections; 30,000 still speaks within a 45-minute window at the default speed.
# Written characters, before normalisation (which expands numbers and abbreviations), so
# normalising is bounded too.
MAX_SPEECH_TEXT_CHARS: Final = 30_000
# Measured (espeak-ng 1.51, voice vi, -s 150, SSML pauses): the seed article and the sample
# bulletins and bodies were spoken at 12.2-17.1 written characters a second (15.0 for 10,481
# characters in 698 s). The slowest, rounded down, so every text under the cap fits the bound;
# the rate grows in proportion to -s.
_WRITTEN_CHARS_PER_S_AT_150: Final = 12.0
# espeak-ng writes 22,050 Hz mono 16-bit PCM after a 44-byte RIFF header.
_WAV_HEADER_BYTES: Final = 44
_WAV_FRAMES_PER_S: Final = 22_050


def longest_speech_s(speed_wpm: int) -> float:
    """The longest speech Lantoa synthesises at ``speed_wpm`` (espeak-ng ``-s``), in seconds:
    ``MAX_SPEECH_TEXT_CHARS`` at the slowest measured rate. espeak-ng is stopped past it."""
    if speed_wpm <= 0:
        raise ValueError(f"speed_wpm must be positive, got {speed_wpm}")
    return MAX_SPEECH_TEXT_CHARS / (_WRITTEN_CHARS_PER_S_AT_150 * speed_wpm / 150)


def max_wav_bytes(seconds: float) -> int:
    """The size of espeak-ng's WAV of ``seconds`` of speech."""
    return _WAV_HEADER_BYTES + int(seconds * _WAV_FRAMES_PER_S + 1) * 2


# 2,500 s (41 min 40 s) at the default speed: fits the longest default broadcast window (45 min).
LONGEST_SPEECH_S: Final = longest_speech_s(DEFAULT_SPEED_WPM)
# The largest WAV Lantoa writes at any configured speed (the slowest, 80 wpm: 4,688 s, ~207 MB).
LARGEST_WAV_BYTES: Final = max_wav_bytes(longest_speech_s(MIN_SPEED_WPM))
# espeak-ng renders ~500x faster than real time here (698 s of speech in 1.3 s on 2 busy cores),
# so the longest speech takes ~5 s; 120 s leaves room for a host 20x slower before it counts as
# a failure (TTSRenderError: retried), and a hung espeak-ng never holds a worker thread for long.
SYNTH_TIMEOUT_S: Final = 120.0
# How often the running espeak-ng's file is measured against the bound (~1 MB of audio at 500x).
_WATCH_S: Final = 0.05

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


def speakable(text: str, limit: int | None = None) -> tuple[str, str | None]:
    """``text`` cut to what Lantoa speaks, for the one caller that must air something rather than
    be refused (the emergency lane): (text, None) when it is within ``limit`` characters
    (``MAX_SPEECH_TEXT_CHARS``), else (its start up to the last paragraph or sentence end, or
    word, within the limit; the reason, for the receipt). Pure."""
    limit = MAX_SPEECH_TEXT_CHARS if limit is None else limit
    if len(text) <= limit:
        return text, None
    head = text[:limit]
    for marks in (("\n",), (". ", "! ", "? ", ".\n"), (" ",)):
        cut = max(head.rfind(m) for m in marks)
        if cut > limit // 2:
            head = head[: cut + 1]
            break
    head = head.rstrip()
    return head, (
        f"spoken text shortened from {len(text):,} to {len(head):,} characters "
        f"(MAX_SPEECH_TEXT_CHARS {limit:,})"
    )


def render_audio(
    text: str,
    *,
    voice: str = "vi",
    speed_wpm: int = 150,
    cache_dir: Path,
    ssml_pauses: bool = True,
    executable: str = "espeak-ng",
    timeout_s: float = SYNTH_TIMEOUT_S,
) -> RenderedAudio:
    """Speak ``text`` (written form; it is normalised here) into a cached WAV.

    ``voice``: an espeak-ng voice (``vi``, ``vi-vn-x-central``, ``vi-vn-x-south``);
    ``speed_wpm``: espeak-ng ``-s`` (80-450); ``ssml_pauses``: paragraphs are separated by an
    explicit ``PARAGRAPH_BREAK_MS`` pause (SSML mode, ``-m``).

    Raises ``ValueError`` (bad voice name or speed), ``InvalidContent`` (nothing to speak; text
    longer than ``MAX_SPEECH_TEXT_CHARS``; speech longer than ``longest_speech_s(speed_wpm)``),
    ``TTSUnavailable`` (no espeak-ng), ``TTSRenderError`` (espeak-ng failed or ran past
    ``timeout_s``).
    """
    if not _VOICE_RE.fullmatch(voice):
        raise ValueError(f"not an espeak-ng voice name: {voice!r}")
    if not MIN_SPEED_WPM <= speed_wpm <= MAX_SPEED_WPM:
        raise ValueError(f"speed_wpm must be {MIN_SPEED_WPM}-{MAX_SPEED_WPM}, got {speed_wpm}")
    longest = longest_speech_s(speed_wpm)
    if len(text) > MAX_SPEECH_TEXT_CHARS:
        raise InvalidContent(
            f"text too long to speak: {len(text):,} characters, more than the {MAX_SPEECH_TEXT_CHARS:,} "
            f"Lantoa synthesises (MAX_SPEECH_TEXT_CHARS: at most {longest:,.0f} s of speech at {speed_wpm} wpm)"
        )
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
            _refuse_longer(duration, longest, speed_wpm)  # cached before the bound: still not served
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
        returncode, stderr = _run_bounded(
            argv,
            _espeak_input(spoken, ssml_pauses).encode("utf-8"),
            tmp,
            max_bytes=max_wav_bytes(longest),
            timeout_s=timeout_s,
            what=f"{len(spoken):,} spoken characters; at most {longest:,.0f} s of speech at {speed_wpm} wpm",
        )
        if returncode != 0:
            raise TTSRenderError(f"espeak-ng exited {returncode} (voice {voice!r}): {stderr}")
        try:
            digest, duration = _wav_facts(tmp)
        except (wave.Error, EOFError) as exc:
            raise TTSRenderError(f"espeak-ng wrote no usable WAV: {exc}; stderr: {stderr}") from exc
        _refuse_longer(duration, longest, speed_wpm)  # finished between two measurements, just past it
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return RenderedAudio(target, digest, duration, voice, speed_wpm, key, cache_hit=False)


def _run_bounded(
    argv: list[str], data: bytes, out: Path, *, max_bytes: int, timeout_s: float, what: str
) -> tuple[int, str]:
    """Run espeak-ng (``argv``, writing ``out``) with ``data`` on stdin; (exit status, stderr).

    Stops it (SIGKILL) as soon as ``out`` is larger than ``max_bytes`` (``InvalidContent``: the
    speech is longer than Lantoa synthesises, whatever the text) or it has run ``timeout_s``
    (``TTSRenderError``). Nothing of the audio passes through Python: stdout is discarded.
    """
    started = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    pending: bytes | None = data
    try:
        while True:
            try:
                _, err = proc.communicate(pending, timeout=_WATCH_S)
                return proc.returncode, err.decode("utf-8", "replace").strip()
            except subprocess.TimeoutExpired:
                pending = None  # communicate() goes on feeding what it was given first
            try:
                size = out.stat().st_size
            except FileNotFoundError:
                size = 0
            if size > max_bytes:
                raise InvalidContent(
                    f"speech too long: espeak-ng stopped at {size:,} bytes of audio, past the "
                    f"longest Lantoa synthesises ({what})"
                )
            if time.monotonic() - started > timeout_s:
                raise TTSRenderError(f"espeak-ng took longer than {timeout_s:g} s ({what})")
    finally:
        if proc.returncode is None:  # stopped by us (or interrupted): never leave it running
            proc.kill()
            proc.communicate()


def _refuse_longer(duration_s: float, longest_s: float, speed_wpm: int) -> None:
    if duration_s > longest_s:
        raise InvalidContent(
            f"speech too long: {duration_s:,.0f} s at {speed_wpm} wpm, more than the {longest_s:,.0f} s "
            "Lantoa synthesises (longest_speech_s)"
        )
