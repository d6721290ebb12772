"""Where each article went: a pure fold of commands and receipts into a status view. No I/O, no clock.

Facts come from two places:

- commands (``distribution.<channel>.commands``): what was asked of each target: version, action,
  priority, publish time. They name the targets, so a target with no receipt yet is *pending*.
- receipts (``distribution.receipts``): what happened: article-level receipts of the stream app
  (routed, held, dead_lettered, retracted, ...) and one receipt per delivery attempt per target.
- emergency-lane records (``distribution.emergency.commands``): one per CAP alert with all its
  zones. Each zone becomes an attempt of the pseudo-channel ``emergency`` (the name the fan-out
  receipt counts it under), action publish (start) or retract (cancel), priority emergency, with
  the command id ``emergency_command_id(...)``: the emergency pusher's receipts name the same
  channel, zone and command id. (A delivery receipt without a command id counts as an attempt
  of its own, ``v<version>:<channel>:<target>``; Lantoa's runtimes always set one.)

Per (channel, target) the view shows the *current* attempt: the command with the highest version,
a retraction ranking above the publication of the same version. Its state:

    delivered  the platform has it (receipt delivered or updated)
    retracted  taken back (deleted), or a retraction found nothing to take back
    skipped    not sent because something newer is already there
    failed     given up: dead-lettered with the reason (a replay may still deliver it), or refused
               at fan-out because the channel cannot take this version there (streams/articles/bounds.py)
    unknown    the request left and no answer came; reconciled before any resend
    retrying   waiting for a retry (rate limit, paused target, platform error)
    pending    commanded, no receipt yet

A receipt that says the effect exists (delivered, updated, deleted, skipped) settles the attempt
whatever came before or after it; otherwise the latest trouble receipt (by time, then failed >
unknown > retrying) says why it is not there yet.

The view depends only on the *set* of facts, never on the order they arrive in (topics and
partitions interleave, replays repeat receipts): every choice is a min or max over a total order.
The store is bounded (``max_targets``): past it, the articles updated least recently are dropped
whole; they come back, partially, only if new facts about them arrive.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.emergency import EMERGENCY_CHANNEL, alert_uri, emergency_command_id
from schemas.errors import InvalidContent
from schemas.times import checked_instant

STATES = ("pending", "retrying", "unknown", "failed", "delivered", "retracted", "skipped")
SETTLED = frozenset({"delivered", "retracted", "skipped"})
SUCCESS = frozenset({"delivered", "updated", "deleted", "skipped"})
TROUBLE_RANK = {"retrying": 0, "unknown": 1, "failed": 2}
ACTION_RANK = {"publish": 0, "update": 0, "retract": 1}
# Tie-break of article-level events recorded at the same instant (later in this list wins).
EVENT_RANK = {
    name: i
    for i, name in enumerate(
        (
            "accepted",
            "dropped_duplicate",
            "dropped_stale",
            "retract_unknown",
            "dead_lettered",
            "held",
            "released",
            "embargo_cancelled",
            "routed",
            "retracted",
        )
    )
}
EMERGENCY = "emergency"
DEFAULT_MAX_TARGETS = 500_000


def _s(value: Any) -> str | None:
    return None if value is None else str(value)


def _epoch(iso: str | None) -> float | None:
    """Seconds since the epoch, or None for anything that is not an aware time in the accepted
    years (schemas/times.py): outside them ``timestamp()`` may overflow, and the view reads topics
    any client can write to, so it must never raise here."""
    if not iso:
        return None
    try:
        moment = checked_instant(datetime.fromisoformat(iso.replace("Z", "+00:00")))
    except (ValueError, InvalidContent):
        return None
    return moment.timestamp() if moment.tzinfo else None


def _utc(value: Any) -> str | None:
    """Any RFC 3339 time as UTC with milliseconds and Z, so that times compare as strings."""
    if value is None:
        return None
    text = str(value)
    epoch = _epoch(text)
    if epoch is None:
        return text
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def fallback_command_id(version: int, channel: str, target: str) -> str:
    return f"v{version}:{channel}:{target}"


@dataclass
class _Attempt:
    """One command at one target, as far as the facts tell (command_id identifies it)."""

    command_id: str
    version: int
    action: str | None = None
    priority: str | None = None
    issued_at: str | None = None
    published_at: str | None = None
    success: tuple[str, str, str] | None = None  # (at, outcome, external_id or ""): earliest wins
    trouble: tuple[str, int, str, str] | None = None  # (at, rank, outcome, reason): latest wins
    last_at: str | None = None
    external_id: str | None = None

    def order(self) -> tuple[int, int, str]:
        action = self.action
        if action is None and self.success is not None and self.success[1] == "deleted":
            action = "retract"
        return (self.version, ACTION_RANK.get(action or "publish", 0), self.command_id)

    def state(self) -> str:
        if self.success is not None:
            outcome = self.success[1]
            if outcome in ("delivered", "updated"):
                return "delivered"
            if outcome == "deleted" or self.action == "retract":
                return "retracted"
            return "skipped"
        if self.trouble is not None:
            return self.trouble[2]
        return "pending"


@dataclass
class _Article:
    uri: str
    events: dict[str, dict[str, Any]] = field(default_factory=dict)  # receipt_id -> event
    targets: dict[tuple[str, str], dict[str, _Attempt]] = field(default_factory=dict)
    titles: dict[int, str] = field(default_factory=dict)  # version -> title
    updated_at: str | None = None  # the latest time in any fact

    def touch(self, at: str | None) -> None:
        if at and (self.updated_at is None or at > self.updated_at):
            self.updated_at = at

    def size(self) -> int:
        return 1 + len(self.targets)


class StatusFold:
    """Accumulates commands and receipts; answers per-article views and the emergency watch."""

    def __init__(self, max_targets: int = DEFAULT_MAX_TARGETS) -> None:
        self.max_targets = max_targets
        self._articles: OrderedDict[str, _Article] = OrderedDict()
        self._size = 0
        # (uri, channel, target) whose facts include an emergency command: the emergency watch.
        self._emergency: set[tuple[str, str, str]] = set()

    # -- input --------------------------------------------------------------------------------

    def add_command(self, raw: Mapping[str, Any]) -> str:
        """A command as it travels on a command topic; returns its article's uri."""
        try:
            uri, channel, target = str(raw["uri"]), str(raw["channel"]), str(raw["target"])
            attempt = self._attempt(uri, channel, target, str(raw["command_id"]), int(raw["version"]))
            attempt.action = str(raw["action"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidContent(f"not a command: {exc!r}") from exc
        attempt.priority = _s(raw.get("priority"))
        attempt.issued_at = _utc(raw.get("issued_at"))
        attempt.published_at = _utc(raw.get("published_at"))
        if attempt.priority == EMERGENCY:
            self._emergency.add((uri, channel, target))
        art = self._articles[uri]
        art.touch(attempt.issued_at)
        title = _title(raw.get("payload") or raw.get("payload_ref"))  # a reference carries the title
        if title and attempt.action != "retract":
            # Every target of one version gets the same payload per channel; the smallest title
            # keeps the choice independent of arrival order when channels word it differently.
            art.titles[attempt.version] = min(art.titles.get(attempt.version, title), title)
        return uri

    def add_emergency(self, raw: Mapping[str, Any]) -> str:
        """An emergency-lane record (one CAP alert, all its zones); returns its article's uri."""
        try:
            eid, action, zones = str(raw["emergency_id"]), str(raw["action"]), [str(z) for z in raw["zones"]]
        except (KeyError, TypeError) as exc:
            raise InvalidContent(f"not an emergency record: {exc!r}") from exc
        uri = alert_uri(eid)  # the fan-out receipt's uri
        art = self._article(uri)
        for zone in zones:
            attempt = self._attempt(uri, EMERGENCY_CHANNEL, zone, emergency_command_id(eid, zone, action), 1)
            attempt.action = "retract" if action == "cancel" else "publish"
            attempt.priority = EMERGENCY
            attempt.issued_at = _utc(raw.get("issued_at"))
            attempt.published_at = _utc(raw.get("published_at"))
            self._emergency.add((uri, EMERGENCY_CHANNEL, zone))
        art.touch(_utc(raw.get("issued_at")))
        headline = raw.get("headline")
        if headline and action != "cancel":
            art.titles[1] = min(art.titles.get(1, str(headline)), str(headline))
        return uri

    def add_receipt(self, raw: Mapping[str, Any]) -> str:
        """A receipt as it travels on distribution.receipts; returns its article's uri."""
        try:
            uri, stage, outcome, at = str(raw["uri"]), str(raw["stage"]), str(raw["outcome"]), _utc(raw["at"])
        except KeyError as exc:
            raise InvalidContent(f"not a receipt: missing {exc}") from exc
        assert at is not None
        # A fan-out receipt naming a target is a refusal there (streams/articles/bounds.py): that target's
        # attempt, like a delivery receipt; the others are the article's events.
        if stage != "delivery" and not (stage == "fanout" and raw.get("target")):
            art = self._article(uri)
            rid = str(raw.get("receipt_id") or f"{stage}:{outcome}:{at}:{raw.get('version')}")
            art.events[rid] = {
                "at": at,
                "stage": stage,
                "outcome": outcome,
                "version": raw.get("version"),
                "reason": raw.get("reason"),
                "counts": dict(raw.get("counts") or {}),
                "actor": _s(raw.get("actor")),
            }
            art.touch(at)
            return uri
        try:
            channel, target, version = str(raw["channel"]), str(raw["target"]), int(raw["version"])
            cid = str(raw.get("command_id") or fallback_command_id(version, channel, target))
            attempt = self._attempt(uri, channel, target, cid, version)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidContent(f"not a delivery receipt: {exc!r}") from exc
        external = _s(raw.get("external_id"))
        if outcome in SUCCESS:
            candidate = (at, outcome, external or "")
            if attempt.success is None or candidate < attempt.success:
                attempt.success = candidate
            if external:
                attempt.external_id = min(attempt.external_id or external, external)
        elif outcome in TROUBLE_RANK:
            trouble = (at, TROUBLE_RANK[outcome], outcome, str(raw.get("reason") or ""))
            if attempt.trouble is None or trouble > attempt.trouble:
                attempt.trouble = trouble
        else:
            raise InvalidContent(f"unexpected delivery outcome {outcome!r}")
        attempt.last_at = max(attempt.last_at or at, at)
        self._articles[uri].touch(at)
        return uri

    def _article(self, uri: str) -> _Article:
        art = self._articles.get(uri)
        if art is None:
            art = self._articles[uri] = _Article(sys.intern(uri))
            self._size += 1
        self._articles.move_to_end(uri)
        return art

    def _attempt(self, uri: str, channel: str, target: str, command_id: str, version: int) -> _Attempt:
        art = self._article(uri)
        key = (sys.intern(channel), sys.intern(target))
        attempts = art.targets.get(key)
        if attempts is None:
            attempts = art.targets[key] = {}
            self._size += 1
        attempt = attempts.get(command_id)
        if attempt is None:
            attempt = attempts[command_id] = _Attempt(command_id, version)
        return attempt

    def evict(self) -> int:
        """Drop the articles updated least recently until the store is within its bound."""
        dropped = 0
        while self._size > self.max_targets and len(self._articles) > 1:
            uri, art = self._articles.popitem(last=False)
            self._size -= art.size()
            self._emergency = {k for k in self._emergency if k[0] != uri}
            dropped += 1
        return dropped

    # -- views --------------------------------------------------------------------------------

    def __contains__(self, uri: object) -> bool:
        return uri in self._articles

    def __len__(self) -> int:
        return len(self._articles)

    def article(
        self, uri: str, channel: str | None = None, state: str | None = None
    ) -> dict[str, Any] | None:
        """The status of one article (None if nothing is known of it), optionally only the targets
        of one channel and/or in one state; per-channel counts always cover every target."""
        art = self._articles.get(uri)
        if art is None:
            return None
        events = sorted(art.events.values(), key=_event_order)
        channels: dict[str, dict[str, Any]] = {}
        for (ch, target), attempts in sorted(art.targets.items()):
            view = _target_view(target, attempts)
            entry = channels.setdefault(
                ch, {"expected": None, "states": dict.fromkeys(STATES, 0), "targets": []}
            )
            entry["states"][view["state"]] += 1
            if (channel is None or channel == ch) and (state is None or state == view["state"]):
                entry["targets"].append(view)
        for ev in events:  # the latest fan-out (by time) says how many targets each channel has
            for ch, n in ev["counts"].items():
                channels.setdefault(ch, {"expected": None, "states": dict.fromkeys(STATES, 0), "targets": []})
                channels[ch]["expected"] = n
        for entry in channels.values():
            entry["states"] = {k: v for k, v in entry["states"].items() if v}
            entry["settled"] = sum(v for k, v in entry["states"].items() if k in SETTLED)
        if channel is not None:
            channels = {k: v for k, v in channels.items() if k == channel}
        versions = [int(e["version"]) for e in events if e.get("version")] + [
            a.version for attempts in art.targets.values() for a in attempts.values()
        ]
        latest = events[-1] if events else None
        totals = dict.fromkeys(STATES, 0)
        for entry in channels.values():
            for k, v in entry["states"].items():
                totals[k] += v
        return {
            "uri": art.uri,
            "title": art.titles[max(art.titles)] if art.titles else None,
            "version": max(versions) if versions else None,
            "state": latest["outcome"] if latest else None,
            "updated_at": art.updated_at,
            "totals": {k: v for k, v in totals.items() if v},
            "events": events,
            "channels": dict(sorted(channels.items())),
        }

    def recent(self, limit: int = 50) -> list[dict[str, Any]]:
        """The articles updated most recently, newest first, without their targets."""
        out: list[dict[str, Any]] = []
        for uri in sorted(
            self._articles, key=lambda u: (self._articles[u].updated_at or "", u), reverse=True
        )[:limit]:
            view = self.article(uri)
            assert view is not None
            view.pop("events")
            for entry in view["channels"].values():
                entry.pop("targets")
            out.append(view)
        return out

    def emergencies(self, now: float, horizon_s: float = 6 * 3600.0) -> dict[str, tuple[int, float]]:
        """Per channel: (how many, age of the oldest) emergency attempts that are current at their
        target, not effective there yet, and published less than ``horizon_s`` ago."""
        out: dict[str, tuple[int, float]] = {}
        for uri, ch, target in self._emergency:
            art = self._articles.get(uri)
            attempts = art.targets.get((ch, target)) if art else None
            if not attempts:
                continue
            current = max(attempts.values(), key=_Attempt.order)
            if current.priority != EMERGENCY or current.state() in SETTLED:
                continue
            since = _epoch(current.published_at) or _epoch(current.issued_at)
            if since is None or now - since > horizon_s:
                continue
            count, oldest = out.get(ch, (0, 0.0))
            out[ch] = (count + 1, max(oldest, now - since))
        return out


def _title(payload: Any) -> str | None:
    if not isinstance(payload, dict):
        return None
    title = payload.get("title") or payload.get("message") or payload.get("text")
    return str(title).strip().split("\n", 1)[0][:300] if title else None


def _event_order(ev: dict[str, Any]) -> tuple[str, int, int, str]:
    return (
        str(ev["at"]),
        int(ev.get("version") or 0),
        EVENT_RANK.get(str(ev["outcome"]), -1),
        str(ev["outcome"]),
    )


def _target_view(target: str, attempts: Mapping[str, _Attempt]) -> dict[str, Any]:
    ordered = sorted(attempts.values(), key=_Attempt.order)
    current = ordered[-1]
    live: int | None = None
    last_external: str | None = None
    for a in ordered:
        st = a.state()
        if st == "delivered":
            live = a.version
        elif st == "retracted":
            live = None
        if a.external_id:
            last_external = a.external_id
    state = current.state()
    return {
        "target": target,
        "state": state,
        "version": current.version,
        "action": current.action
        or ("retract" if current.success and current.success[1] == "deleted" else None),
        "priority": current.priority,
        "published_at": current.published_at,
        "issued_at": current.issued_at,
        "updated_at": current.last_at or current.issued_at,
        "delivered_at": current.success[0] if current.success else None,
        "external_id": current.external_id or last_external,
        "reason": current.trouble[3] if current.trouble and state not in SETTLED else None,
        "live_version": live,
        "command_id": current.command_id,
    }


def fold(
    commands: Iterable[Mapping[str, Any]],
    receipts: Iterable[Mapping[str, Any]],
    max_targets: int = DEFAULT_MAX_TARGETS,
) -> StatusFold:
    """Fold everything at once (the CLI's ``--kafka`` mode, tests). Invalid records raise."""
    view = StatusFold(max_targets)
    for c in commands:
        view.add_command(c)
    for r in receipts:
        view.add_receipt(r)
    return view
