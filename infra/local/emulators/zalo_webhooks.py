"""The Zalo emulator's webhooks (issue 8): a citizen writes in a group or to the OA and the
emulator POSTs the signed event to the subscriber (see ``zalo`` for the control routes that
drive them)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from infra.local.emulators.common import ControlError, WebhookSender
from infra.local.emulators.zalo_state import ZaloState

__all__ = ["ZaloWebhookSender", "ZaloWebhooks"]


class ZaloWebhookSender(WebhookSender):
    """``common.WebhookSender`` with its subscriber set through ``subscribe``: the URL events go
    to and the OA secret key they are signed with."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """No subscriber, nothing delivered."""
        self._subscription = None
        self._last_delivery = None

    def subscribe(self, url: str, oa_secret_key: str) -> None:
        self._subscription = {"url": url, "oa_secret_key": oa_secret_key}

    @property
    def subscription(self) -> dict[str, str] | None:
        """A copy of ``{"url", "oa_secret_key"}``, or None before ``subscribe``."""
        return None if self._subscription is None else dict(self._subscription)

    async def replay(self, request: web.Request) -> web.StreamResponse:
        """``POST /_control/webhooks/replay``: the last delivery again, byte for byte."""
        return await self._ctl_webhook_replay(request)


class ZaloWebhooks:
    """The citizens' messages of ``state``'s OA, signed as Zalo signs them and delivered by
    ``sender`` to its subscriber."""

    def __init__(self, state: ZaloState, sender: ZaloWebhookSender) -> None:
        self.state = state
        self.sender = sender

    def reset(self) -> None:
        self.sender.reset()

    def subscribe(self, url: str, oa_secret_key: str | None = None) -> None:
        """Send events to ``url``, signed with ``oa_secret_key`` (default: the app's secret key)."""
        self.sender.subscribe(url, oa_secret_key or self.state.secret_key)

    def webhook_body(
        self,
        text: str,
        *,
        group_id: str | None = None,
        user_id: str | None = None,
        sender_id: str = "8421",
        quote_msg_id: str | None = None,
        timestamp_ms: int | None = None,
    ) -> tuple[bytes, str, str]:
        """(body, msg_id, timestamp) of a citizen's message in a group or to the OA."""
        if bool(group_id) == bool(user_id):
            raise ControlError("give group_id or user_id")
        state = self.state
        msg_id = f"{state.rng.getrandbits(128):032x}"
        timestamp = str(timestamp_ms if timestamp_ms is not None else int(state.clock() * 1000))
        message: dict[str, Any] = {"text": text, "msg_id": msg_id}
        if quote_msg_id:
            message["quote_msg_id"] = quote_msg_id
        event: dict[str, Any] = {"app_id": state.app_id, "oa_id": state.oa_id}
        if group_id:
            event |= {
                "event_name": "user_send_group_text",
                "group_id": group_id,
                "sender": {"id": sender_id},
                "recipient": {"id": group_id},
            }
        else:
            event |= {
                "event_name": "user_send_text",
                "sender": {"id": user_id},
                "recipient": {"id": state.oa_id},
            }
        event |= {"message": message, "timestamp": timestamp}
        return orjson.dumps(event), msg_id, timestamp

    def webhook_headers(self, body: bytes, timestamp: str, signature: str = "valid") -> dict[str, str]:
        """The headers of a delivery: ``signature`` is valid, bad (another key), malformed (not
        64 hex digits) or missing."""
        headers = {"Content-Type": "application/json"}
        if signature == "missing":
            return headers
        if signature == "malformed":  # not 64 hex digits
            headers["X-ZEvent-Signature"] = "mac=" + "é" * 64
            return headers
        if signature not in ("valid", "bad"):
            raise ControlError("signature is valid, bad, malformed or missing")
        secret = (self.sender.subscription or {}).get("oa_secret_key", self.state.secret_key)
        key = secret if signature == "valid" else "not-the-oa-secret"
        digest = hashlib.sha256(self.state.app_id.encode() + body + timestamp.encode() + key.encode())
        headers["X-ZEvent-Signature"] = f"mac={digest.hexdigest()}"
        return headers

    async def user_message(
        self,
        text: str,
        *,
        group_id: str | None = None,
        user_id: str | None = None,
        sender_id: str = "8421",
        quote_msg_id: str | None = None,
        timestamp_ms: int | None = None,
        signature: str = "valid",
    ) -> dict[str, Any]:
        """Deliver a citizen's message to the subscriber: ``{"msg_id", "status", "body",
        "elapsed_s"}``."""
        payload, msg_id, timestamp = self.webhook_body(
            text,
            group_id=group_id,
            user_id=user_id,
            sender_id=sender_id,
            quote_msg_id=quote_msg_id,
            timestamp_ms=timestamp_ms,
        )
        headers = self.webhook_headers(payload, timestamp, signature)
        return {"msg_id": msg_id, **await self.sender.deliver_webhook(payload, headers)}
