"""An alert of the two-person rule as ``alerts.pending`` holds it (schemas/json/pending_alert.v1.json).

Written by the CAP doors (producers/approvals.py) and read by them and by the status view
(streams/status/view.py): both show its state the same way, ``shown`` (a pending alert past its
wait is expired).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import contracts


@dataclass(frozen=True)
class PendingAlert:
    identifier: str
    sender: str
    submitted_by: str
    submitted_at: str
    expires_at: str
    zones: int
    raw: bytes = field(repr=False)
    reason: str = ""
    provinces: tuple[str, ...] = ()
    whole_provinces: tuple[str, ...] = ()
    headline: str | None = None
    msg_type: str = ""
    lane: str = ""
    state: str = "pending"
    approved_by: str | None = None
    approved_at: str | None = None
    closed_reason: str | None = None  # why a pending alert was withdrawn (state rejected)

    def shown(self, now: datetime) -> str:
        """pending, approved, rejected (withdrawn) or expired (a pending alert past its wait)."""
        if self.state == "pending" and datetime.fromisoformat(self.expires_at) <= now:
            return "expired"
        return self.state

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": 1,
            "state": self.state,
            "identifier": self.identifier,
            "sender": self.sender,
            "submitted_by": self.submitted_by,
            "submitted_at": self.submitted_at,
            "expires_at": self.expires_at,
            "zones": self.zones,
            "reason": self.reason,
            "provinces": list(self.provinces),
            "whole_provinces": list(self.whole_provinces),
            "headline": self.headline,
            "msg_type": self.msg_type,
            "lane": self.lane,
            "cap_b64": base64.b64encode(self.raw).decode(),
        }
        if self.approved_by is not None:
            out["approved_by"] = self.approved_by
        if self.approved_at is not None:
            out["approved_at"] = self.approved_at
        if self.closed_reason is not None:
            out["closed_reason"] = self.closed_reason
        return out

    def summary(self, now: datetime) -> dict[str, Any]:
        """What `lantoa approvals` and GET /cap/approvals show (no XML)."""
        out = {k: v for k, v in self.to_dict().items() if k not in ("cap_b64", "schema_version")}
        out["state"] = self.shown(now)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PendingAlert:
        contracts.check("pending_alert", data)
        return cls(
            identifier=data["identifier"],
            sender=data["sender"],
            submitted_by=data["submitted_by"],
            submitted_at=data["submitted_at"],
            expires_at=data["expires_at"],
            zones=int(data["zones"]),
            raw=base64.b64decode(data.get("cap_b64") or ""),
            reason=str(data.get("reason") or ""),
            provinces=tuple(data.get("provinces") or ()),
            whole_provinces=tuple(data.get("whole_provinces") or ()),
            headline=data.get("headline"),
            msg_type=str(data.get("msg_type") or ""),
            lane=str(data.get("lane") or ""),
            state=data["state"],
            approved_by=data.get("approved_by"),
            approved_at=data.get("approved_at"),
            closed_reason=data.get("closed_reason"),
        )
