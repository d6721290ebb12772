"""The loudspeaker's audio bounds: an over-long bulletin is refused once for all its zones, an
over-long emergency airs its start (with the reason), and the archive is never handed a file
larger than any speech Lantoa synthesises."""

from __future__ import annotations

import asyncio
import stat
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from consumers.delivery.errors import PermanentDeliveryError
from consumers.loudspeaker import tts
from consumers.loudspeaker.audio import Audio, AudioRenderer, audio_for
from consumers.loudspeaker.emergency import EmergencyPlan, EmergencyPusher
from consumers.loudspeaker.tts import LARGEST_WAV_BYTES
from schemas.errors import InvalidContent

COUNTING = """\
#!{python}
import sys, wave
args = sys.argv[1:]
if args == ["--version"]:
    print("eSpeak NG text-to-speech: 9.99-count  Data at: /nowhere")
    sys.exit(0)
sys.stdin.buffer.read()
with open({log!r}, "a") as log:
    log.write("run\\n")
with wave.open(args[args.index("-w") + 1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(22050)
    w.writeframes(bytes(2 * 22050 * 60))  # a minute of audio, whatever the text
"""


def counting_espeak(tmp_path: Path) -> tuple[Path, Path]:
    log = tmp_path / "runs.log"
    exe = tmp_path / "espeak-count"
    exe.write_text(COUNTING.format(python=sys.executable, log=str(log)))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe, log


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


async def test_a_bulletin_past_the_bound_is_refused_once_for_all_its_zones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 36 s of speech at most: the fake's minute is past it.
    monkeypatch.setattr(tts, "MAX_SPEECH_TEXT_CHARS", 432)
    exe, log = counting_espeak(tmp_path)
    renderer = AudioRenderer(tmp_path / "cache", "https://x/audio", executable=str(exe))

    results = await asyncio.gather(
        *(renderer.render("Bản tin dài") for _ in range(50)), return_exceptions=True
    )
    later = await asyncio.gather(renderer.render("Bản tin dài"), return_exceptions=True)

    assert all(isinstance(r, InvalidContent) and "speech too long" in str(r) for r in [*results, *later])
    assert runs(log) == 1, "the refusal is remembered: 3,321 zones must not run espeak-ng 3,321 times"
    assert renderer.renders == 0


async def test_a_text_past_the_character_bound_never_reaches_espeak(tmp_path: Path) -> None:
    exe, log = counting_espeak(tmp_path)
    renderer = AudioRenderer(tmp_path / "cache", "https://x/audio", executable=str(exe))
    with pytest.raises(InvalidContent, match="MAX_SPEECH_TEXT_CHARS"):
        await renderer.render("x" * (tts.MAX_SPEECH_TEXT_CHARS + 1))
    assert runs(log) == 0


def _indexed(tmp_path: Path, size: int) -> Path:
    renderer = AudioRenderer(tmp_path, "https://x/audio")
    wav = tmp_path / "ab" / "abcdef.wav"
    wav.parent.mkdir(exist_ok=True)
    with wav.open("wb") as f:
        f.truncate(size)  # sparse: no disk used
    renderer.index("urn:x", 1, Audio("https://x/audio/ab/abcdef.wav", "ab/abcdef.wav", 1.0, "00"))
    return wav


def test_the_archive_is_handed_audio_up_to_the_largest_lantoa_writes(tmp_path: Path) -> None:
    wav = _indexed(tmp_path, LARGEST_WAV_BYTES)
    assert audio_for(tmp_path)("urn:x", 1) == wav.resolve()


def test_a_file_past_the_largest_speech_is_refused_with_its_reason(tmp_path: Path) -> None:
    _indexed(tmp_path, LARGEST_WAV_BYTES + 1)
    with pytest.raises(
        PermanentDeliveryError, match=r"more than the longest speech Lantoa synthesises"
    ) as caught:
        audio_for(tmp_path)("urn:x", 1)
    assert caught.value.code == "AudioTooLong" and caught.value.alert


class RecordingRenderer(AudioRenderer):
    def __init__(self, cache_dir: Path) -> None:
        super().__init__(cache_dir, "https://x/audio")
        self.texts: list[str] = []

    async def render(self, text: str) -> Audio:
        self.texts.append(text)
        return Audio("https://x/audio/ab/ab.wav", "ab/ab.wav", 12.0, "00")


class AcceptingPlatform:
    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []

    async def post_emergency(self, body: dict[str, Any]) -> dict[str, Any]:
        self.bodies.append(body)
        return {"preempted_clusters": 1}


def emergency(text: str) -> EmergencyPlan:
    return EmergencyPlan(
        "cap-1",
        ("zone:42001",),
        text,
        datetime.now(UTC) + timedelta(hours=1),
        600.0,
        headline="Bão số 5",
    )


async def test_an_emergency_past_the_bound_airs_its_start_and_says_so(tmp_path: Path) -> None:
    renderer, platform = RecordingRenderer(tmp_path), AcceptingPlatform()
    pusher = EmergencyPusher(platform, renderer)  # type: ignore[arg-type]
    text = "Bà con sơ tán ngay. " * 2000  # 40,000 characters
    result = await pusher.push(emergency(text))
    [spoken] = renderer.texts
    assert len(spoken) <= tts.MAX_SPEECH_TEXT_CHARS and text.startswith(spoken) and spoken.endswith("ngay.")
    assert result.shortened and "shortened from 40,000" in result.shortened and platform.bodies

    within = await pusher.push(emergency("Bà con sơ tán ngay."))
    assert within.shortened is None and renderer.texts[-1] == "Bà con sơ tán ngay."
