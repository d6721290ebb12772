"""Errors shared by the content validators (ninjs today, CAP later)."""

from __future__ import annotations

__all__ = ["InvalidContent"]


class InvalidContent(Exception):
    """The payload can never be processed: do not retry, dead-letter it with `reason`.

    Raised for permanent, content-level problems (not JSON, wrong shape, fails the
    schema...).  Retrying the same bytes can only fail the same way, so callers
    must route the message to the dead-letter topic with `reason` attached instead
    of retrying.  Transient problems (broker, network, disk) must never be
    reported with this exception.
    """

    reason: str

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason
