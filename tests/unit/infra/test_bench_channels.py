"""The pipeline bench runs every channel: the loudspeaker's inclusion test looks for its adapter and
its emulator where they live (a re-home once made it drop the channel silently)."""

from __future__ import annotations

from bench.pipeline import loudspeaker_status


def test_the_loudspeaker_channel_is_included_in_the_pipeline_bench() -> None:
    assert loudspeaker_status() == (True, "included")
    assert loudspeaker_status({"graph": {}, "zalo": {}})[0] is False  # the emulators must serve it
