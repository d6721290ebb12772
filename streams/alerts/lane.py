"""Alert lane: a CAP record from alerts.cap → emergency command(s) or priority bulletins. Pure.

Emergency (and every Cancel): one record on distribution.emergency.commands with all the zones;
the emergency pusher pre-empts them on the loudspeaker platform at once. Priority: one
loudspeaker command per zone with priority "ưu tiên", through the normal delivery runtime.
An Update stops what it references first (a "replaces" list), whatever lane it lands on.

Fanpages, Zalo groups and the archive (issue 16): one command per target of ``plan.targets``
(publish, or update for an Update) and a retraction per target of ``plan.withdrawn``, all keyed by
the chain's uri and version (streams/alerts/plan.py), with the emergency priority on the emergency
lane so that the delivery runtime takes them before the articles queued for the same targets.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import Any

from infra.kafka.outbox import OutRecord
from schemas.cap_model import Alert, Info, MsgType
from schemas.codec import encode
from schemas.emergency import alert_uri
from schemas.models import Action, Command, IdempotencyKey, Outcome, Priority, Receipt, Stage
from schemas.settings import Settings
from schemas.text import visible
from schemas.topics import Channel, Topic
from streams.alerts.plan import OTHER_CHANNELS, AlertPlan, is_emergency
from streams.alerts.render import audio_resource, render_alert, vietnamese_info, withdraw_payload

EMERGENCY_MAX_DAYS = 7


def spoken_text(info: Info | None) -> tuple[str, str]:
    """(headline, text to read): headline, description and instruction, as the office wrote them,
    without invisible controls (the parser dropped them already; this is the renderer's guard,
    schemas/text.py ``visible``)."""
    if info is None:
        return "", ""
    headline = visible(info.headline or info.event or "").strip()
    parts = [headline, visible(info.description or "").strip(), visible(info.instruction or "").strip()]
    return headline, "\n\n".join(p for p in parts if p)


def plan_records(
    alert: Alert,
    plan: AlertPlan,
    settings: Settings,
    now: datetime,
    published_at: str | None,
    event_id: str | None,
    actor: str | None = None,
    cap_xml: str | None = None,
) -> tuple[list[OutRecord], list[Command], Receipt]:
    """The records that carry an alert out (the emergency lane's), the loudspeaker commands (the
    priority lane's: encoded by the worker, their shared bulletin stored once), and the receipt."""
    issued = now.astimezone().isoformat(timespec="milliseconds")
    records: list[OutRecord] = []
    commands: list[Command] = []
    info = vietnamese_info(alert, is_emergency if plan.lane == "emergency" else None)
    headline, text = spoken_text(info)
    counts: dict[str, int] = {}
    if plan.lane == "emergency":
        cancel = plan.msg_type.value == "Cancel"
        expires = plan.expires or (now + timedelta(seconds=settings.emergency_default_ttl_s))
        # A siren repeating for years is a typo in the alert, not a warning: the lane repeats for
        # EMERGENCY_MAX_DAYS at most, and an office that needs longer re-issues (an Update).
        expires = min(expires, now + timedelta(days=EMERGENCY_MAX_DAYS))
        value: dict[str, Any] = {
            "schema_version": 1,
            "emergency_id": plan.identifier,
            "action": "cancel" if cancel else "start",
            "msg_type": plan.msg_type.value,
            "status": plan.status.value,
            "exercise": plan.exercise,
            "zones": [z.id for z in plan.zones],
            "headline": headline or None,
            "text": text or None,
            "language": (info.language if info else None),
            "expires_at": expires.isoformat(),
            "repeat_interval_s": settings.emergency_repeat_s,
            "replaces": list(plan.references_ids),
            "audio": audio_resource(info),
            "sent": alert.sent.isoformat(),
            "published_at": published_at,
            "issued_at": issued,
        }
        records.append(
            OutRecord(settings.topic(Topic.EMERGENCY_COMMANDS), plan.identifier.encode(), encode(value))
        )
        counts["emergency"] = len(plan.zones)
    else:
        uri = alert_uri(plan.identifier)
        audio = audio_resource(info)
        recording = "\x00" + hashlib.sha256(encode(audio)).hexdigest() if audio else ""  # none: ids as before
        bulletin = hashlib.sha256(f"{uri}\x00{text}{recording}".encode()).hexdigest()[:32]
        payload = {
            "bulletin_id": bulletin,
            "title": headline,
            "text": text,
            "language": "vi",
            "exercise": plan.exercise,
            "expires_at": plan.expires.isoformat() if plan.expires else None,
        }
        if audio is not None:
            payload["audio"] = audio
        for ref in plan.references_ids:  # an Update replaces what it references
            for z in plan.zones:
                key = IdempotencyKey(alert_uri(ref), 1, Channel.LOUDSPEAKER, z.id, Action.RETRACT)
                reason = {"reason": f"replaced by {plan.identifier}"}
                commands.append(
                    _command(key, Priority.PRIORITY, issued, reason, plan, published_at, event_id, actor)
                )
        for z in plan.zones:
            key = IdempotencyKey(uri, 1, Channel.LOUDSPEAKER, z.id, Action.PUBLISH)
            commands.append(
                _command(key, Priority.PRIORITY, issued, payload, plan, published_at, event_id, actor)
            )
        counts["loudspeaker"] = len(plan.zones)
    for cmd in other_commands(alert, plan, settings, issued, published_at, event_id, actor, cap_xml):
        commands.append(cmd)
        counts[cmd.channel.value] = counts.get(cmd.channel.value, 0) + 1
    receipt = Receipt(
        uri=alert_uri(plan.identifier),
        stage=Stage.FANOUT,
        outcome=Outcome.ROUTED,
        at=issued,
        version=1,
        reason=f"CAP {plan.status.value} {plan.msg_type.value} on the {plan.lane} lane"
        + (" (exercise: test zones only)" if plan.exercise else ""),
        event_id=event_id,
        counts=counts,
        actor=actor,
    )
    return records, commands, receipt


def other_commands(
    alert: Alert,
    plan: AlertPlan,
    settings: Settings,
    issued: str,
    published_at: str | None,
    event_id: str | None,
    actor: str | None,
    cap_xml: str | None,
) -> list[Command]:
    """The fanpage, Zalo and archive commands of one CAP message (see the module docstring)."""
    root, version = plan.root or plan.identifier, plan.version
    uri = alert_uri(root)
    priority = Priority.EMERGENCY if plan.lane == "emergency" else Priority.PRIORITY
    cancel = plan.msg_type is MsgType.CANCEL
    action = Action.UPDATE if plan.msg_type is MsgType.UPDATE else Action.PUBLISH
    payloads = render_alert(alert, root, version, settings.public_base_url, cap_xml)
    withdraw = withdraw_payload(alert, cancel)
    out: list[Command] = []

    def make(channel: Channel, target: str, act: Action, payload: dict[str, Any]) -> Command:
        key = IdempotencyKey(uri, version, channel, target, act)
        return _command(key, priority, issued, payload, plan, published_at, event_id, actor)

    for channel in OTHER_CHANNELS:
        for t in plan.targets.get(channel, []):
            out.append(make(channel, t.id, action, payloads[channel]))
        for t in plan.withdrawn.get(channel, []):
            out.append(make(channel, t.id, Action.RETRACT, withdraw))
    return out


def _command(
    key: IdempotencyKey,
    priority: Priority,
    issued: str,
    payload: dict[str, Any],
    plan: AlertPlan,
    published_at: str | None,
    event_id: str | None,
    actor: str | None,
) -> Command:
    return Command(
        key,
        priority,
        issued,
        payload,
        published_at=published_at,
        event_id=event_id,
        test=plan.exercise,
        actor=actor,
    )
