"""The Zalo emulator's webhooks (issue 8): a citizen writes in a group or to the OA and the
emulator POSTs the signed event to the subscriber (see ``zalo`` for the control routes)."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from infra.local.emulators.common import ControlError, WebhookSender, json_response, read_json
from infra.local.emulators.zalo_state import ZaloState

__all__ = ["ZaloWebhooks"]


class ZaloWebhooks(WebhookSender, ZaloState):
    """The webhook subscriber of ``ZaloState`` and the citizens' messages it is sent."""

    def _init_state(self) -> None:
        super()._init_state()
        self._init_webhooks()

    def _init_webhooks(self) -> None:
        self._subscription: dict[str, str] | None = None
        self._last_delivery: tuple[bytes, dict[str, str]] | None = None

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
        msg_id = f"{self.rng.getrandbits(128):032x}"
        timestamp = str(timestamp_ms if timestamp_ms is not None else int(self.clock() * 1000))
        message: dict[str, Any] = {"text": text, "msg_id": msg_id}
        if quote_msg_id:
            message["quote_msg_id"] = quote_msg_id
        event: dict[str, Any] = {"app_id": self.app_id, "oa_id": self.oa_id}
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
                "recipient": {"id": self.oa_id},
            }
        event |= {"message": message, "timestamp": timestamp}
        return orjson.dumps(event), msg_id, timestamp

    def webhook_headers(self, body: bytes, timestamp: str, signature: str = "valid") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if signature == "missing":
            return headers
        if signature == "malformed":  # not 64 hex digits
            headers["X-ZEvent-Signature"] = "mac=" + "é" * 64
            return headers
        if signature not in ("valid", "bad"):
            raise ControlError("signature is valid, bad, malformed or missing")
        secret = (self._subscription or {}).get("oa_secret_key", self.secret_key)
        key = secret if signature == "valid" else "not-the-oa-secret"
        digest = hashlib.sha256(self.app_id.encode() + body + timestamp.encode() + key.encode())
        headers["X-ZEvent-Signature"] = f"mac={digest.hexdigest()}"
        return headers

    async def _ctl_webhook_subscribe(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ControlError('expected {"url": ..., "oa_secret_key"?: ...}')
        self._subscription = {"url": url, "oa_secret_key": str(body.get("oa_secret_key") or self.secret_key)}
        return json_response({"subscribed": True, "url": url})

    async def _ctl_webhook_user_message(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise ControlError('expected {"group_id" | "user_id", "text", ...}')
        stamp = body.get("timestamp_ms")
        payload, msg_id, timestamp = self.webhook_body(
            body["text"],
            group_id=body.get("group_id"),
            user_id=body.get("user_id"),
            sender_id=str(body.get("sender_id") or "8421"),
            quote_msg_id=body.get("quote_msg_id"),
            timestamp_ms=int(stamp) if isinstance(stamp, (int, float)) else None,
        )
        headers = self.webhook_headers(payload, timestamp, str(body.get("signature", "valid")))
        return json_response({"msg_id": msg_id, **await self.deliver_webhook(payload, headers)})
