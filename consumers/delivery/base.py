"""The ChannelAdapter interface every channel implements, and what it returns.

The delivery runtime (consumers/delivery/runtime.py) owns Kafka, the ledger, retries, rate limits,
receipts and commits. An adapter only turns one command into one effect at one platform.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from schemas.models import Command, Outcome
from schemas.topics import Channel


@dataclass(frozen=True)
class Effect:
    """What an adapter did. ``outcome`` is a receipt outcome: delivered, updated, deleted, skipped."""

    outcome: Outcome
    external_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Prior:
    """What the ledger knows of earlier effects for the same article at the same target.

    ``external_id`` is the id the platform gave the live effect (post id, message ids, object
    key), so an update edits it and a retraction deletes it. ``unknown_command_id`` is set when
    an earlier attempt of *this* command ended without an answer: reconcile before resending.
    """

    external_id: str | None = None
    version: int | None = None
    unknown_command_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    # Progress of a multi-step effect (e.g. a long Zalo text sent as numbered parts), saved in the
    # ledger so that a retry or a restarted worker resumes instead of repeating the first steps.
    progress: dict[str, Any] = field(default_factory=dict)
    save_progress: Callable[[dict[str, Any]], Awaitable[None]] | None = None
    # The live entry is a retraction (taken back, or withdrawn where it never went): there is
    # nothing at the target to take back again.
    retracted: bool = False


class ChannelAdapter(Protocol):
    """One channel. Implementations live in consumers/<channel>.py, one class per file.

    ``deliver`` raises the errors of consumers/delivery/errors.py; see there for what each does to the
    command. It must be safe to call again after OutcomeUnknown once ``reconcile`` said the
    effect does not exist.
    """

    channel: ClassVar[Channel]

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        """Produce the command's effect (publish, update or retract) and say what was done."""
        ...

    # Optional: ``def rate_scope(self, target: str) -> str`` names what the platform's limits apply
    # to (an account shared by many targets); without it, limits apply per target.
    # Optional: ``keeps_every_version = True``: versions older than the live one are delivered too
    # (the archive keeps history), not skipped as superseded.
    # Optional: ``def live_until(self, detail: dict) -> float | None``: when an effect stops being out
    # at the target by itself (a loudspeaker bulletin's expiry); its live ledger entry is removed then
    # (consumers/delivery/ledger.py). Without it, a live entry stays until retracted.

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        """After an unknown outcome: find the effect at the platform by our marker.

        Returns the Effect when it exists (the runtime records it, no resend), None when it
        certainly does not (the runtime may deliver). Raises TransientDeliveryError when the
        platform cannot tell right now.
        """
        ...


def article_marker(uri: str) -> str:
    """A short code that identifies our post for an article on a page: "Mã tin: LT-…"."""
    return "LT-" + hashlib.sha256(uri.encode()).hexdigest()[:10].upper()


def reply_detail(command: Command) -> dict[str, Any]:
    """What the ledger keeps of a delivered answer (the triage closes the question with it)."""
    payload = command.payload
    return {
        "question_id": payload.get("question_id"),
        "text": payload.get("answer") or payload.get("text"),
        "reply_to": payload.get("comment_id") or payload.get("reply_to"),
    }
