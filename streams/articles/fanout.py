"""Fan-out: a Decision → the commands and receipts to produce. Pure; sending is the agent's job."""

from __future__ import annotations

from typing import Any

import orjson

from infra.kafka.outbox import OutRecord
from schemas.article import HEADLINE_MAX_CHARS
from schemas.codec import encode
from schemas.models import Action, Command, IdempotencyKey, Outcome, Priority, Receipt, Stage
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.text import bounded
from schemas.topics import Channel, Topic, command_key
from streams.articles.bounds import refusals, window_cache
from streams.articles.intake import ArticleEvent
from streams.articles.policy import Decision, Kind, places_from_json
from streams.articles.render import render_all, retract_payload
from streams.routing import RouteInput, route

# A title travels beside a payload reference for the status views: as long as a headline may be.
MAX_REF_TITLE_CHARS = HEADLINE_MAX_CHARS


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
    (streams/articles/bounds.py: no command for it; the summary still counts it, as expected there)."""
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
            actor=event.ce.actor,
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
                            stage=Stage.FANOUT,
                            outcome=Outcome.FAILED,
                            at=issued_at,
                            version=article.version,
                            channel=channel.value,
                            target=t.id,
                            command_id=key.command_id(),
                            reason=why[t.id],
                            event_id=event.ce.id,
                            actor=event.ce.actor,
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
        stage=Stage.FANOUT
        if commands or decision.kind in (Kind.PUBLISH, Kind.UPDATE, Kind.RETRACT)
        else Stage.POLICY,
        outcome=outcome,
        at=issued_at,
        version=version,
        reason=decision.reason,
        event_id=event.ce.id,
        counts=counts,
        actor=event.ce.actor,
    )
    return commands, receipt, refused


def shared_payloads(commands: list[Command], min_saving: int) -> dict[int, bytes]:
    """The payloads worth storing once (infra/kafka/payloads.py), encoded, by ``id()`` of the
    payload object: those several commands carry (fan-out gives every target of a channel the
    same object) whose inline copies would cost at least ``min_saving`` bytes more than one."""
    if min_saving < 0:
        return {}
    users: dict[int, int] = {}
    objects: dict[int, dict[str, Any]] = {}
    for cmd in commands:
        users[id(cmd.payload)] = users.get(id(cmd.payload), 0) + 1
        objects[id(cmd.payload)] = cmd.payload
    out: dict[int, bytes] = {}
    for key, n in users.items():
        if n >= 2:
            blob = encode(objects[key])
            if len(blob) * (n - 1) >= min_saving:
                out[key] = blob
    return out


def payload_ref(ref: dict[str, Any], payload: dict[str, Any]) -> dict[str, Any]:
    """A command's ``payload_ref``: the stored record's place and hash, and the payload's title
    (bounded as headlines are) for readers that show it without resolving it."""
    title = payload.get("title")
    return {**ref, "title": bounded(title, MAX_REF_TITLE_CHARS)} if isinstance(title, str) and title else ref


def command_records(
    commands: list[Command], settings: Settings, refs: dict[int, dict[str, Any]] | None = None
) -> list[OutRecord]:
    """Encode commands for their channel topics (key = ``command_key``: the target id, so order per
    target; a Zalo command the Official Account, whose limits one partition then holds whole).

    A payload in ``refs`` (by ``id()`` of the payload object) is stored once already: those
    commands carry its ``payload_ref`` instead. Any other payload shared by several commands is
    serialised once and spliced in (orjson.Fragment) instead of once per target.
    """
    topics = {c: settings.topic(Topic.commands(c)) for c in Channel}
    encoded: dict[int, orjson.Fragment] = {}
    out: list[OutRecord] = []
    refs = refs or {}
    for cmd in commands:
        doc = cmd.to_dict()
        ref = refs.get(id(cmd.payload))
        if ref is not None:
            del doc["payload"]
            doc["payload_ref"] = ref
        else:
            fragment = encoded.get(id(cmd.payload))
            if fragment is None:
                fragment = encoded[id(cmd.payload)] = orjson.Fragment(encode(cmd.payload))
            doc["payload"] = fragment
        out.append(OutRecord(topics[cmd.channel], command_key(cmd.channel, cmd.target), encode(doc)))
    return out


def receipt_record(receipt: Receipt, settings: Settings) -> OutRecord:
    return OutRecord(settings.topic(Topic.RECEIPTS), receipt.uri.encode(), encode(receipt.to_dict()))
