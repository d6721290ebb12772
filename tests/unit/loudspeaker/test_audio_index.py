"""The archive finds the audio the loudspeaker channel rendered for an article version."""

from __future__ import annotations

from pathlib import Path

from consumers.loudspeaker.audio import Audio, AudioRenderer, article_audio_pointer, audio_for


def test_rendered_audio_is_found_by_article_version(tmp_path: Path) -> None:
    renderer = AudioRenderer(tmp_path, "https://x/audio")
    wav = tmp_path / "ab" / "abcdef.wav"
    wav.parent.mkdir()
    wav.write_bytes(b"RIFF....WAVE")
    renderer.index(
        "urn:lantoa:article:a", 2, Audio("https://x/audio/ab/abcdef.wav", "ab/abcdef.wav", 3.0, "00")
    )
    lookup = audio_for(tmp_path)
    assert lookup("urn:lantoa:article:a", 2) == wav.resolve()
    assert lookup("urn:lantoa:article:a", 1) is None  # not rendered for that version
    assert lookup("urn:lantoa:article:b", 2) is None


def test_a_pointer_outside_the_cache_is_ignored(tmp_path: Path) -> None:
    pointer = article_audio_pointer(tmp_path / "cache", "urn:x", 1)
    pointer.parent.mkdir(parents=True)
    (tmp_path / "secret.wav").write_bytes(b"x")
    pointer.write_text("../secret.wav")
    assert audio_for(tmp_path / "cache")("urn:x", 1) is None
