"""Policy: (article state, event, now) → Decision. Pure; the agent carries the decision out.

State per article uri (a JSON object in streams.article.state, compacted):
    version    highest version accepted, for ordering (older or equal later → dropped)
    live       {"version", "places", "subjects", "priority"} of what is out at the targets, or null
    held       {"version", "until", "event"} of an embargoed version waiting for release, or null
    retracted  {"version", "at"} once retracted, or null
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from schemas.article import Place, parse_time
from streams.articles.intake import ArticleEvent
from streams.articles.render import priority_of


class Kind(StrEnum):
    DROP_STALE = "dropped_stale"
    DROP_DUPLICATE = "dropped_duplicate"
    HOLD = "held"
    CANCEL_EMBARGO = "embargo_cancelled"
    PUBLISH = "publish"
    UPDATE = "update"
    RETRACT = "retracted"
    RETRACT_UNKNOWN = "retract_unknown"


@dataclass(frozen=True)
class Decision:
    """What to do with one event. ``new_state`` None means: leave the state as it is."""

    kind: Kind
    reason: str | None = None
    new_state: dict[str, Any] | None = None
    retract_live: dict[str, Any] | None = None  # the live entry whose targets get retract commands
    previous_live: dict[str, Any] | None = None  # on update: targets no longer routed get retracts
    extra: dict[str, Any] = field(default_factory=dict)


def places_to_json(places: tuple[Place, ...]) -> list[list[Any]]:
    return [[p.kind, p.code] for p in places]


def places_from_json(raw: list[list[Any]]) -> tuple[Place, ...]:
    return tuple(Place(str(k), int(c)) for k, c in raw)


def _empty() -> dict[str, Any]:
    return {"version": 0, "live": None, "held": None, "retracted": None}


def decide(
    state: dict[str, Any] | None, event: ArticleEvent, now: datetime, event_json: dict[str, Any] | None = None
) -> Decision:
    """Decide what an event means given what we know of its article.

    ``event_json`` is the serialised event kept in the state while an embargo holds it.
    """
    st = dict(state) if state else _empty()
    last = int(st["version"])
    if event.version is not None and event.version <= last and state is not None:
        if event.retract and event.version == last:
            pass  # withdrawing the current version without bumping it: a real retraction, below
        elif event.version < last:
            return Decision(
                Kind.DROP_STALE, f"version {event.version} is older than version {last} already accepted"
            )
        else:
            return Decision(Kind.DROP_DUPLICATE, f"version {event.version} was already accepted")

    if event.retract:
        return _retract(st, event, now, state is None)

    article = event.article
    assert article is not None and event.version is not None
    st["version"] = event.version
    if article.embargoed_until is not None and article.embargoed_until > now:
        st["held"] = {
            "version": event.version,
            "until": article.embargoed_until.isoformat(),
            "event": event_json,
        }
        return Decision(Kind.HOLD, f"embargoed until {article.embargoed_until.isoformat()}", new_state=st)
    return publish_now(st, event)


def publish_now(st: dict[str, Any], event: ArticleEvent) -> Decision:
    """Publish (or update) the event's version; used directly and on embargo release."""
    article = event.article
    assert article is not None and event.version is not None

    previous = st.get("live")
    st = dict(st)
    st["version"] = max(int(st["version"]), event.version)
    st["live"] = {
        "version": event.version,
        "places": places_to_json(article.places),
        "subjects": list(article.subjects),
        "priority": priority_of(article).value,
    }
    st["held"] = None
    st["retracted"] = None
    kind = Kind.UPDATE if previous else Kind.PUBLISH
    return Decision(kind, new_state=st, previous_live=previous)


def _retract(st: dict[str, Any], event: ArticleEvent, now: datetime, unknown: bool) -> Decision:
    if unknown:
        return Decision(
            Kind.RETRACT_UNKNOWN, "no version of this article was accepted here; nothing to retract"
        )
    if event.version is not None:
        st["version"] = max(int(st["version"]), event.version)
    live, held = st.get("live"), st.get("held")
    reason = event.reason or (f"pubStatus {event.article.pub_status}" if event.article else None)
    if held and not live:
        # A retraction before release cancels the embargo silently: nothing was ever out.
        st["held"] = None
        st["retracted"] = {"version": held["version"], "at": now.isoformat()}
        return Decision(Kind.CANCEL_EMBARGO, reason, new_state=st)
    if not live:
        return Decision(Kind.DROP_DUPLICATE, "already retracted", new_state=st if event.version else None)
    st["held"] = None
    st["live"] = None
    st["retracted"] = {"version": live["version"], "at": now.isoformat()}
    return Decision(Kind.RETRACT, reason, new_state=st, retract_live=live)


def due_for_release(state: dict[str, Any] | None, now: datetime) -> int | None:
    """The held version whose embargo has passed, if any."""
    if not state or not state.get("held"):
        return None
    until = parse_time(state["held"]["until"])
    return int(state["held"]["version"]) if until is not None and until <= now else None
