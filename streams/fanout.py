"""Fan-out: a Decision → the commands and receipts to produce. Pure; sending is the agent's job."""

from __future__ import annotations

from typing import Any

import orjson

from infra.kafka.outbox import OutRecord
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Outcome, Priority, Receipt
from schemas.settings import Settings
from schemas.topics import Channel, Topic, command_key
from streams.bounds import refusals, window_cache
from streams.intake import ArticleEvent
from streams.policy import Decision, Kind, places_from_json
from streams.registry import Registry
from streams.render import render_all, retract_payload
from streams.routing import RouteInput, route


def _route_of(live: dict[str, Any], registry: Registry) -> dict[Channel, list[Any]]:
    return route(RouteInput(places_from_json(live["places"]), tuple(live["subjects"])), registry)


def plan(
    decision: Decision,
    event: ArticleEvent,
    registry: Registry,
    settings: Settings,
    issued_at: str,
) -> tuple[list[Command], Receipt, list[Receipt]]:
    """Commands for every (channel, target) the decision touches, the summary receipt, and a
    ``failed`` fan-out receipt for each target whose channel cannot take this version
    (streams/bounds.py: no command for it; the summary still counts it, as expected there)."""
    commands: list[Command] = []
    refused: list[Receipt] = []

    def make(key: IdempotencyKey, priority: Priority, payload: dict[str, Any]) -> Command:
        return Command(
            key=key,
            priority=priority,
            payload=payload,
            issued_at=issued_at,
            published_at=event.ce.time,
            event_id=event.ce.id,
        )

    counts: dict[str, int] = {}

    if decision.kind in (Kind.PUBLISH, Kind.UPDATE):
        article = event.article
        assert article is not None and decision.new_state is not None
        live = decision.new_state["live"]
        routes = _route_of(live, registry)
        payloads = render_all(article, settings.public_base_url, list(routes))
        action = Action.UPDATE if decision.kind is Kind.UPDATE else Action.PUBLISH
        priority = Priority(live["priority"])
        longest = window_cache()
        for channel, targets in routes.items():
            payload = payloads[channel]
            why = refusals(
                channel, payload, targets, speed_wpm=settings.loudspeaker_speed_wpm, longest_window=longest
            )
            for t in targets:
                key = IdempotencyKey(article.uri, article.version, channel, t.id, action)
                if t.id in why:
                    refused.append(
                        Receipt(
                            uri=article.uri,
                            stage="fanout",
                            outcome=Outcome.FAILED,
                            at=issued_at,
                            version=article.version,
                            channel=channel.value,
                            target=t.id,
                            command_id=key.command_id(),
                            reason=why[t.id],
                            event_id=event.ce.id,
                        )
                    )
                else:
                    commands.append(make(key, priority, payload))
            counts[channel.value] = len(targets)
        if decision.previous_live is not None:
            # Targets the previous version reached but this one does not: take it back there.
            old = _route_of(decision.previous_live, registry)
            reason = retract_payload(f"no longer addressed by version {article.version}")
            for channel, targets in old.items():
                now_ids = {t.id for t in routes.get(channel, [])}
                for t in targets:
                    if t.id not in now_ids:
                        key = IdempotencyKey(article.uri, article.version, channel, t.id, Action.RETRACT)
                        commands.append(make(key, priority, reason))
        outcome = Outcome.ROUTED
    elif decision.kind is Kind.RETRACT:
        live = decision.retract_live
        assert live is not None
        routes = _route_of(live, registry)
        payload = retract_payload(decision.reason)
        for channel, targets in routes.items():
            for t in targets:
                key = IdempotencyKey(event.uri, int(live["version"]), channel, t.id, Action.RETRACT)
                commands.append(make(key, Priority(live["priority"]), payload))
            counts[channel.value] = len(targets)
        outcome = Outcome.RETRACTED
    else:
        outcome = Outcome(decision.kind.value)

    version = event.version
    if decision.kind is Kind.RETRACT and decision.retract_live is not None:
        version = int(decision.retract_live["version"])
    receipt = Receipt(
        uri=event.uri,
        stage="fanout"
        if commands or decision.kind in (Kind.PUBLISH, Kind.UPDATE, Kind.RETRACT)
        else "policy",
        outcome=outcome,
        at=issued_at,
        version=version,
        reason=decision.reason,
        event_id=event.ce.id,
        counts=counts,
    )
    return commands, receipt, refused


def command_records(commands: list[Command], settings: Settings) -> list[OutRecord]:
    """Encode commands for their channel topics (key = ``command_key``: the target id, so order per
    target; a Zalo command the Official Account, whose limits one partition then holds whole).

    The rendered payload is shared by every command of a channel: it is serialised once and
    spliced in (orjson.Fragment) instead of once per target (3,321 zones for a national article).
    """
    topics = {c: settings.topic(Topic.commands(c)) for c in Channel}
    encoded: dict[int, orjson.Fragment] = {}
    out: list[OutRecord] = []
    for cmd in commands:
        fragment = encoded.get(id(cmd.payload))
        if fragment is None:
            fragment = encoded[id(cmd.payload)] = orjson.Fragment(encode(cmd.payload))
        doc = cmd.to_dict()
        doc["payload"] = fragment
        out.append(OutRecord(topics[cmd.channel], command_key(cmd.channel, cmd.target), encode(doc)))
    return out


def receipt_record(receipt: Receipt, settings: Settings) -> OutRecord:
    return OutRecord(settings.topic(Topic.RECEIPTS), receipt.uri.encode(), encode(receipt.to_dict()))
