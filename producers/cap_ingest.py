"""CAP ingest: a warning office's alert (CAP 1.1/1.2 XML) → checked → `alerts.cap` (key = identifier).

Used by `lantoa alert FILE.cap` and by the HTTP endpoint (`lantoa alert-server`): both refuse what
`schemas.cap.parse_cap` refuses (DTDs, entities, broken alerts) and what the trust store refuses
(`schemas.cap_signature`: broken, untrusted or missing signatures) with the reason, and plan the
alert against the targets registry before producing it, so an alert that names no known
commune is refused at the door rather than in the stream.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer

from infra.kafka import clients
from schemas.access import check_actor
from schemas.audit import APPROVER_HEADER, actor_header
from schemas.cap import parse_cap
from schemas.cap_model import Alert
from schemas.cap_signature import UNCHECKED, SignatureCheck, TrustPolicy, verify_signature
from schemas.models import utc_now_iso
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.topics import Topic
from streams.alerts.plan import AlertPlan, plan_alert


@dataclass(frozen=True)
class Checked:
    alert: Alert
    plan: AlertPlan
    raw: bytes
    signature: SignatureCheck = field(default=UNCHECKED)


def check(raw: bytes, registry: Registry, trust: TrustPolicy | None = None) -> Checked:
    """Parse, check the signature against ``trust`` (none: not checked) and plan; raises
    InvalidContent (NotForBroadcast included) with the reason. The signature is checked after
    ``parse_cap`` accepted the bytes, so it never sees a DTD or an entity."""
    alert = parse_cap(raw)
    signature = verify_signature(raw, alert.sender, trust if trust is not None else TrustPolicy.empty())
    return Checked(alert, plan_alert(alert, registry), raw, signature)


def headers_for(
    checked: Checked, source: str, actor: str | None = None, approver: str | None = None
) -> list[tuple[str, bytes]]:
    """The alert's CloudEvents headers; ``actor`` (schemas/audit.py): who the door proved sent it,
    ``approver``: who approved it (the two-person rule, producers/approvals.py)."""
    plan = checked.plan
    headers = {
        "ce_specversion": "1.0",
        "ce_id": str(uuid.uuid4()),
        "ce_source": source,
        "ce_type": f"alert.{checked.alert.msg_type.value.lower()}",
        "ce_time": utc_now_iso(),
        "ce_subject": checked.alert.identifier,
        "content-type": "application/cap+xml",
        "cap_status": checked.alert.status.value,
        "cap_lane": plan.lane,
    }
    out = [(k, v.encode()) for k, v in headers.items()]
    if actor is not None:
        out.append(actor_header(actor))
    if approver is not None:
        out.append((APPROVER_HEADER, check_actor(approver).encode()))
    return out


class AlertProducer:
    """Sends checked alerts to alerts.cap (idempotent producer, acks=all)."""

    def __init__(self, settings: Settings, producer: KafkaProducer | None = None) -> None:
        self.settings = settings
        self._producer = producer or clients.producer(
            settings.kafka,
            client_id=f"{settings.client_id}-cap",
            acks="all",
            enable_idempotence=True,
            max_request_size=2 * 1024 * 1024,
        )

    def send(
        self,
        checked: Checked,
        source: str = "urn:lantoa:cap-ingest",
        timeout_s: float = 30.0,
        *,
        actor: str | None = None,
        approver: str | None = None,
    ) -> dict[str, Any]:
        meta = self._producer.send(
            self.settings.topic(Topic.ALERTS_CAP),
            key=checked.alert.identifier.encode(),
            value=checked.raw,
            headers=headers_for(checked, source, actor, approver),
        ).get(timeout=timeout_s)
        return {
            "identifier": checked.alert.identifier,
            "lane": checked.plan.lane,
            "zones": len(checked.plan.zones),
            "partition": meta.partition,
            "offset": meta.offset,
        }

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()
