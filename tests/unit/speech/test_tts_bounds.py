"""The bound on speech: no text yields audio longer than ``longest_speech_s``, espeak-ng is stopped
past it or after its timeout, and the audio never passes through Python.

These run the real espeak-ng where the behaviour is espeak-ng's (how long a text is spoken) and a
fake one where it is ours (stopping a synthesiser that writes or hangs forever)."""

from __future__ import annotations

import inspect
import stat
import sys
import time
import tracemalloc
from pathlib import Path

import pytest

from consumers.loudspeaker import tts
from consumers.loudspeaker.tts import (
    DEFAULT_SPEED_WPM,
    LARGEST_WAV_BYTES,
    LONGEST_SPEECH_S,
    MAX_SPEECH_TEXT_CHARS,
    MIN_SPEED_WPM,
    SYNTH_TIMEOUT_S,
    TTSRenderError,
    longest_speech_s,
    max_wav_bytes,
    render_audio,
    speakable,
)
from schemas.errors import InvalidContent
from schemas.settings import Settings
from schemas.windows import DEFAULT_WINDOWS, Window


def seed_text(chars: int, shared_dir: Path) -> str:
    """Real newsroom Vietnamese (the seed article, repeated), cut at a word to at most ``chars``."""
    seed = (shared_dir / "context" / "seed-article-vi.txt").read_text(encoding="utf-8")
    text = ("\n\n".join([seed] * (chars // len(seed) + 1)))[:chars]
    return text[: text.rfind(" ")]


# --------------------------------------------------------------------------------------------
# The constants
# --------------------------------------------------------------------------------------------


def test_the_longest_speech_is_derived_from_the_text_bound_and_the_speed() -> None:
    assert DEFAULT_SPEED_WPM == Settings.from_env({}).loudspeaker_speed_wpm
    assert LONGEST_SPEECH_S == longest_speech_s(DEFAULT_SPEED_WPM) == 2500.0
    # Twice as fast, half as long; the slowest speed gives the largest file Lantoa writes.
    assert longest_speech_s(300) == LONGEST_SPEECH_S / 2
    assert LARGEST_WAV_BYTES == max_wav_bytes(longest_speech_s(MIN_SPEED_WPM))
    assert max_wav_bytes(1.0) == 44 + 2 * 22_051
    with pytest.raises(ValueError):
        longest_speech_s(0)


def test_the_longest_speech_fits_the_longest_default_window() -> None:
    # A bulletin longer than every window of its zone never airs: the bound keeps inside the
    # default 45-minute windows (zones may configure others; the scheduler refuses what never fits).
    assert LONGEST_SPEECH_S <= max(Window.parse(w).nominal_s for w in DEFAULT_WINDOWS)


def test_the_timeout_leaves_room_for_the_longest_speech() -> None:
    # espeak-ng renders ~500x real time here: the longest speech takes ~5 s, the timeout is 120 s.
    assert LONGEST_SPEECH_S / 500 * 20 <= SYNTH_TIMEOUT_S <= 600


# --------------------------------------------------------------------------------------------
# At the bound and past it, with the real espeak-ng
# --------------------------------------------------------------------------------------------


def test_the_longest_accepted_text_is_spoken_within_the_bound_without_python_holding_it(
    tmp_path: Path, shared_dir: Path
) -> None:
    text = seed_text(MAX_SPEECH_TEXT_CHARS, shared_dir)
    assert MAX_SPEECH_TEXT_CHARS - 20 < len(text) <= MAX_SPEECH_TEXT_CHARS
    tracemalloc.start()
    try:
        audio = render_audio(text, cache_dir=tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    size = audio.path.stat().st_size
    # Near the bound, under it: the calibration leaves headroom for slower-spoken texts.
    assert LONGEST_SPEECH_S * 0.6 < audio.duration_s <= LONGEST_SPEECH_S
    assert abs(size - max_wav_bytes(audio.duration_s)) <= 4
    # ~88 MB of audio; Python held a few chunks of it at most (and the text, its normal forms).
    assert peak < 8_000_000 < size / 10


def test_one_character_past_the_text_bound_is_refused_before_espeak_runs(tmp_path: Path) -> None:
    text = "a " * (MAX_SPEECH_TEXT_CHARS // 2) + "b"
    assert len(text) == MAX_SPEECH_TEXT_CHARS + 1
    refused = r"text too long to speak: 30,001 characters.*30,000.*MAX_SPEECH_TEXT_CHARS"
    with pytest.raises(InvalidContent, match=refused):
        render_audio(text, cache_dir=tmp_path, executable="espeak-ng-that-is-not-installed")
    assert not list(tmp_path.iterdir())


def test_text_whose_speech_runs_past_the_bound_is_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A short text bound makes the speech bound 25 s at 150 wpm. 299 one-letter syllables (under the
    # text bound) take espeak-ng ~90 s to say: it is stopped at the bound's size, nothing is kept.
    monkeypatch.setattr(tts, "MAX_SPEECH_TEXT_CHARS", 300)
    assert longest_speech_s(150) == 25.0
    text = ("a " * 150)[:299]
    started = time.monotonic()
    # Stopped by the size watcher, or (on a loaded machine espeak-ng may finish between two looks)
    # by the length check of the finished file: refused with the bound either way.
    with pytest.raises(
        InvalidContent,
        match=r"speech too long: (espeak-ng stopped at [0-9,]+ bytes.*at most 25 s"
        r"|[0-9]+ s at 150 wpm, more than the 25 s)",
    ):
        render_audio(text, cache_dir=tmp_path)
    assert time.monotonic() - started < 10
    assert not [p for p in tmp_path.rglob("*") if p.is_file()], "the partial WAV is removed"

    # At the bound's edge the other way: a text that fits is spoken whole.
    fits = render_audio("Xin chào bà con", cache_dir=tmp_path)
    assert 0 < fits.duration_s <= 25.0


def test_a_cached_file_longer_than_the_bound_is_not_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = render_audio("Bão số năm đang vào bờ, bà con không ra khơi.", cache_dir=tmp_path)
    # Rendered before a smaller bound (an upgrade that lowered it): refused, never handed on.
    monkeypatch.setattr(tts, "_WRITTEN_CHARS_PER_S_AT_150", 2 * MAX_SPEECH_TEXT_CHARS / first.duration_s)
    assert longest_speech_s(150) == pytest.approx(first.duration_s / 2)
    with pytest.raises(InvalidContent, match=r"speech too long: [0-9] s at 150 wpm, more than the [0-9] s"):
        render_audio("Bão số năm đang vào bờ, bà con không ra khơi.", cache_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Synthesisers that never stop, with a fake espeak-ng
# --------------------------------------------------------------------------------------------

ENDLESS = """\
#!{python}
import os, sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("eSpeak NG text-to-speech: 9.99-endless  Data at: /nowhere")
    sys.exit(0)
with open({pidfile!r}, "w") as f:
    f.write(str(os.getpid()))
sys.stdin.buffer.read()
with wave.open(args[args.index("-w") + 1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
    while True:
        w.writeframes(bytes(1 << 16))
"""
# A shell starts in milliseconds, so it has written its pid long before the timeout.
HANGING = """\
#!/bin/sh
if [ "$1" = "--version" ]; then echo "eSpeak NG text-to-speech: 9.99-hang  Data at: /nowhere"; exit 0; fi
echo $$ > {pidfile}
exec sleep 3600
"""


def fake(tmp_path: Path, kind: str) -> tuple[Path, Path]:
    pidfile = tmp_path / f"{kind}.pid"
    exe = tmp_path / f"espeak-{kind}"
    script = ENDLESS if kind == "endless" else HANGING
    exe.write_text(script.format(python=sys.executable, pidfile=str(pidfile)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, pidfile


def gone(pidfile: Path) -> bool:
    pid = int(pidfile.read_text())
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"  # killed, not yet reaped by its parent: it is not running


def test_a_synthesiser_writing_forever_is_stopped_at_the_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tts, "MAX_SPEECH_TEXT_CHARS", 1200)  # 100 s at 150 wpm: ~4.4 MB
    exe, pidfile = fake(tmp_path, "endless")
    with pytest.raises(InvalidContent, match="speech too long"):
        render_audio("Xin chào", cache_dir=tmp_path / "cache", executable=str(exe))
    assert gone(pidfile)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_a_synthesiser_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    exe, pidfile = fake(tmp_path, "hang")
    started = time.monotonic()
    with pytest.raises(TTSRenderError, match=r"longer than 2 s"):
        render_audio("Xin chào", cache_dir=tmp_path / "cache", executable=str(exe), timeout_s=2.0)
    assert time.monotonic() - started < 8
    assert gone(pidfile)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


def test_the_default_timeout_is_the_named_one() -> None:
    assert inspect.signature(render_audio).parameters["timeout_s"].default == SYNTH_TIMEOUT_S


# --------------------------------------------------------------------------------------------
# speakable: what the emergency lane airs of a text longer than the bound
# --------------------------------------------------------------------------------------------


def test_a_text_at_the_bound_is_spoken_whole() -> None:
    text = "a" * MAX_SPEECH_TEXT_CHARS
    assert speakable(text) == (text, None)


def test_a_text_past_the_bound_is_cut_at_a_paragraph_then_a_sentence_then_a_word() -> None:
    paragraphs = "Bão số năm vào bờ. Gió mạnh.\n" + "x" * 65 + "\nphần cuối"
    assert len(paragraphs) == 104
    spoken, why = speakable(paragraphs, 100)
    assert spoken == "Bão số năm vào bờ. Gió mạnh.\n" + "x" * 65
    assert why == "spoken text shortened from 104 to 94 characters (MAX_SPEECH_TEXT_CHARS 100)"
    spoken, why = speakable("Câu một dài. " * 10, 100)
    assert spoken.endswith("dài.") and len(spoken) <= 100 and why and "shortened from 130" in why
    spoken, _ = speakable("từ " * 50, 100)
    assert spoken == ("từ " * 33).rstrip()
    spoken, _ = speakable("x" * 101, 100)
    assert spoken == "x" * 100


def test_every_cut_is_within_the_bound(shared_dir: Path) -> None:
    text = seed_text(3 * MAX_SPEECH_TEXT_CHARS, shared_dir)
    spoken, why = speakable(text)
    assert len(spoken) <= MAX_SPEECH_TEXT_CHARS and text.startswith(spoken)
    assert len(spoken) > MAX_SPEECH_TEXT_CHARS * 0.9 and why and f"{len(text):,}" in why


def test_every_bulletin_intake_accepts_is_within_the_speech_bound() -> None:
    # The loudspeaker speaks headline + "\n\n" + summary (streams/articles/render.py): the intake caps must
    # never let through a bulletin the synthesiser then refuses.
    from schemas.article import HEADLINE_MAX_CHARS, SUMMARY_MAX_CHARS

    assert HEADLINE_MAX_CHARS + 2 + SUMMARY_MAX_CHARS <= tts.MAX_SPEECH_TEXT_CHARS
