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
  "quote_msg_id"?, "timestamp_ms"?, "signature"?: valid|bad|missing}``: a citizen writes in a
  group (``user_send_group_text``, ``recipient.id`` and ``group_id`` = the group [guess]) or to the
  OA (``user_send_text``, ``recipient.id`` = the OA); the emulator POSTs ``{"app_id",
  "event_name", "sender": {"id"}, "recipient": {"id"}, "message": {"text", "msg_id"},
  "timestamp"}`` with ``X-ZEvent-Signature`` = hex SHA-256 of app_id + body + timestamp + OA
  secret key, and answers ``{"msg_id", "status", "body", "elapsed_s"}``. ``timestamp_ms`` sends
  an old (or future) timestamp, correctly signed.
- ``POST /_control/webhooks/replay``: POST the last delivery again, byte for byte.

Replies to citizens are ordinary group or ``cs`` messages (``GET /_control/messages``).
"""

from __future__ import annotations

import collections
import hashlib
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import orjson
from aiohttp import web

from infra.emulators.common import (
    ControlError,
    EmulatorBase,
    Fault,
    Handler,
    json_response,
    read_json,
    WebhookSender,
    set_outcome,
)

__all__ = ["GROUP_STATUSES", "ZaloEmulator", "ZaloError", "ZaloMessage"]

ERROR_MESSAGES = {
    -1: "Unknown error",                                              # [guess]
    -32: "The number of API calls exceeded the limit",                # [guess]
    -201: "Parameters invalid",
    -204: "Official Account has been disabled",                       # [guess]
    -205: "Official Account does not exist",                          # [guess]
    -210: "Parameter exceeds the allowed limit",                      # [guess]
    -211: "Out of quota",
    -213: "User has not followed the Official Account",               # [guess]
    -216: "Access token is invalid",
    -220: "Access token has expired",                                 # [guess]
    -223: "Official Account is not authorised to use this feature",   # [guess]
    -224: "Official Account tier does not allow this feature",        # [guess]
    -230: "User has not interacted with the OA in the last 7 days",   # [guess]
    -232: "User has not interacted with the OA",                      # [guess]
    -234: "Promotion messages cannot be sent from 22:00 to 06:00",    # [guess]
    -237: "Group has been disabled",                                  # [guess]
    -403: "Official Account is not a member of this group",           # [guess]
}
OAUTH_REF_DOC = ("https://developers.zalo.me/docs/official-account/bat-dau/"
                 "xac-thuc-va-uy-quyen-cho-ung-dung-new")
GROUP_STATUSES = frozenset({"active", "disabled", "not_member"})
BUTTON_TYPES = frozenset({"oa.open.url", "oa.query.show", "oa.query.hide", "oa.open.sms",
                          "oa.open.phone"})
BAD_GATEWAY_HTML = ("<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
                    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")


class ZaloError(Exception):
    """A Zalo API error reply (negative code, HTTP status)."""

    def __init__(self, code: int, message: str | None = None, *, http_status: int = 200) -> None:
        self.code = code
        self.message = message if message is not None else ERROR_MESSAGES.get(code, "Error")
        super().__init__(self.message)
        self.http_status = http_status


class OAuthError(Exception):
    """An error of Zalo's OAuth v4 server."""

    def __init__(self, code: int, reason: str, description: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.description = description

    def body(self) -> dict[str, Any]:
        return {"error_name": "Invalid parameter", "error_reason": self.reason,
                "ref_doc": OAUTH_REF_DOC, "error_description": self.description,
                "error": self.code}


@dataclass
class ZaloMessage:
    """One message the OA sent (``kind``: group | cs | transaction | promotion)."""

    seq: int
    time: float
    message_id: str
    kind: str
    recipient: str
    text: str | None
    attachment: dict[str, Any] | None
    access_token: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class AccessToken:
    token: str
    issued_at: float
    expires_at: float
    invalid_after: float | None = None


@dataclass
class RefreshToken:
    token: str
    issued_at: float
    expires_at: float
    used_at: float | None = None


class ZaloEmulator(WebhookSender, EmulatorBase):
    """One OA of one app: its groups (``{group_id: "active" | "disabled" | "not_member"}``),
    followers, token pair, quota and rate limit."""

    name: ClassVar[str] = "zalo"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "access_token_lifetime_s": float, "refresh_token_lifetime_s": float,
        "refresh_grace_s": float, "expired_error": int, "expiry_http_status": int,
        "unknown_group_error": int, "quota_limit": int, "quota_window_s": float,
        "rate_limit_per_s": int, "text_limit": int,
    }

    def __init__(self, *, app_id: str = "lantoa-demo-app", secret_key: str = "lantoa-demo-secret",
                 oa_id: str = "lantoa-demo-oa",
                 groups: Mapping[str, str] | Iterable[str] = (), followers: Iterable[str] = (),
                 access_token: str = "zalo-access-0", refresh_token: str = "zalo-refresh-0",
                 access_token_lifetime_s: float = 90000.0,
                 refresh_token_lifetime_s: float = 90 * 86400.0, refresh_grace_s: float = 0.0,
                 expired_error: int = -216, expiry_http_status: int = 200,
                 unknown_group_error: int = -237, quota_limit: int = 5000,
                 quota_window_s: float = 86400.0, quota_tz_offset_s: float = 7 * 3600.0,
                 rate_limit_per_s: int = 20, text_limit: int = 2000,
                 clock: Callable[[], float] | None = None, seed: int | None = None) -> None:
        if expired_error not in (-216, -220):
            raise ValueError("expired_error is -216 or -220")
        if unknown_group_error not in (-237, -403):
            raise ValueError("unknown_group_error is -237 or -403")
        self.app_id = app_id
        self.secret_key = secret_key
        self.oa_id = oa_id
        self.access_token_lifetime_s = access_token_lifetime_s
        self.refresh_token_lifetime_s = refresh_token_lifetime_s
        self.refresh_grace_s = refresh_grace_s
        self.expired_error = expired_error
        self.expiry_http_status = expiry_http_status
        self.unknown_group_error = unknown_group_error
        self.quota_limit = quota_limit
        self.quota_window_s = quota_window_s
        self.quota_tz_offset_s = quota_tz_offset_s
        self.rate_limit_per_s = rate_limit_per_s
        self.text_limit = text_limit
        self._initial_groups = (dict(groups) if isinstance(groups, Mapping)
                                else {g: "active" for g in groups})
        for status in self._initial_groups.values():
            if status not in GROUP_STATUSES:
                raise ValueError(f"group status {status!r} not in {sorted(GROUP_STATUSES)}")
        self._initial_followers = set(followers)
        self._initial_tokens = (access_token, refresh_token)
        super().__init__(clock=clock, seed=seed)
        self._init_state()
        self._snapshot_config()

    def _init_state(self) -> None:
        now = self.clock()
        self._groups: dict[str, str] = dict(self._initial_groups)
        self._followers: set[str] = set(self._initial_followers)
        self._messages: list[ZaloMessage] = []
        self._quota_used: dict[float, int] = {}
        self._calls: collections.deque[float] = collections.deque()
        self._refreshes: list[dict[str, Any]] = []
        access, refresh = self._initial_tokens
        self._access: dict[str, AccessToken] = {
            access: AccessToken(access, now, now + self.access_token_lifetime_s)}
        self._refresh: dict[str, RefreshToken] = {
            refresh: RefreshToken(refresh, now, now + self.refresh_token_lifetime_s)}
        self._current = (access, refresh)
        self._init_webhooks()

    def reset(self) -> None:
        super().reset()
        self._init_state()

    # ----- in-process API --------------------------------------------------------------------

    def messages(self, recipient: str | None = None, *,
                 kind: str | None = None) -> list[ZaloMessage]:
        """Every message sent, in order, optionally to one group/user or of one kind."""
        return [m for m in self._messages if (recipient is None or m.recipient == recipient)
                and (kind is None or m.kind == kind)]

    @property
    def refresh_count(self) -> int:
        """Successful token refreshes so far."""
        return len(self._refreshes)

    def refreshes(self) -> list[dict[str, Any]]:
        return list(self._refreshes)

    @property
    def access_token(self) -> str:
        """The newest access token."""
        return self._current[0]

    @property
    def refresh_token(self) -> str:
        """The newest refresh token (it may already have been used)."""
        return self._current[1]

    def expire_access_token(self, token: str | None = None, *, at: float | None = None) -> None:
        """Make ``token`` (default: the newest access token) expire at ``at`` (default now)."""
        self._access[token or self.access_token].expires_at = self.clock() if at is None else at

    def issue_tokens(self) -> dict[str, str]:
        """A fresh token pair, as when the OA admin authorises the app again; every older
        refresh token stops working and older access tokens follow after the grace period."""
        now = self.clock()
        for rt in self._refresh.values():
            if rt.used_at is None:
                rt.used_at = now
        return self._issue_pair(now)

    def set_group(self, group_id: str, status: str = "active") -> None:
        if status not in GROUP_STATUSES:
            raise ValueError(f"group status {status!r} not in {sorted(GROUP_STATUSES)}")
        self._groups[group_id] = status

    def set_follower(self, user_id: str, following: bool = True) -> None:
        if following:
            self._followers.add(user_id)
        else:
            self._followers.discard(user_id)

    def quota(self) -> dict[str, Any]:
        start = self._quota_window_start()
        used = self._quota_used.get(start, 0)
        return {"total": self.quota_limit, "used": used, "remain": max(0, self.quota_limit - used),
                "window_start": int(start * 1000),
                "reset_at": int((start + self.quota_window_s) * 1000)}

    # ----- tokens, limits ----------------------------------------------------------------------

    def _new_token(self, prefix: str) -> str:
        return f"{prefix}-{self.rng.getrandbits(192):048x}"

    def _issue_pair(self, now: float) -> dict[str, str]:
        for at in self._access.values():
            if at.invalid_after is None:
                at.invalid_after = now + self.refresh_grace_s
        access, refresh = self._new_token("zat"), self._new_token("zrt")
        self._access[access] = AccessToken(access, now, now + self.access_token_lifetime_s)
        self._refresh[refresh] = RefreshToken(refresh, now, now + self.refresh_token_lifetime_s)
        self._current = (access, refresh)
        return {"access_token": access, "refresh_token": refresh,
                "expires_in": str(int(self.access_token_lifetime_s))}

    def _authenticate(self, request: web.Request) -> AccessToken:
        now = self.clock()
        token = self._access.get(request.headers.get("access_token", ""))
        if token is None or (token.invalid_after is not None and now >= token.invalid_after):
            raise ZaloError(-216)
        if now >= token.expires_at:
            raise ZaloError(self.expired_error, http_status=self.expiry_http_status)
        return token

    def _count_call(self) -> None:
        now = time.monotonic()
        while self._calls and self._calls[0] <= now - 1.0:
            self._calls.popleft()
        if self.rate_limit_per_s > 0 and len(self._calls) >= self.rate_limit_per_s:
            raise ZaloError(-32)
        self._calls.append(now)

    def _quota_window_start(self) -> float:
        local = self.clock() + self.quota_tz_offset_s
        start = math.floor(local / self.quota_window_s) * self.quota_window_s
        return start - self.quota_tz_offset_s

    def _use_quota(self) -> None:
        start = self._quota_window_start()
        used = self._quota_used.get(start, 0)
        if used >= self.quota_limit:
            raise ZaloError(-211)
        self._quota_used[start] = used + 1

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
            err = ZaloError(fault.code if fault.code is not None else -32, fault.message,
                            http_status=fault.http_status or 200)
        elif fault.kind == "server_error" and fault.code is None:
            status = fault.http_status or 502
            set_outcome(request, f"http:{status}")
            return web.Response(status=status, text=BAD_GATEWAY_HTML, content_type="text/html")
        elif fault.kind == "expire_token":
            token = self._access.get(request.headers.get("access_token", ""))
            if token is not None:
                token.expires_at = min(token.expires_at, self.clock())
            err = ZaloError(self.expired_error, fault.message,
                            http_status=fault.http_status or self.expiry_http_status)
        else:  # "error", or "server_error" with a code (e.g. -1)
            err = ZaloError(fault.code if fault.code is not None else -1, fault.message,
                            http_status=fault.http_status or 200)
        return self._error_response(request, err)

    # ----- the API ---------------------------------------------------------------------------

    def _message_body(self, body: Any, recipient_key: str) -> tuple[str, str | None,
                                                                    dict[str, Any] | None]:
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
                raise ZaloError(-210, f"Parameter exceeds the allowed limit: message.text is "
                                f"{len(text)} characters, at most {self.text_limit}")
        if attachment is not None:
            check_attachment(attachment)
        return target, text, attachment

    def _record(self, kind: str, recipient: str, text: str | None,
                attachment: dict[str, Any] | None, token: AccessToken) -> ZaloMessage:
        message = ZaloMessage(seq=self.next_seq(), time=self.clock(),
                              message_id=f"{self.rng.getrandbits(128):032x}", kind=kind,
                              recipient=recipient, text=text, attachment=attachment,
                              access_token=token.token)
        self._messages.append(message)
        return message

    def _group_message(self, request: web.Request, body: Any) -> dict[str, Any]:
        token = self._authenticate(request)
        self._count_call()
        group_id, text, attachment = self._message_body(body, "group_id")
        status = self._groups.get(group_id)
        if status is None:
            raise ZaloError(self.unknown_group_error)
        if status == "disabled":
            raise ZaloError(-237)
        if status == "not_member":
            raise ZaloError(-403)
        self._use_quota()
        return {"message_id": self._record("group", group_id, text, attachment, token).message_id}

    def _group_conversation(self, request: web.Request, body: Any) -> Any:
        """Recent messages the OA sent to a group, newest first (GMF "group conversation").

        [guess] shape: data is a list of {message_id, src (0 = from the OA), time (ms), type,
        message, from_id, to_id}; offset/count paginate, count at most 50.
        """
        self._authenticate(request)
        self._count_call()
        group_id = request.query.get("group_id", "")
        if group_id not in self._groups:
            raise ZaloError(self.unknown_group_error)
        try:
            offset = max(0, int(request.query.get("offset", "0")))
            count = int(request.query.get("count", "10"))
        except ValueError:
            raise ZaloError(-201, "Parameters invalid: offset and count must be integers") from None
        if not 1 <= count <= 50:
            raise ZaloError(-201, "Parameters invalid: count must be between 1 and 50")
        sent = [m for m in reversed(self._messages) if m.kind == "group" and m.recipient == group_id]
        return [{"message_id": m.message_id, "src": 0, "time": int(m.time * 1000), "type": "text",
                 "message": m.text, "from_id": self.oa_id, "to_id": group_id}
                for m in sent[offset:offset + count]]

    def _user_message(self, request: web.Request, body: Any) -> dict[str, Any]:
        token = self._authenticate(request)
        self._count_call()
        kind = request.path.rsplit("/", 1)[-1]
        user_id, text, attachment = self._message_body(body, "user_id")
        if user_id not in self._followers:
            raise ZaloError(-213)
        if kind == "promotion":
            hour = int((self.clock() + self.quota_tz_offset_s) // 3600 % 24)
            if hour >= 22 or hour < 6:
                raise ZaloError(-234)
        self._use_quota()
        message = self._record(kind, user_id, text, attachment, token)
        return {"message_id": message.message_id, "user_id": user_id}

    def _quota(self, request: web.Request, body: Any) -> dict[str, Any]:
        self._authenticate(request)
        self._count_call()
        return self.quota()

    async def _oauth_access_token(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()

        async def action() -> web.StreamResponse:
            try:
                body = self._refresh_tokens(request.headers.get("secret_key"),
                                            {k: str(v) for k, v in form.items()})
            except OAuthError as err:
                set_outcome(request, f"error:{err.code}")
                return json_response(err.body())
            set_outcome(request, "ok")
            return json_response(body)

        return await self.guarded(request, None, action)

    def _refresh_tokens(self, secret_key: str | None, form: Mapping[str, str]) -> dict[str, str]:
        if form.get("app_id") != self.app_id:
            raise OAuthError(-14001, "Invalid app_id", "app_id is missing or unknown")  # [guess]
        if secret_key != self.secret_key:
            raise OAuthError(-14002, "Invalid secret_key",
                             "the secret_key header does not match the app")  # [guess]
        if form.get("grant_type") != "refresh_token":
            raise OAuthError(-14003, "Invalid grant_type",
                             "grant_type must be refresh_token")  # [guess]
        now = self.clock()
        rt = self._refresh.get(form.get("refresh_token", ""))
        if rt is None or rt.used_at is not None or now >= rt.expires_at:
            raise OAuthError(-14020, "Invalid refresh token",
                             "The refresh token is invalid, expired or has already been used")
        rt.used_at = now
        pair = self._issue_pair(now)
        self._refreshes.append({"seq": self.next_seq(), "time": now, "used_refresh_token": rt.token,
                                "access_token": pair["access_token"],
                                "refresh_token": pair["refresh_token"]})
        return pair

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
        data["messages"] = len(self._messages)
        return data

    async def _ctl_messages(self, request: web.Request) -> web.StreamResponse:
        found = self.messages(request.query.get("recipient"), kind=request.query.get("kind"))
        return json_response({"messages": [m.to_json() for m in found]})

    async def _ctl_tokens(self, request: web.Request) -> web.StreamResponse:
        return json_response({
            "access_token": self.access_token, "refresh_token": self.refresh_token,
            "refresh_count": self.refresh_count,
            "access_tokens": [asdict(t) for t in self._access.values()],
            "refresh_tokens": [asdict(t) for t in self._refresh.values()],
        })

    async def _ctl_expire(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = body.get("token") if isinstance(body, dict) else None
        if token is not None and token not in self._access:
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
            raise ControlError('expected {"group_id": ..., "status": "active"|"disabled"|'
                               '"not_member"}')
        try:
            self.set_group(group_id, str(body.get("status", "active")))
        except ValueError as exc:
            raise ControlError(str(exc)) from exc
        return json_response({"groups": self._groups})

    async def _ctl_followers(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        user_id = body.get("user_id") if isinstance(body, dict) else None
        if not isinstance(user_id, str) or not user_id:
            raise ControlError('expected {"user_id": ..., "following": true|false}')
        self.set_follower(user_id, bool(body.get("following", True)))
        return json_response({"followers": sorted(self._followers)})

    async def _ctl_quota(self, request: web.Request) -> web.StreamResponse:
        return json_response(self.quota())

    # ----- webhooks: citizens' messages (issue 8) --------------------------------------------

    def _init_webhooks(self) -> None:
        self._subscription: dict[str, str] | None = None
        self._last_delivery: tuple[bytes, dict[str, str]] | None = None

    def webhook_body(self, text: str, *, group_id: str | None = None, user_id: str | None = None,
                     sender_id: str = "8421", quote_msg_id: str | None = None,
                     timestamp_ms: int | None = None) -> tuple[bytes, str, str]:
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
            event |= {"event_name": "user_send_group_text", "group_id": group_id,
                      "sender": {"id": sender_id}, "recipient": {"id": group_id}}
        else:
            event |= {"event_name": "user_send_text", "sender": {"id": user_id},
                      "recipient": {"id": self.oa_id}}
        event |= {"message": message, "timestamp": timestamp}
        return orjson.dumps(event), msg_id, timestamp

    def webhook_headers(self, body: bytes, timestamp: str, signature: str = "valid") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if signature == "missing":
            return headers
        if signature not in ("valid", "bad"):
            raise ControlError("signature is valid, bad or missing")
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
            body["text"], group_id=body.get("group_id"), user_id=body.get("user_id"),
            sender_id=str(body.get("sender_id") or "8421"), quote_msg_id=body.get("quote_msg_id"),
            timestamp_ms=int(stamp) if isinstance(stamp, (int, float)) else None)
        headers = self.webhook_headers(payload, timestamp, str(body.get("signature", "valid")))
        return json_response({"msg_id": msg_id, **await self.deliver_webhook(payload, headers)})


def check_attachment(attachment: Any) -> None:
    """The attachment shapes of the contract: a media template (one image/gif element with a
    ``url`` or ``attachment_id``) and buttons of the ``oa.*`` types."""
    if not isinstance(attachment, dict) or attachment.get("type") != "template":
        raise ZaloError(-201, "Parameters invalid: attachment.type must be template")
    payload = attachment.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("template_type"), str):
        raise ZaloError(-201, "Parameters invalid: attachment.payload.template_type is required")
    elements = payload.get("elements")
    if payload["template_type"] == "media":
        if not isinstance(elements, list) or len(elements) != 1:
            raise ZaloError(-201, "Parameters invalid: a media template has one element")
        element = elements[0]
        if (not isinstance(element, dict) or element.get("media_type") not in ("image", "gif")
                or not (isinstance(element.get("url"), str)
                        or isinstance(element.get("attachment_id"), str))):
            raise ZaloError(-201, "Parameters invalid: media element needs media_type "
                            "image|gif and a url or attachment_id")
    elif elements is not None and not isinstance(elements, list):
        raise ZaloError(-201, "Parameters invalid: elements must be a list")
    buttons = payload.get("buttons")
    if buttons is None:
        return
    if not isinstance(buttons, list):
        raise ZaloError(-201, "Parameters invalid: buttons must be a list")
    for button in buttons:
        if not isinstance(button, dict) or button.get("type") not in BUTTON_TYPES:
            raise ZaloError(-201, f"Parameters invalid: button type must be one of "
                            f"{sorted(BUTTON_TYPES)}")
        if button["type"] == "oa.open.url":
            target = button.get("payload")
            if not isinstance(target, dict) or not isinstance(target.get("url"), str):
                raise ZaloError(-201, "Parameters invalid: oa.open.url needs payload.url")
