"""What each channel's contract accepts, decided once per channel (and zone) at fan-out. Pure.

An article past one channel's limit is refused for that channel alone: its targets there get a
fan-out receipt ``failed`` with the reason (the status view shows them failed, with why), no
command is produced for them, and the other channels still get the article. Only an absurd
article (past the field bounds of schemas/article.py or the record bound of streams/articles/intake.py)
is refused whole at intake. A refused target keeps whatever an earlier version left there (a
Facebook post of version 1 stays when version 2 is too long): the receipt says so, and a
retraction still reaches it.

Loudspeakers: a bulletin whose spoken length (estimated from the normalised text at the
configured speed, ``schemas.speech.duration.estimate_duration_s``) is longer than the longest window
of a zone is refused for that zone, not shortened. A commune operator airs what the newsroom
wrote, whole: cutting a bulletin at a window's end drops what comes last (often the instruction
to listeners), and the scheduler never overruns a window, so without this the bulletin would sit
in the zone's set unplayed while the receipt said delivered. The receipt names the estimate and
the window, so the newsroom can shorten the summary or the commune lengthen its window. The
estimate errs long (3,000 characters of Vietnamese news with dates, times and units: 405 s
estimated, 338 s rendered by espeak-ng at 150 wpm), so a bulletin near a window's length is
refused here rather than left unplayed; one the estimate lets through but whose WAV is longer
than every window is still reported ``too_long`` by the adapter's scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from schemas.codec import encode
from schemas.models import Target
from schemas.speech.duration import estimate_duration_s
from schemas.speech.normalize import normalize
from schemas.topics import Channel
from schemas.windows import ZoneWindows

# Facebook refuses a post whose message is longer than this (Graph error 100).
FACEBOOK_MESSAGE_MAX_CHARS = 63_206
# Zalo takes 2,000 characters per message; the adapter splits longer text on sentences into
# numbered parts, each with a 48-character marker (consumers/zalo/adapter.py). 8,000 characters is
# five messages (at most ten when sentences are as long as a message): more, and a group gets
# a wall of messages for one article; the link in the last part says where to read the rest.
ZALO_TEXT_MAX_CHARS = 8_000
# Every one of a national article's 3,321 loudspeaker commands carries the payload (the text, for
# the adapter to speak): 12 KiB each, plus the command's envelope, keeps the commands of one
# article near 45 MB whatever its characters. A summary at its bound in Vietnamese is ~11 KiB
# (diacritics are 2-3 bytes); this catches the text JSON inflates (a control character is six
# bytes escaped), which the character bounds of schemas/article.py do not.
LOUDSPEAKER_PAYLOAD_MAX_BYTES = 12_288
# "[Cập nhật] ", which the Zalo adapter puts before an update's text.
_ZALO_UPDATE_PREFIX = 11

Refusal = str
LongestWindow = Callable[[Target], float | None]


def zalo_refusal(payload: Mapping[str, Any]) -> Refusal | None:
    """Why a Zalo group cannot take this payload, or None."""
    length = len(str(payload.get("text", ""))) + _ZALO_UPDATE_PREFIX
    if length > ZALO_TEXT_MAX_CHARS:
        return (
            f"zalo text of {length:,} characters exceeds the {ZALO_TEXT_MAX_CHARS:,}-character limit "
            f"(messages of 2,000 characters each)"
        )
    return None


def fanpage_refusal(payload: Mapping[str, Any]) -> Refusal | None:
    """Why Facebook would refuse this post, or None."""
    length = len(str(payload.get("message", "")))
    if length > FACEBOOK_MESSAGE_MAX_CHARS:
        return f"fanpage message of {length:,} characters exceeds Facebook's {FACEBOOK_MESSAGE_MAX_CHARS:,}-character limit"
    return None


def spoken_s(payload: Mapping[str, Any], speed_wpm: int) -> float:
    """The estimated spoken length of a loudspeaker payload's text."""
    return estimate_duration_s(normalize(str(payload.get("text", ""))), speed_wpm)


def window_cache() -> LongestWindow:
    """The longest window of a zone, from its config; parsed once per distinct window list
    (the 3,321 zones share a handful). None when the config is bad: the adapter refuses that
    zone with the parse error (an alert), this check does not guess."""
    cache: dict[Any, float | None] = {}

    def longest(target: Target) -> float | None:
        raw = target.config.get("windows")
        key = tuple(raw) if isinstance(raw, list) and all(isinstance(w, str) for w in raw) else None
        if key is not None and key in cache:
            return cache[key]
        try:
            value: float | None = ZoneWindows.from_target(target).longest_s
        except ValueError:
            value = None
        if key is not None:
            cache[key] = value
        return value

    return longest


def refusals(
    channel: Channel,
    payload: Mapping[str, Any],
    targets: list[Target],
    *,
    speed_wpm: int,
    longest_window: LongestWindow,
) -> dict[str, Refusal]:
    """Per target id, why ``channel`` cannot take ``payload`` there (absent: it can)."""
    if channel is Channel.FANPAGE:
        reason = fanpage_refusal(payload)
    elif channel is Channel.ZALO:
        reason = zalo_refusal(payload)
    elif channel is Channel.LOUDSPEAKER:
        if not targets:
            return {}
        size = len(encode(dict(payload)))
        if size > LOUDSPEAKER_PAYLOAD_MAX_BYTES:
            reason = (
                f"loudspeaker payload of {size:,} bytes exceeds the {LOUDSPEAKER_PAYLOAD_MAX_BYTES:,}-byte limit "
                f"(it is copied into every zone's command)"
            )
            return {t.id: reason for t in targets}
        spoken = spoken_s(payload, speed_wpm)
        out: dict[str, Refusal] = {}
        for t in targets:
            window = longest_window(t)
            if window is not None and spoken > window:
                out[t.id] = (
                    f"bulletin of about {spoken / 60:.1f} min of speech is longer than the zone's longest "
                    f"window ({window / 60:.0f} min): refused, not cut"
                )
        return out
    else:
        return {}
    return {t.id: reason for t in targets} if reason is not None else {}
