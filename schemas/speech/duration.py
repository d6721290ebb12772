"""How long a spoken text takes: the estimate the stream worker's window check
(streams/articles/bounds.py) and the loudspeaker adapter's scheduling share, so both sides of the
command topic agree on what fits a zone's window. Pure: the rendered WAV (consumers/loudspeaker/
tts.py) is the truth; this is within tens of percent of it."""

from __future__ import annotations

import re
from typing import Final

# The pause espeak-ng makes at a paragraph break in SSML mode (the synthesiser inserts it).
PARAGRAPH_BREAK_MS: Final = 800
# Measured with espeak-ng 1.51, voice vi: spoken syllables per minute ~ 1.33 x -s, and the pause
# espeak-ng makes at each mark at -s 150 (it shrinks roughly in proportion as the speed grows).
_SYLLABLES_PER_WORD: Final = 1.33
_PAUSES_AT_150_S: Final = {".": 0.5, "!": 0.5, "?": 0.5, ";": 0.4, ":": 0.4, ",": 0.3, "-": 0.15}


def estimate_duration_s(
    text: str, speed_wpm: int, *, paragraph_pause_s: float = PARAGRAPH_BREAK_MS / 1000
) -> float:
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
