"""Who did what: the actor header every entering action carries, and the audit record.

Every action that enters Lantoa (publish, retract, alert, approve, replay, answer, dismiss) names
its actor in the CloudEvents extension attribute ``actor`` (Kafka binding: header ``ce_actor``;
an approved alert also carries ``ce_approver``). The door that takes the action writes one
``AuditRecord`` to the ``audit.actions`` topic (key: the subject).

What the actor header proves is what the door proved: the CAP endpoint and the status web name the
identity whose token was checked (schemas/access.py); the CLI and the publish client name the
configured actor (LANTOA_ACTOR, or cli:<login>@<host>), which anyone with write access to the
input topics could also claim: Kafka ACLs on those topics are the boundary there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import orjson

from schemas.access import check_actor
from schemas.models import utc_now_iso

ACTOR_HEADER: Final = "ce_actor"
APPROVER_HEADER: Final = "ce_approver"
# A replayed record keeps its own ce_actor (who published it) and names who replayed it here.
REPLAYER_HEADER: Final = "ce_replayer"
# An event that arrives without an actor header (a CMS not yet upgraded) is taken, and its
# actor is recorded as this, never left empty.
UNATTRIBUTED: Final = "unattributed"


class AuditAction(StrEnum):
    PUBLISH = "publish"
    RETRACT = "retract"
    ALERT = "alert"
    SUBMIT = "submit"  # an alert that waits for approval
    APPROVE = "approve"
    REFUSE = "refuse"  # refused at an authenticated door (bad token, wrong sender, own approval)
    REPLAY = "replay"
    ANSWER = "answer"
    DISMISS = "dismiss"


def actor_from_headers(headers: Any) -> str:
    """The actor named by a record's ``ce_actor`` header; UNATTRIBUTED when absent; ValueError
    (with the reason) when present but not a valid actor name (a forged or broken header)."""
    for key, value in headers or ():
        if key == ACTOR_HEADER:
            try:
                text = value.decode("utf-8") if isinstance(value, bytes | bytearray) else str(value)
            except UnicodeDecodeError:
                raise ValueError("ce_actor header is not UTF-8") from None
            try:
                return check_actor(text)
            except ValueError as exc:
                raise ValueError(f"ce_actor header refused: {exc}") from None
    return UNATTRIBUTED


def actor_header(actor: str) -> tuple[str, bytes]:
    return (ACTOR_HEADER, check_actor(actor).encode())


@dataclass(frozen=True)
class AuditRecord:
    actor: str
    action: AuditAction
    subject: str
    door: str  # cli, cap-http, status-web, publish-client, worker
    detail: dict[str, Any] = field(default_factory=dict)
    time: str = field(default_factory=utc_now_iso)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": 1,
            "time": self.time,
            "actor": self.actor,
            "action": self.action.value,
            "subject": self.subject,
            "door": self.door,
            "detail": self.detail,
        }

    def encode(self) -> bytes:
        return orjson.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditRecord:
        return cls(
            actor=str(data["actor"]),
            action=AuditAction(data["action"]),
            subject=str(data["subject"]),
            door=str(data.get("door", "")),
            detail=dict(data.get("detail") or {}),
            time=str(data["time"]),
        )
