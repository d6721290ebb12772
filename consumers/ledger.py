"""The idempotency ledger: a compacted topic per channel, held in memory for owned partitions.

Two kinds of entries (schemas/json/ledger.v1.json):
- command entries, key = command id: ``intent`` is written (and acknowledged) before the effect,
  then ``done``, ``unknown`` or ``failed``. The runtime writes the intents of a whole batch in one
  acknowledged send; a command that then produces no effect after all (its target got paused, a
  newer version went live first) has its fresh intent removed again (a tombstone). A replayed command whose entry is ``done`` is
  acknowledged without a second effect; ``intent``/``unknown`` means "reconcile first".
- live entries, key = ``live|<uri>|<target>``: the effect now out at the target for the article
  (its external id and version, or that it was retracted). Updates edit it, retractions remove it,
  and older versions arriving late are recognised as superseded.

Each entry goes to the same partition number as the command it is about, so the worker owning
command partition p owns ledger partition p and rebuilds it on assignment (infra/kafka/compacted.py;
a national day is ~150,000 entries in the loudspeaker's, so finished commands are held slim).
A partition not restored here raises PartitionNotHeld: never "no entry", which would send again.
"""

from __future__ import annotations

from typing import Any

from infra.kafka.compacted import CompactedView
from infra.kafka.outbox import OutRecord
from schemas.codec import encode
from schemas.models import Command

LIVE_PREFIX = "live|"


def live_key(uri: str, target: str) -> str:
    return f"{LIVE_PREFIX}{uri}|{target}"


class Ledger(CompactedView):
    """In-memory view of the ledger partitions this worker owns."""

    # What the runtime reads of a finished command and of a live effect (the topic keeps the whole
    # entry). Nested objects of a live detail that are equal across targets (a national bulletin in
    # 3,321 zones) are held once; the runtime and the adapters only read them.
    DONE_FIELDS = ("kind", "state", "outcome", "external_id", "attempts", "reason")
    LIVE_FIELDS = ("kind", "version", "external_id", "retracted", "detail")

    def __init__(self, topic: str) -> None:
        super().__init__(topic)
        self._shared: dict[bytes, Any] = {}

    def held(self, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        kind = value.get("kind")
        if kind == "command" and value.get("state") == "done":
            return {k: value.get(k) for k in self.DONE_FIELDS}
        if kind == "live":
            slim = {k: value.get(k) for k in self.LIVE_FIELDS}
            detail = slim["detail"]
            if isinstance(detail, dict):
                slim["detail"] = {k: self._one(v) if isinstance(v, dict) else v for k, v in detail.items()}
            return slim
        return value

    def _one(self, value: dict[str, Any]) -> dict[str, Any]:
        if len(self._shared) > 50000:
            self._shared.clear()
        shared: dict[str, Any] = self._shared.setdefault(encode(value), value)
        return shared

    def command(self, partition: int, command_id: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.get(partition, command_id)
        return value

    def live(self, partition: int, uri: str, target: str) -> dict[str, Any] | None:
        value: dict[str, Any] | None = self.get(partition, live_key(uri, target))
        return value

    def forget(self, partition: int, key: str) -> OutRecord:
        """Remove an entry (a tombstone on the compacted topic): as if it had never been written."""
        return self.record(partition, key, None)

    def command_entry(self, partition: int, cmd: Command, state: str, at: str, *, attempts: int,
                      outcome: str | None = None, external_id: str | None = None, reason: str | None = None,
                      detail: dict[str, Any] | None = None) -> OutRecord:
        value: dict[str, Any] = {
            "kind": "command", "command_id": cmd.key.command_id(), "uri": cmd.key.uri, "version": cmd.key.version,
            "target": cmd.target, "action": cmd.key.action.value, "state": state, "outcome": outcome,
            "external_id": external_id, "attempts": attempts, "reason": reason, "at": at,
        }
        if detail:
            value["detail"] = detail
        return self.record(partition, cmd.key.command_id(), value)

    def live_entry(self, partition: int, cmd: Command, at: str, *, external_id: str | None, retracted: bool,
                   detail: dict[str, Any] | None = None) -> OutRecord:
        value: dict[str, Any] = {
            "kind": "live", "uri": cmd.key.uri, "version": cmd.key.version, "target": cmd.target,
            "external_id": external_id, "retracted": retracted, "at": at, "detail": detail or {},
        }
        return self.record(partition, live_key(cmd.key.uri, cmd.target), value)
