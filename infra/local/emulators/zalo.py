"""Zalo Official Account Open API v3 emulator (and its OAuth v4 token refresh), faithful to
``shared/design/channel-contracts.md``.

One app serves what Zalo splits over two hosts: ``openapi.zalo.me`` (``/v3.0/oa/...``) and
``oauth.zaloapp.com`` (``/v4/oa/access_token``); configure an adapter with the same base URL
for both.

- Auth: header ``access_token``. Envelope: HTTP 200 ``{"error": 0, "message": "Success",
  "data": {...}}``; failures HTTP 200 ``{"error": <negative>, "message": ...}`` (no ``data``);
  an expired token answers ``expired_error`` (-216 by default, or -220) with HTTP
  ``expiry_http_status`` (200 by default, or 401).
- ``POST /v3.0/oa/group/message`` ``{"recipient": {"group_id"}, "message": {"text" |
  "attachment"}}`` → ``data.message_id``. Text over ``text_limit`` (2,000) code points → -210;
  unknown group → ``unknown_group_error`` (-237 or -403), a ``disabled`` group → -237, a group
  the OA is ``not_member`` of → -403.
- ``POST /v3.0/oa/message/cs`` (and ``/message/transaction``) to a follower's ``user_id``
  (-213 otherwise); ``/message/promotion`` also refuses 22:00-06:00 local time (-234).
- ``GET /v3.0/oa/quota/message`` → ``data = {"total", "used", "remain", "window_start",
  "reset_at"}`` (epoch ms). The shape is this emulator's own [guess]: the contract names only
  the endpoint. Every message sent counts against ``quota_limit`` per fixed window of
  ``quota_window_s`` aligned to local midnight (UTC+7); an exhausted quota → -211.
- About ``rate_limit_per_s`` (20) API calls per second per OA, else -32; measured on the
  monotonic wall clock even when the emulator runs on a ``ManualClock``.
- ``POST /v4/oa/access_token`` (form ``refresh_token``, ``app_id``,
  ``grant_type=refresh_token``; header ``secret_key``) → ``{"access_token", "refresh_token",
  "expires_in": "<seconds as a string>"}``. Refresh tokens are single use; a used, unknown or
  expired one → ``{"error_name", "error_reason", "ref_doc", "error_description",
  "error": -14020}`` (the shape of Zalo's OAuth errors: no ``message`` key). A new access token
  makes the older ones invalid (-216) after ``refresh_grace_s`` (default 0).

Error texts marked [guess] in ``ERROR_MESSAGES`` are not from Zalo's documentation; match on
the codes, never on the texts.

Webhooks (issue 8; the section "webhooks" at the end of the class):

- ``POST /_control/webhooks/subscribe {"url", "oa_secret_key"?}``: where events go, and the OA
  secret key they are signed with (default: the app's ``secret_key``).
- ``POST /_control/webhooks/user_message {"group_id" | "user_id", "text", "sender_id"?,
  "quote_msg_id"?, "timestamp_ms"?, "signature"?: valid|bad|malformed|missing}``: a citizen writes in a
  group (``user_send_group_text``, ``recipient.id`` and ``group_id`` = the group [guess]) or to the
  OA (``user_send_text``, ``recipient.id`` = the OA); the emulator POSTs ``{"app_id",
  "event_name", "sender": {"id"}, "recipient": {"id"}, "message": {"text", "msg_id"},
  "timestamp"}`` with ``X-ZEvent-Signature`` = hex SHA-256 of app_id + body + timestamp + OA
  secret key, and answers ``{"msg_id", "status", "body", "elapsed_s"}``. ``timestamp_ms`` sends
  an old (or future) timestamp, correctly signed.
- ``POST /_control/webhooks/replay``: POST the last delivery again, byte for byte.

Replies to citizens are ordinary group or ``cs`` messages (``GET /_control/messages``).

This module is the HTTP side (the API, its envelope and faults, the control routes) and
``ZaloEmulator``, which holds its parts: ``state`` (a ``zalo_state.ZaloState``: settings, groups,
followers, tokens, quota, messages) and ``webhooks`` (a ``zalo_webhooks.ZaloWebhooks`` over that
state and a ``ZaloWebhookSender``); the error codes, records and attachment check are in
``zalo_model``. The OA's settings and counters are attributes of the emulator too (they are the
state's, read and set through it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any, ClassVar, Generic, TypeVar, overload

import orjson
from aiohttp import web

from infra.local.emulators.common import (
    ControlError,
    EmulatorBase,
    Handler,
    json_response,
    read_json,
    set_outcome,
)
from infra.local.emulators.faults import Fault
from infra.local.emulators.zalo_model import (
    BAD_GATEWAY_HTML,
    AccessToken,
    OAuthError,
    ZaloError,
    ZaloMessage,
    check_attachment,
)
from infra.local.emulators.zalo_state import ZaloState
from infra.local.emulators.zalo_webhooks import ZaloWebhooks, ZaloWebhookSender

__all__ = ["ZaloEmulator"]

T = TypeVar("T")


class OfState(Generic[T]):
    """An attribute of ``ZaloEmulator`` that is the same-named attribute of its ``state``: read
    and set in process, by ``POST /_control/config`` and by ``reset()`` through the emulator."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any]) -> OfState[T]: ...

    @overload
    def __get__(self, obj: ZaloEmulator, owner: type[Any]) -> T: ...

    def __get__(self, obj: ZaloEmulator | None, owner: type[Any]) -> OfState[T] | T:
        if obj is None:
            return self
        value: T = getattr(obj.state, self.name)
        return value

    def __set__(self, obj: ZaloEmulator, value: T) -> None:
        setattr(obj.state, self.name, value)


class ZaloEmulator(EmulatorBase):
    """The Zalo OA Open API and OAuth server of one OA of one app: the HTTP routes over ``state``
    (what the OA holds) and ``webhooks`` (citizens' messages to the subscriber)."""

    name: ClassVar[str] = "zalo"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "access_token_lifetime_s": float,
        "refresh_token_lifetime_s": float,
        "refresh_grace_s": float,
        "expired_error": int,
        "expiry_http_status": int,
        "unknown_group_error": int,
        "quota_limit": int,
        "quota_window_s": float,
        "rate_limit_per_s": int,
        "text_limit": int,
    }

    app_id = OfState[str]()
    secret_key = OfState[str]()
    oa_id = OfState[str]()
    access_token_lifetime_s = OfState[float]()
    refresh_token_lifetime_s = OfState[float]()
    refresh_grace_s = OfState[float]()
    expired_error = OfState[int]()
    expiry_http_status = OfState[int]()
    unknown_group_error = OfState[int]()
    quota_limit = OfState[int]()
    quota_window_s = OfState[float]()
    quota_tz_offset_s = OfState[float]()
    rate_limit_per_s = OfState[int]()
    text_limit = OfState[int]()
    rate_limited = OfState[int]()
    peak_calls_per_s = OfState[int]()

    def __init__(
        self,
        *,
        app_id: str = "lantoa-demo-app",
        secret_key: str = "lantoa-demo-secret",
        oa_id: str = "lantoa-demo-oa",
        groups: Mapping[str, str] | Iterable[str] = (),
        followers: Iterable[str] = (),
        access_token: str = "zalo-access-0",
        refresh_token: str = "zalo-refresh-0",
        access_token_lifetime_s: float = 90000.0,
        refresh_token_lifetime_s: float = 90 * 86400.0,
        refresh_grace_s: float = 0.0,
        expired_error: int = -216,
        expiry_http_status: int = 200,
        unknown_group_error: int = -237,
        quota_limit: int = 5000,
        quota_window_s: float = 86400.0,
        quota_tz_offset_s: float = 7 * 3600.0,
        rate_limit_per_s: int = 20,
        text_limit: int = 2000,
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
    ) -> None:
        super().__init__(clock=clock, seed=seed)
        self.state = ZaloState(
            app_id=app_id,
            secret_key=secret_key,
            oa_id=oa_id,
            groups=groups,
            followers=followers,
            access_token=access_token,
            refresh_token=refresh_token,
            access_token_lifetime_s=access_token_lifetime_s,
            refresh_token_lifetime_s=refresh_token_lifetime_s,
            refresh_grace_s=refresh_grace_s,
            expired_error=expired_error,
            expiry_http_status=expiry_http_status,
            unknown_group_error=unknown_group_error,
            quota_limit=quota_limit,
            quota_window_s=quota_window_s,
            quota_tz_offset_s=quota_tz_offset_s,
            rate_limit_per_s=rate_limit_per_s,
            text_limit=text_limit,
            clock=self.clock,
            rng=self.rng,
            next_seq=self.next_seq,
        )
        self.webhooks = ZaloWebhooks(self.state, ZaloWebhookSender())
        self._snapshot_config()

    def reset(self) -> None:
        super().reset()
        self.state.reset()
        self.webhooks.reset()

    # ----- in-process API (the state's and the webhooks', for tests) -------------------------

    def messages(self, recipient: str | None = None, *, kind: str | None = None) -> list[ZaloMessage]:
        """Every message sent, in order, optionally to one group/user or of one kind."""
        return self.state.messages(recipient, kind=kind)

    @property
    def refresh_count(self) -> int:
        """Successful token refreshes so far."""
        return self.state.refresh_count

    def refreshes(self) -> list[dict[str, Any]]:
        return self.state.refreshes()

    @property
    def access_token(self) -> str:
        """The newest access token."""
        return self.state.access_token

    @property
    def refresh_token(self) -> str:
        """The newest refresh token (it may already have been used)."""
        return self.state.refresh_token

    def expire_access_token(self, token: str | None = None, *, at: float | None = None) -> None:
        """Make ``token`` (default: the newest access token) expire at ``at`` (default now)."""
        self.state.expire_access_token(token, at=at)

    def issue_tokens(self) -> dict[str, str]:
        """A fresh token pair, as when the OA admin authorises the app again."""
        return self.state.issue_tokens()

    def set_group(self, group_id: str, status: str = "active") -> None:
        self.state.set_group(group_id, status)

    def set_follower(self, user_id: str, following: bool = True) -> None:
        self.state.set_follower(user_id, following)

    def quota(self) -> dict[str, Any]:
        return self.state.quota()

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
        return self.webhooks.webhook_body(
            text,
            group_id=group_id,
            user_id=user_id,
            sender_id=sender_id,
            quote_msg_id=quote_msg_id,
            timestamp_ms=timestamp_ms,
        )

    def webhook_headers(self, body: bytes, timestamp: str, signature: str = "valid") -> dict[str, str]:
        return self.webhooks.webhook_headers(body, timestamp, signature)

    async def deliver_webhook(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """POST one delivery to the subscriber; its answer and how long it took."""
        return await self.webhooks.sender.deliver_webhook(body, headers)

    # ----- HTTP plumbing ---------------------------------------------------------------------

    def _add_api_routes(self) -> None:
        r = self.app.router
        r.add_post("/v3.0/oa/group/message", self._api(self._group_message))
        for kind in ("cs", "transaction", "promotion"):
            r.add_post(f"/v3.0/oa/message/{kind}", self._api(self._user_message))
        r.add_get("/v3.0/oa/group/conversation", self._api(self._group_conversation))
        r.add_get("/v3.0/oa/quota/message", self._api(self._quota))
        r.add_post("/v3.0/oa/quota/message", self._api(self._quota))
        r.add_post("/v4/oa/access_token", self._oauth_access_token)

    def _error_response(self, request: web.Request, err: ZaloError) -> web.Response:
        set_outcome(request, f"error:{err.code}")
        return json_response({"error": err.code, "message": err.message}, status=err.http_status)

    def _api(self, fn: Callable[[web.Request, Any], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            raw = await request.read()
            try:
                body: Any = orjson.loads(raw) if raw else {}
            except orjson.JSONDecodeError:
                body = None
            recipient = body.get("recipient") if isinstance(body, dict) else None
            target = None
            if isinstance(recipient, dict):
                found = recipient.get("group_id") or recipient.get("user_id")
                target = found if isinstance(found, str) else None

            async def action() -> web.StreamResponse:
                try:
                    data = fn(request, body)
                except ZaloError as err:
                    return self._error_response(request, err)
                set_outcome(request, "ok")
                return json_response({"error": 0, "message": "Success", "data": data})

            return await self.guarded(request, target, action)

        return handler

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        if fault.kind == "rate_limit":
            err = ZaloError(
                fault.code if fault.code is not None else -32,
                fault.message,
                http_status=fault.http_status or 200,
            )
        elif fault.kind == "server_error" and fault.code is None:
            status = fault.http_status or 502
            set_outcome(request, f"http:{status}")
            return web.Response(status=status, text=BAD_GATEWAY_HTML, content_type="text/html")
        elif fault.kind == "expire_token":
            self.state.expire_now(request.headers.get("access_token", ""))
            err = ZaloError(
                self.expired_error, fault.message, http_status=fault.http_status or self.expiry_http_status
            )
        else:  # "error", or "server_error" with a code (e.g. -1)
            err = ZaloError(
                fault.code if fault.code is not None else -1,
                fault.message,
                http_status=fault.http_status or 200,
            )
        return self._error_response(request, err)

    # ----- the API ---------------------------------------------------------------------------

    def _authenticated_call(self, request: web.Request) -> AccessToken:
        """The request's access token, if good, and the call counted against the rate limit."""
        token = self.state.authenticate(request.headers.get("access_token", ""))
        self.state.count_call()
        return token

    def _message_body(self, body: Any, recipient_key: str) -> tuple[str, str | None, dict[str, Any] | None]:
        if not isinstance(body, dict):
            raise ZaloError(-201, "Parameters invalid: the body must be a JSON object")
        recipient = body.get("recipient")
        target = recipient.get(recipient_key) if isinstance(recipient, dict) else None
        if not isinstance(target, str) or not target:
            raise ZaloError(-201, f"Parameters invalid: recipient.{recipient_key} is required")
        message = body.get("message")
        if not isinstance(message, dict):
            raise ZaloError(-201, "Parameters invalid: message is required")
        text, attachment = message.get("text"), message.get("attachment")
        if text is None and attachment is None:
            raise ZaloError(-201, "Parameters invalid: message.text or message.attachment")
        if text is not None:
            if not isinstance(text, str) or not text.strip():
                raise ZaloError(-201, "Parameters invalid: message.text must be a non-empty string")
            if len(text) > self.text_limit:
                raise ZaloError(
                    -210,
                    f"Parameter exceeds the allowed limit: message.text is "
                    f"{len(text)} characters, at most {self.text_limit}",
                )
        if attachment is not None:
            check_attachment(attachment)
        return target, text, attachment

    def _group_message(self, request: web.Request, body: Any) -> dict[str, Any]:
        token = self._authenticated_call(request)
        group_id, text, attachment = self._message_body(body, "group_id")
        status = self.state.group_status(group_id)
        if status is None:
            raise ZaloError(self.unknown_group_error)
        if status == "disabled":
            raise ZaloError(-237)
        if status == "not_member":
            raise ZaloError(-403)
        self.state.use_quota()
        return {"message_id": self.state.record("group", group_id, text, attachment, token).message_id}

    def _group_conversation(self, request: web.Request, body: Any) -> Any:
        """Recent messages the OA sent to a group, newest first (GMF "group conversation").

        [guess] shape: data is a list of {message_id, src (0 = from the OA), time (ms), type,
        message, from_id, to_id}; offset/count paginate, count at most 50.
        """
        self._authenticated_call(request)
        group_id = request.query.get("group_id", "")
        if self.state.group_status(group_id) is None:
            raise ZaloError(self.unknown_group_error)
        try:
            offset = max(0, int(request.query.get("offset", "0")))
            count = int(request.query.get("count", "10"))
        except ValueError:
            raise ZaloError(-201, "Parameters invalid: offset and count must be integers") from None
        if not 1 <= count <= 50:
            raise ZaloError(-201, "Parameters invalid: count must be between 1 and 50")
        sent = list(reversed(self.state.messages(group_id, kind="group")))
        return [
            {
                "message_id": m.message_id,
                "src": 0,
                "time": int(m.time * 1000),
                "type": "text",
                "message": m.text,
                "from_id": self.oa_id,
                "to_id": group_id,
            }
            for m in sent[offset : offset + count]
        ]

    def _user_message(self, request: web.Request, body: Any) -> dict[str, Any]:
        token = self._authenticated_call(request)
        kind = request.path.rsplit("/", 1)[-1]
        user_id, text, attachment = self._message_body(body, "user_id")
        if not self.state.is_follower(user_id):
            raise ZaloError(-213)
        if kind == "promotion":
            hour = self.state.local_hour()
            if hour >= 22 or hour < 6:
                raise ZaloError(-234)
        self.state.use_quota()
        message = self.state.record(kind, user_id, text, attachment, token)
        return {"message_id": message.message_id, "user_id": user_id}

    def _quota(self, request: web.Request, body: Any) -> dict[str, Any]:
        self._authenticated_call(request)
        return self.state.quota()

    async def _oauth_access_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        async def action() -> web.StreamResponse:
            try:
                body = self.state.refresh(
                    request.headers.get("secret_key"), {k: str(v) for k, v in form.items()}
                )
            except OAuthError as err:
                set_outcome(request, f"error:{err.code}")
                return json_response(err.body())
            set_outcome(request, "ok")
            return json_response(body)

        return await self.guarded(request, None, action)

    # ----- control API -----------------------------------------------------------------------

    def _add_control_routes(self) -> None:
        r = self.app.router
        r.add_get("/_control/messages", self._ctl_messages)
        r.add_get("/_control/tokens", self._ctl_tokens)
        r.add_post("/_control/tokens/expire", self._ctl_expire)
        r.add_post("/_control/tokens/issue", self._ctl_issue)
        r.add_get("/_control/refreshes", self._ctl_refreshes)
        r.add_post("/_control/groups", self._ctl_groups)
        r.add_post("/_control/followers", self._ctl_followers)
        r.add_get("/_control/quota", self._ctl_quota)
        r.add_post("/_control/webhooks/subscribe", self._ctl_webhook_subscribe)
        r.add_post("/_control/webhooks/user_message", self._ctl_webhook_user_message)
        r.add_post("/_control/webhooks/replay", self._ctl_webhook_replay)

    def stats_json(self) -> dict[str, Any]:
        data = super().stats_json()
        data["refresh_count"] = self.refresh_count
        data["messages"] = len(self.state.messages())
        return data

    async def _ctl_messages(self, request: web.Request) -> web.StreamResponse:
        found = self.messages(request.query.get("recipient"), kind=request.query.get("kind"))
        return json_response({"messages": [m.to_json() for m in found]})

    async def _ctl_tokens(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "access_token": self.access_token,
                "refresh_token": self.refresh_token,
                "refresh_count": self.refresh_count,
                "access_tokens": [asdict(t) for t in self.state.access_tokens()],
                "refresh_tokens": [asdict(t) for t in self.state.refresh_tokens()],
            }
        )

    async def _ctl_expire(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        if token is not None and not self.state.has_access_token(token):
            raise ControlError("unknown access token", status=404)
        self.expire_access_token(token, at=body.get("at") if isinstance(body, dict) else None)
        return json_response({"ok": True})

    async def _ctl_issue(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.issue_tokens())

    async def _ctl_refreshes(self, request: web.Request) -> web.StreamResponse:
        return json_response({"refresh_count": self.refresh_count, "refreshes": self.refreshes()})

    async def _ctl_groups(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        group_id = body.get("group_id") if isinstance(body, dict) else None
        if not isinstance(group_id, str) or not group_id:
            raise ControlError('expected {"group_id": ..., "status": "active"|"disabled"|"not_member"}')
        try:
            self.set_group(group_id, str(body.get("status", "active")))
        except ValueError as exc:
            raise ControlError(str(exc)) from exc
        return json_response({"groups": self.state.groups()})

    async def _ctl_followers(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user_id = body.get("user_id") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise ControlError('expected {"user_id": ..., "following": true|false}')
        self.set_follower(user_id, bool(body.get("following", True)))
        return json_response({"followers": self.state.followers()})

    async def _ctl_quota(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.quota())

    # ----- webhooks --------------------------------------------------------------------------

    async def _ctl_webhook_subscribe(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        url = body.get("url") if isinstance(body, dict) else None
        if not isinstance(url, str) or not url:
            raise ControlError('expected {"url": ..., "oa_secret_key"?: ...}')
        secret = body.get("oa_secret_key")
        self.webhooks.subscribe(url, str(secret) if secret else None)
        return json_response({"subscribed": True, "url": url})

    async def _ctl_webhook_user_message(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            raise ControlError('expected {"group_id" | "user_id", "text", ...}')
        stamp = body.get("timestamp_ms")
        reply = await self.webhooks.user_message(
            body["text"],
            group_id=body.get("group_id"),
            user_id=body.get("user_id"),
            sender_id=str(body.get("sender_id") or "8421"),
            quote_msg_id=body.get("quote_msg_id"),
            timestamp_ms=int(stamp) if isinstance(stamp, (int, float)) else None,
            signature=str(body.get("signature", "valid")),
        )
        return json_response(reply)

    async def _ctl_webhook_replay(self, request: web.Request) -> web.StreamResponse:
        return await self.webhooks.sender.replay(request)
