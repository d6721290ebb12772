"""Errors a channel adapter raises. Each says what happens next to the command and its offset.

Adapters raise; they never return False. The runtime maps each class to one path:

- ``PermanentDeliveryError`` (and ``InvalidContent``): never retried → dead letter with the reason.
- ``TransientDeliveryError(retry_after)``: retried, first in process with jittered backoff, then
  through a delayed retry topic; dead-lettered after the policy's attempt limit.
- ``TargetPaused(retry_after)``: the target (page, OA, zone) must wait (rate limit, quota,
  expired token, policy block): the runtime parks this target's commands, the partition goes on.
- ``OutcomeUnknown``: the request left and no answer came back. The ledger marks the command
  "unknown" and the next attempt reconciles with the platform (find the effect by our marker)
  before sending again.
Anything else is a bug: the worker exits without committing, and the command is replayed.
"""

from __future__ import annotations

__all__ = ["PermanentDeliveryError", "TransientDeliveryError", "TargetPaused", "OutcomeUnknown"]


class PermanentDeliveryError(Exception):
    """The platform refused for good (bad parameter, permission, group gone): dead letter."""

    def __init__(self, reason: str, *, code: str | None = None, alert: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code
        self.alert = alert


class TransientDeliveryError(Exception):
    """Worth retrying later (5xx, connection refused before sending, throttling of the call)."""

    def __init__(self, reason: str, retry_after: float | None = None, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.code = code


class TargetPaused(Exception):
    """This target must not be called for ``retry_after`` seconds; other targets go on."""

    def __init__(
        self, reason: str, retry_after: float, *, code: str | None = None, alert: bool = False
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.code = code
        self.alert = alert


class OutcomeUnknown(Exception):
    """The request was sent and no answer came: the effect may or may not exist."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
