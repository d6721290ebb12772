"""The instants Lantoa accepts on its inputs. No I/O.

Every schema we read (ninjs, CAP, CloudEvents, our commands) lets a date-time be anything from
year 1 to year 9999 with an offset of up to ±14:00. Python holds those, but turning one into UTC
(``astimezone``, ``timestamp()``, adding a day or a window) overflows near either end: an alert
that expires ``9999-12-31T23:00:00-14:00`` raised OverflowError deep in the emergency lane, the
process exited without a commit, read the same record again and died again (issue 12). No news
article, alert or delivery of ours is dated before the Unix epoch or centuries ahead, so an
instant outside ``[EARLIEST_YEAR, LATEST_YEAR]`` is refused where it enters, with
``InvalidContent`` (a dead letter with the reason): by schemas/article.py ``parse_time`` for
ninjs and CloudEvents times, by schemas/cap.py for CAP, by ``Command.from_dict`` for commands.
Everything downstream may then do arithmetic on times without guarding it. The check reads the calendar year only, never converts: with offsets
bounded by a day, any year inside the window converts to UTC and back, and so does a year plus
the longest span anything adds (the loudspeaker's 400-day look-ahead, an alert's lifetime).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas.errors import InvalidContent

__all__ = ["EARLIEST_YEAR", "LATEST_YEAR", "checked_instant", "moment"]

EARLIEST_YEAR = 1970
LATEST_YEAR = 2199


def checked_instant(moment: datetime, what: str = "date-time") -> datetime:
    """``moment`` itself when its year is within the window; InvalidContent otherwise."""
    if not EARLIEST_YEAR <= moment.year <= LATEST_YEAR:
        raise InvalidContent(
            f"{what} {moment.isoformat()!r} is outside the years {EARLIEST_YEAR}..{LATEST_YEAR} "
            "Lantoa accepts"
        )
    return moment


def moment(raw: Any) -> datetime | None:
    """An ISO 8601 time with its offset ('Z' too) as a platform or a page reads it; None for
    anything else (no bounds: for display, not for input)."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        found = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo is not None else None
