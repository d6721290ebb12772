"""espeak-ng rendering. These run the real espeak-ng (CI installs it); a missing binary is a
failure, not a skip. A fake executable checks exactly what is passed on argv and stdin."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import sys
import wave
from pathlib import Path

import pytest

from consumers.loudspeaker.tts import (
    TTSRenderError,
    TTSUnavailable,
    espeak_version,
    render_audio,
)
from schemas.errors import InvalidContent
from schemas.speech.duration import estimate_duration_s
from schemas.speech.normalize import normalize

SENTENCE = "Bão số 5 di chuyển theo hướng Tây, tốc độ 15-20 km/h. UBND các xã khẩn trương sơ tán người dân."


def test_espeak_ng_is_installed() -> None:
    assert shutil.which("espeak-ng"), "espeak-ng is required (Debian/Ubuntu: apt-get install espeak-ng)"
    assert espeak_version()


def test_render_writes_a_22050_hz_mono_16_bit_wav(tmp_path: Path) -> None:
    audio = render_audio(SENTENCE, cache_dir=tmp_path)

    assert audio.path == tmp_path.resolve() / audio.cache_key[:2] / f"{audio.cache_key}.wav"
    assert not audio.cache_hit
    with wave.open(str(audio.path), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (22050, 1, 2)
        assert audio.duration_s == pytest.approx(w.getnframes() / 22050)
    assert audio.sha256 == hashlib.sha256(audio.path.read_bytes()).hexdigest()
    assert (audio.voice, audio.speed_wpm) == ("vi", 150)
    assert [p.name for p in audio.path.parent.iterdir()] == [audio.path.name], "no temporary file left"


@pytest.mark.parametrize("speed", [100, 150, 250])
def test_duration_is_within_a_factor_two_of_the_estimate(tmp_path: Path, speed: int) -> None:
    audio = render_audio(SENTENCE, cache_dir=tmp_path, speed_wpm=speed)
    estimate = estimate_duration_s(normalize(SENTENCE), speed)
    assert estimate / 2 <= audio.duration_s <= estimate * 2


def test_second_render_is_a_cache_hit(tmp_path: Path) -> None:
    first = render_audio(SENTENCE, cache_dir=tmp_path)
    mtime = first.path.stat().st_mtime_ns

    second = render_audio(SENTENCE, cache_dir=tmp_path)

    assert second.cache_hit
    assert second.path == first.path
    assert second.path.stat().st_mtime_ns == mtime
    assert (second.sha256, second.duration_s, second.cache_key) == (
        first.sha256,
        first.duration_s,
        first.cache_key,
    )


def test_the_key_is_the_spoken_form(tmp_path: Path) -> None:
    written = render_audio("Bão số 5 lúc 7h30", cache_dir=tmp_path)
    spoken = render_audio("Bão số năm lúc bảy giờ ba mươi phút", cache_dir=tmp_path)
    assert spoken.cache_hit and spoken.path == written.path


def test_speed_voice_and_pause_mode_change_the_key(tmp_path: Path) -> None:
    base = render_audio(SENTENCE, cache_dir=tmp_path)
    faster = render_audio(SENTENCE, cache_dir=tmp_path, speed_wpm=180)
    southern = render_audio(SENTENCE, cache_dir=tmp_path, voice="vi-vn-x-south")
    plain = render_audio(SENTENCE, cache_dir=tmp_path, ssml_pauses=False)

    keys = {base.cache_key, faster.cache_key, southern.cache_key, plain.cache_key}
    assert len(keys) == 4
    assert not faster.cache_hit and faster.path != base.path
    assert faster.duration_s < base.duration_s


def test_rendering_is_deterministic(tmp_path: Path) -> None:
    a = render_audio(SENTENCE, cache_dir=tmp_path / "a")
    b = render_audio(SENTENCE, cache_dir=tmp_path / "b")
    assert a.sha256 == b.sha256


def test_paragraph_breaks_add_pauses(tmp_path: Path) -> None:
    text = "Thông báo khẩn\n\nBão số năm đang vào bờ\n\nBà con không ra khơi"
    with_breaks = render_audio(text, cache_dir=tmp_path, ssml_pauses=True)
    without = render_audio(text, cache_dir=tmp_path, ssml_pauses=False)
    assert with_breaks.duration_s > without.duration_s + 0.5


@pytest.mark.parametrize(
    "text",
    [
        "-w /tmp/x.wav --help",
        "--version",
        "-v en hello",
        "a & b < c > d <break time='9s'/>",
        "`rm -rf /`; $(id)",
    ],
)
def test_hostile_text_is_only_spoken(tmp_path: Path, text: str) -> None:
    audio = render_audio(f"{text} Xin chào", cache_dir=tmp_path)
    assert audio.duration_s > 0.3
    assert audio.duration_s < 10, "an SSML break from the text must not be honoured"
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted([audio.path.parent.name, audio.path.name])


FAKE_ESPEAK = """\
#!{python}
import json, sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("eSpeak NG text-to-speech: 9.99-fake  Data at: /nowhere")
    sys.exit(0)
stdin = sys.stdin.buffer.read().decode("utf-8")
out = args[args.index("-w") + 1]
with wave.open(out, "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050); w.writeframes(b"\\0\\0" * 2205)
with open({log!r}, "a") as log:
    log.write(json.dumps({{"argv": args, "stdin": stdin}}) + "\\n")
"""


@pytest.fixture
def fake_espeak(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "calls.jsonl"
    exe = tmp_path / "fake-espeak-ng"
    exe.write_text(FAKE_ESPEAK.format(python=sys.executable, log=str(log)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, log


def _calls(log: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_text_goes_on_stdin_never_on_argv(tmp_path: Path, fake_espeak: tuple[Path, Path]) -> None:
    exe, log = fake_espeak
    text = "-v en --help Bão số 5 & <gió>"
    audio = render_audio(text, cache_dir=tmp_path / "cache", executable=str(exe), speed_wpm=160, voice="vi")

    [call] = _calls(log)
    argv = call["argv"]
    assert isinstance(argv, list)
    assert argv[:4] == ["-v", "vi", "-s", "160"]
    assert argv[4] == "-w" and argv[5].endswith(".wav.tmp")
    assert argv[6:] == ["-m", "--stdin"]
    stdin = call["stdin"]
    assert isinstance(stdin, str)
    assert stdin.startswith("<speak>") and stdin.endswith("</speak>")
    assert "help Bão số năm và gió" in stdin
    assert not any("Bão" in a or "help" in a for a in argv)
    assert audio.duration_s == pytest.approx(0.1)


def test_plain_mode_sends_plain_text(tmp_path: Path, fake_espeak: tuple[Path, Path]) -> None:
    exe, log = fake_espeak
    render_audio("Dòng một\n\nDòng hai", cache_dir=tmp_path / "cache", executable=str(exe), ssml_pauses=False)
    [call] = _calls(log)
    argv = call["argv"]
    assert isinstance(argv, list) and argv[-1] == "--stdin" and "-m" not in argv
    assert call["stdin"] == "Dòng một.\nDòng hai"


def test_cache_hit_does_not_run_espeak(tmp_path: Path, fake_espeak: tuple[Path, Path]) -> None:
    exe, log = fake_espeak
    render_audio("Xin chào", cache_dir=tmp_path / "cache", executable=str(exe))
    render_audio("Xin chào", cache_dir=tmp_path / "cache", executable=str(exe))
    assert len(_calls(log)) == 1


def test_a_damaged_cache_entry_is_rendered_again(tmp_path: Path) -> None:
    first = render_audio(SENTENCE, cache_dir=tmp_path)
    first.path.write_bytes(b"not a wav")
    again = render_audio(SENTENCE, cache_dir=tmp_path)
    assert not again.cache_hit and again.sha256 == first.sha256


def test_missing_espeak_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TTSUnavailable, match="espeak-ng"):
        render_audio(SENTENCE, cache_dir=tmp_path, executable="espeak-ng-that-is-not-installed")


def test_unknown_voice_fails_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(TTSRenderError, match="voice"):
        render_audio(SENTENCE, cache_dir=tmp_path, voice="xx-no-such-voice")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("voice", ["", "-v", "vi en", "vi;rm", "../vi"])
def test_bad_voice_names_are_refused(tmp_path: Path, voice: str) -> None:
    with pytest.raises(ValueError):
        render_audio(SENTENCE, cache_dir=tmp_path, voice=voice)


@pytest.mark.parametrize("speed", [0, 79, 451, -150])
def test_bad_speeds_are_refused(tmp_path: Path, speed: int) -> None:
    with pytest.raises(ValueError):
        render_audio(SENTENCE, cache_dir=tmp_path, speed_wpm=speed)


@pytest.mark.parametrize("text", ["", "   ", "...", "( ) - ;"])
def test_nothing_to_speak_is_invalid_content(tmp_path: Path, text: str) -> None:
    with pytest.raises(InvalidContent):
        render_audio(text, cache_dir=tmp_path)


def test_estimate() -> None:
    spoken = normalize(SENTENCE)
    assert estimate_duration_s(spoken, 150) > estimate_duration_s(spoken, 300)
    assert estimate_duration_s("một hai ba bốn", 150) == pytest.approx(4 / (1.33 * 150 / 60))
    assert estimate_duration_s("một, hai. ba", 150) == pytest.approx(3 / (1.33 * 150 / 60) + 0.3 + 0.5)
    assert estimate_duration_s("một\nhai", 150) == pytest.approx(2 / (1.33 * 150 / 60) + 0.8)
    assert estimate_duration_s("", 150) == 0
    with pytest.raises(ValueError):
        estimate_duration_s("một", 0)
