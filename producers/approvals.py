"""The two-person rule for public warnings: an Actual alert above the approval scope waits.

Both CAP doors (``lantoa alert`` and ``POST /cap``) hand a checked alert to ``AlertDoor.take``.
An Actual alert that reaches more than LANTOA_APPROVAL_MAX_ZONES zones, or every zone of a
province (LANTOA_APPROVAL_WHOLE_PROVINCE), is not sent: it is kept on ``alerts.pending`` (key: its
CAP identifier, the XML exactly as received) as *pending* with who submitted it and when the wait
ends (LANTOA_APPROVAL_TTL_S). Exercise/Test alerts and Cancels never wait.

``AlertDoor.approve`` (``lantoa approve ID``, ``POST /cap/approve/ID``) sends it on to
``alerts.cap`` when a *different* identity asks: the alert is checked again first (its signature
against today's trust store, its zones against today's registry, its own expiry), then sent with
``ce_actor`` = the submitter and ``ce_approver`` = the approver, and the approved state is written
over the pending one. Refused, with the reason: an unknown identifier, an alert already approved,
a wait that expired (submit it again), the submitter approving their own alert, an alert no longer
valid. Each step writes its audit record (submit, alert, approve, refuse) before the door answers.

An Update or Cancel that references a pending alert withdraws it (state ``rejected``, with the
reason): approving it later would air a warning its own office has replaced or called off.

Two approvals racing for the same alert may both send it; it still airs once: the emergency
platform's pre-emption is idempotent on the alert's id, and the priority lane's commands carry
the same idempotency keys, which the adapters' ledgers take once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import orjson
from kafka import KafkaProducer

from infra.kafka import clients
from producers.audit import AuditLog
from producers.cap_ingest import AlertProducer, Checked, check
from schemas import contracts
from schemas.audit import AuditAction, AuditRecord
from schemas.cap_signature import TrustPolicy
from schemas.errors import InvalidContent
from schemas.models import utc_now_iso
from schemas.pending import PendingAlert
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.topics import Topic
from streams.alerts.plan import approval_needed


class Store(Protocol):
    def write(self, pending: PendingAlert) -> None: ...

    def read(self) -> dict[str, PendingAlert]: ...


class PendingStore:
    """alerts.pending on Kafka: written acknowledged, read to its end (a small compacted topic)."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self.settings = settings
        self.topic = settings.topic(Topic.ALERTS_PENDING)
        self._own = producer is None
        self._producer = producer or clients.producer(
            settings.kafka,
            client_id=f"{settings.client_id}-pending",
            acks="all",
            enable_idempotence=True,
            max_request_size=4 * 1024 * 1024,
        )

    def write(self, pending: PendingAlert) -> None:
        entry = pending.to_dict()
        contracts.check("pending_alert", entry)
        value = orjson.dumps(entry)
        self._producer.send(self.topic, key=pending.identifier.encode(), value=value).get(timeout=30)

    def read(self) -> dict[str, PendingAlert]:
        out: dict[str, PendingAlert] = {}
        for rec in clients.read_topic(
            self.settings.kafka, self.topic, client_id=f"{self.settings.client_id}-pending-read"
        ):
            if rec.value is None:
                out.pop((rec.key or b"").decode(errors="replace"), None)
                continue
            try:
                p = PendingAlert.from_dict(orjson.loads(rec.value))
            except (InvalidContent, orjson.JSONDecodeError, KeyError, ValueError):
                continue  # not ours to act on: an approval needs a well-formed entry
            out[p.identifier] = p
        return out

    def close(self) -> None:
        if self._own:
            self._producer.flush()
            self._producer.close()


class ApprovalRefused(Exception):
    """An approval that cannot be given; ``status`` is the HTTP answer, ``reason`` says why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class AlertDoor:
    """What both CAP doors do with a checked alert: send it, or hold it for a second person."""

    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        alerts: AlertProducer,
        store: Store,
        audit: AuditLog,
        trust: TrustPolicy | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings, self.registry, self.alerts = settings, registry, alerts
        self.store, self.audit, self.trust, self.clock = store, audit, trust, clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def check(self, raw: bytes) -> Checked:
        return check(raw, self.registry, self.trust)

    def _audit(self, actor: str, action: AuditAction, subject: str, door: str, **detail: Any) -> None:
        self.audit.write(AuditRecord(actor, action, subject, door, detail, utc_now_iso(self._now())))

    def refuse(self, actor: str, subject: str, door: str, reason: str) -> None:
        """An authenticated caller's refused request, in the audit trail."""
        self._audit(actor, AuditAction.REFUSE, subject, door, reason=reason)

    def take(self, checked: Checked, actor: str, door: str, source: str) -> dict[str, Any]:
        """Send the alert, or keep it pending; the result says which (``pending``)."""
        plan, alert = checked.plan, checked.alert
        scope = approval_needed(
            plan, self.registry, self.settings.approval_max_zones, self.settings.approval_whole_province
        )
        now = self._now()
        if scope is None:
            # Sent first: a Cancel stops the sirens before the pending alerts are even read.
            result = self.alerts.send(checked, source, actor=actor)
            withdrawn = self._withdraw(self.store.read(), checked, actor, now) if plan.references_ids else []
            detail: dict[str, Any] = {"zones": len(plan.zones), "lane": plan.lane}
            if withdrawn:
                detail["withdrew"] = withdrawn
            self._audit(actor, AuditAction.ALERT, alert.identifier, door, **detail)
            return {"pending": False, **result, **({"withdrew": withdrawn} if withdrawn else {})}
        known = self.store.read()
        held = known.get(alert.identifier)
        if held is not None and held.shown(now) == "pending":
            raise ApprovalRefused(
                409, f"alert {alert.identifier!r} already waits for approval since {held.submitted_at}"
            )
        if held is not None and held.shown(now) == "approved":
            raise ApprovalRefused(
                409, f"alert {alert.identifier!r} was approved by {held.approved_by} and sent"
            )
        withdrawn = self._withdraw(known, checked, actor, now)
        infos = [i.headline for i in alert.infos if i.headline]
        pending = PendingAlert(
            identifier=alert.identifier,
            sender=alert.sender,
            submitted_by=actor,
            submitted_at=utc_now_iso(now),
            expires_at=utc_now_iso(now + timedelta(seconds=self.settings.approval_ttl_s)),
            zones=len(plan.zones),
            raw=checked.raw,
            reason=scope.reason,
            provinces=tuple(f"{p:02d}" for p in scope.provinces),
            whole_provinces=tuple(f"{p:02d}" for p in scope.whole_provinces),
            headline=infos[0] if infos else None,
            msg_type=alert.msg_type.value,
            lane=plan.lane,
        )
        self.store.write(pending)
        self._audit(
            actor,
            AuditAction.SUBMIT,
            alert.identifier,
            door,
            zones=len(plan.zones),
            reason=scope.reason,
            expires_at=pending.expires_at,
        )
        return {
            "pending": True,
            "identifier": alert.identifier,
            "lane": plan.lane,
            "zones": len(plan.zones),
            "reason": scope.reason,
            "expires_at": pending.expires_at,
            **({"withdrew": withdrawn} if withdrawn else {}),
        }

    def _withdraw(
        self, known: dict[str, PendingAlert], checked: Checked, actor: str, now: datetime
    ) -> list[str]:
        """The pending alerts this Update or Cancel references, marked rejected (withdrawn)."""
        out = []
        for ref in checked.plan.references_ids:
            held = known.get(ref)
            if held is None or held.shown(now) != "pending":
                continue
            why = f"withdrawn by {checked.alert.msg_type.value} {checked.alert.identifier} from {actor}"
            self.store.write(replace(held, state="rejected", closed_reason=why))
            out.append(ref)
        return out

    def approve(self, identifier: str, approver: str, door: str, source: str) -> dict[str, Any]:
        """Send a pending alert on a different identity's word; ApprovalRefused (audited) if not."""
        try:
            return self._approve(identifier, approver, door, source)
        except ApprovalRefused as exc:
            self.refuse(approver, identifier, door, exc.reason)
            raise

    def _approve(self, identifier: str, approver: str, door: str, source: str) -> dict[str, Any]:
        now = self._now()
        pending = self.store.read().get(identifier)
        if pending is None:
            raise ApprovalRefused(404, f"no alert {identifier!r} waits for approval")
        state = pending.shown(now)
        if state == "approved":
            raise ApprovalRefused(409, f"alert {identifier!r} was already approved by {pending.approved_by}")
        if state == "rejected":
            raise ApprovalRefused(409, f"alert {identifier!r} is no longer waiting: {pending.closed_reason}")
        if state == "expired":
            raise ApprovalRefused(
                410, f"the wait for approval of {identifier!r} ended at {pending.expires_at}: submit it again"
            )
        if approver == pending.submitted_by:
            raise ApprovalRefused(
                403, f"{approver} submitted alert {identifier!r}: a different person must approve it"
            )
        try:
            checked = self.check(pending.raw)
        except InvalidContent as exc:
            raise ApprovalRefused(409, f"alert {identifier!r} is no longer valid: {exc.reason}") from None
        if checked.plan.expires is not None and checked.plan.expires <= now:
            raise ApprovalRefused(410, f"alert {identifier!r} expired at {checked.plan.expires.isoformat()}")
        result = self.alerts.send(checked, source, actor=pending.submitted_by, approver=approver)
        self.store.write(
            replace(pending, state="approved", approved_by=approver, approved_at=utc_now_iso(now))
        )
        self._audit(
            approver,
            AuditAction.APPROVE,
            identifier,
            door,
            submitted_by=pending.submitted_by,
            zones=len(checked.plan.zones),
        )
        self._audit(
            pending.submitted_by,
            AuditAction.ALERT,
            identifier,
            door,
            approved_by=approver,
            zones=len(checked.plan.zones),
            lane=checked.plan.lane,
        )
        return {"pending": False, "approved_by": approver, "submitted_by": pending.submitted_by, **result}

    def list(self) -> list[dict[str, Any]]:
        return listing(self.store, self._now())


def listing(store: Store, now: datetime) -> list[dict[str, Any]]:
    """Every alert of the store as `lantoa approvals` shows it, oldest submission first."""
    return [p.summary(now) for p in sorted(store.read().values(), key=lambda p: p.submitted_at)]
