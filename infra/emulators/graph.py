"""Facebook Graph API (Pages) emulator, faithful to ``shared/design/channel-contracts.md``.

Serves ``/v{N}.0/...`` for any N. Parameters are read from the query string and from a form,
multipart or JSON body alike (as Graph does); ``method=DELETE`` in the parameters overrides the
HTTP method (as Graph does). Page access tokens come as ``access_token`` (or an
``Authorization: Bearer`` header). Objects:

- ``GET  /{page-id}`` → ``{"id", "name"}``
- ``POST /{page-id}/feed`` (``message``, ``link``, ``published``, ``scheduled_publish_time``)
  → ``{"id": "{page-id}_{post-id}"}``
- ``POST /{page-id}/photos`` (``url`` or multipart ``source``, ``caption``, ``published``)
  → ``{"id": "<photo-id>", "post_id": "{page-id}_{post-id}"}``
- ``GET  /{page-id}/feed`` (also ``/posts``, ``/published_posts``): published posts, newest
  first, ``limit`` (default 25, max 100), ``fields``, ``after`` cursor, ``paging.next`` URL.
  ``GET /{page-id}/scheduled_posts``: scheduled posts not yet due.
- ``GET /{post-id}`` (``fields``; default ``id,message,created_time`` like Graph; also
  ``is_published``, ``updated_time``, ``link``, ``scheduled_publish_time``, ``permalink_url``),
  ``POST /{post-id}`` (``message``, ``is_published``) → ``{"success": true}``,
  ``DELETE /{post-id}`` → ``{"success": true}``; a deleted or unknown post → 100/33.
- ``GET``/``DELETE /{photo-id}``.

Errors use the Graph envelope ``{"error": {"message", "type", "code", "error_subcode",
"error_user_title", "error_user_msg", "fbtrace_id"}}``; like Graph, keys without a value
(subcode, user title/message) are left out. HTTP 400 for everything but codes 1 and 2 (500).
Every API reply carries ``X-App-Usage`` and ``X-Business-Use-Case-Usage`` (percent of the
configured limits over a sliding window); a page or the app at 100 % is refused with
``page_throttle_code`` (80001 by default) or code 4, and ``estimated_time_to_regain_access``
(minutes) says when the window frees a call.

Comments and webhooks (issue 8; the section "webhooks" at the end of the class):

- ``POST /_control/webhooks/subscribe {"url", "verify_token"}``: subscribe a receiver, after the
  verification handshake Graph performs (``GET url?hub.mode=subscribe&hub.verify_token=…&
  hub.challenge=N`` must answer 200 with N), else 409.
- ``POST /_control/webhooks/comment {"post_id", "message", "from": {"id", "name"}, "parent_id"?,
  "verb"?: add|edited|remove, "comment_id"? (edited/remove), "signature"?: valid|bad|missing}``:
  a citizen comments on a post (or edits/deletes a comment); the emulator POSTs the ``feed``
  webhook to the subscriber, signed ``X-Hub-Signature-256: sha256=<HMAC-SHA256(app secret,
  body)>`` (``bad``: another key; ``missing``: no header) and answers ``{"comment_id",
  "status", "body", "elapsed_s"}`` with the receiver's answer.
- ``POST /_control/webhooks/replay``: POST the last delivery again, byte for byte.
- ``POST /{comment-id}/comments`` (``message``) → ``{"id"}``: the page replies (page token of the
  post's page, as for posts); ``GET /{comment-id}/comments`` lists the replies; ``GET
  /{comment-id}``. A reply is echoed to the subscriber as a ``feed`` comment ``from`` the page,
  as Graph does. ``GET /_control/replies[?comment_id=]`` lists the replies.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import hashlib
import hmac
import math
import string
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, ClassVar

import aiohttp
import orjson
from aiohttp import web

from infra.emulators.common import (
    ControlError,
    EmulatorBase,
    Fault,
    json_response,
    read_json,
    request_key,
    WebhookSender,
    set_outcome,
)

__all__ = ["GraphEmulator", "GraphError", "GraphPost", "PageToken", "appsecret_proof"]

SCHEDULE_MIN_S = 10 * 60
SCHEDULE_MAX_S = 183 * 86400          # "6 months" in the contract
DEFAULT_LIMIT, MAX_LIMIT = 25, 100
DEFAULT_POST_FIELDS = ("id", "message", "created_time")
POST_FIELDS = frozenset({"id", "message", "created_time", "updated_time", "is_published", "link",
                         "scheduled_publish_time", "permalink_url", "from"})
APP_LEVEL_CODES = frozenset({4, 17})
MESSAGES = {
    1: "An unknown error occurred",
    2: "An unexpected error has occurred. Please retry your request later.",
    4: "(#4) Application request limit reached",
    10: "(#10) Application does not have permission for this action",
    17: "(#17) User request limit reached",
    32: "(#32) Page request limit reached",
    100: "(#100) Invalid parameter",
    102: "Session key invalid or no longer valid",
    190: "Invalid OAuth access token - Cannot parse access token",
    200: "(#200) Permissions error",
    368: "(#368) The action attempted has been deemed abusive or is otherwise disallowed",
    506: "(#506) Duplicate status message",
    613: "(#613) Calls to this api have exceeded the rate limit.",
    80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try "
           "again. For more info, please refer to "
           "https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
}
TOKEN_SUBCODE_MESSAGES = {
    458: "Error validating access token: The user has not authorized application.",
    459: "Error validating access token: You cannot access the app till you log in to "
         "www.facebook.com and follow the instructions given.",
    460: "Error validating access token: The session has been invalidated because the user "
         "changed their password or Facebook has changed the session for security reasons.",
    463: "Error validating access token: Session has expired on {expired}. "
         "The current time is {now}.",
    467: "Error validating access token: The session is invalid because the user logged out.",
}
PARAMS_KEY = request_key("lantoa.graph.params")
TRACE_ALPHABET = string.ascii_letters + string.digits


def appsecret_proof(app_secret: str, access_token: str) -> str:
    """hex HMAC-SHA256(key = app secret, msg = access token), as Graph expects."""
    return hmac.new(app_secret.encode(), access_token.encode(), hashlib.sha256).hexdigest()


class GraphError(Exception):
    """A Graph API error reply (code, subcode, HTTP status)."""

    def __init__(self, code: int, message: str | None = None, *, subcode: int | None = None,
                 user_title: str | None = None, user_msg: str | None = None,
                 type_: str = "OAuthException", http_status: int | None = None) -> None:
        self.code = code
        self.message = message if message is not None else MESSAGES.get(code, f"(#{code}) Error")
        super().__init__(self.message)
        self.subcode = subcode
        self.user_title = user_title
        self.user_msg = user_msg
        self.type = type_
        self.http_status = http_status if http_status is not None else (
            500 if code in (1, 2) else 400)

    def envelope(self, fbtrace_id: str) -> dict[str, Any]:
        error: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            error["error_subcode"] = self.subcode
        if self.user_title is not None:
            error["error_user_title"] = self.user_title
        if self.user_msg is not None:
            error["error_user_msg"] = self.user_msg
        error["fbtrace_id"] = fbtrace_id
        return {"error": error}


def unsupported(method: str, obj: str) -> GraphError:
    return GraphError(100, f"Unsupported {method.lower()} request. Object with ID '{obj}' does "
                      "not exist, cannot be loaded due to missing permissions, or does not "
                      "support this operation. Please read the Graph API documentation at "
                      "https://developers.facebook.com/docs/graph-api",
                      subcode=33, type_="GraphMethodException")


def fb_time(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(epoch_s))


@dataclass
class PageToken:
    token: str
    page_id: str
    expires_at: float | None = None
    revoked_subcode: int | None = None


@dataclass
class GraphPost:
    """A post as the emulator keeps it; ``deleted`` posts stay listed for the control API."""

    seq: int
    id: str
    page_id: str
    kind: str                       # "feed" | "photo"
    message: str | None
    link: str | None
    published: bool
    scheduled_publish_time: int | None
    created_at: float
    updated_at: float
    photo_id: str | None = None
    photo_url: str | None = None
    photo_bytes: int | None = None
    deleted: bool = False
    deleted_at: float | None = None
    edits: list[dict[str, Any]] = field(default_factory=list)

    def is_published(self, now: float) -> bool:
        return self.published or (self.scheduled_publish_time is not None
                                   and now >= self.scheduled_publish_time)

    @property
    def created_time(self) -> float:
        """What Graph shows: the publish time of a scheduled post, else the creation time."""
        if self.scheduled_publish_time is not None:
            return float(self.scheduled_publish_time)
        return self.created_at

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "seq": self.seq, "id": self.id, "page_id": self.page_id, "kind": self.kind,
            "message": self.message, "link": self.link, "is_published": self.is_published(now),
            "published": self.published, "scheduled_publish_time": self.scheduled_publish_time,
            "created_at": self.created_at, "created_time": fb_time(self.created_time),
            "updated_at": self.updated_at, "photo_id": self.photo_id,
            "photo_url": self.photo_url, "photo_bytes": self.photo_bytes,
            "deleted": self.deleted, "deleted_at": self.deleted_at, "edits": self.edits,
        }


class GraphEmulator(WebhookSender, EmulatorBase):
    """The Graph API for a set of Pages, each with its Page access token(s).

    ``pages`` maps page id → Page access token. With ``app_secret`` an ``appsecret_proof`` sent
    by the client is checked; with ``require_proof`` as well, a call without one is refused.
    Limits: ``page_call_limit`` calls per page and ``app_call_limit`` calls in all per
    ``usage_window_s`` (sliding). The same message (and link) on one page within
    ``duplicate_window_s`` is refused with 506.
    """

    name: ClassVar[str] = "graph"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "require_proof": bool, "page_call_limit": int, "app_call_limit": int,
        "usage_window_s": float, "page_throttle_code": int, "duplicate_window_s": float,
    }

    def __init__(self, pages: Mapping[str, str] | None = None, *,
                 page_names: Mapping[str, str] | None = None, app_secret: str | None = None,
                 require_proof: bool = False, page_call_limit: int = 4800,
                 app_call_limit: int = 20000, usage_window_s: float = 3600.0,
                 page_throttle_code: int = 80001, duplicate_window_s: float = 3600.0,
                 clock: Callable[[], float] | None = None, seed: int | None = None) -> None:
        if require_proof and not app_secret:
            raise ValueError("require_proof needs an app_secret")
        self.app_secret = app_secret
        self.require_proof = require_proof
        self.page_call_limit = page_call_limit
        self.app_call_limit = app_call_limit
        self.usage_window_s = usage_window_s
        self.page_throttle_code = page_throttle_code
        self.duplicate_window_s = duplicate_window_s
        self._initial_pages = dict(pages or {})
        self._initial_names = dict(page_names or {})
        super().__init__(clock=clock, seed=seed)
        self._init_state()
        self._snapshot_config()

    def _init_state(self) -> None:
        self._pages: dict[str, str] = {}
        self._tokens: dict[str, PageToken] = {}
        self._posts: dict[str, GraphPost] = {}
        self._photos: dict[str, str] = {}
        self._effects: list[dict[str, Any]] = []
        self._app_calls: collections.deque[float] = collections.deque()
        self._page_calls: dict[str, collections.deque[float]] = {}
        self._next_object = 122100000000001
        for page_id, token in self._initial_pages.items():
            self.add_page(page_id, token, name=self._initial_names.get(page_id))
        self._init_webhooks()

    def reset(self) -> None:
        super().reset()
        self._init_state()

    # ----- in-process API --------------------------------------------------------------------

    def add_page(self, page_id: str, token: str, *, name: str | None = None,
                 expires_at: float | None = None) -> None:
        self._pages[page_id] = name or f"Page {page_id}"
        self.set_token(page_id, token, expires_at=expires_at, replace=False)

    def set_token(self, page_id: str, token: str, *, expires_at: float | None = None,
                  replace: bool = True) -> None:
        """Give ``page_id`` the token ``token``; ``replace`` forgets the page's other tokens."""
        if page_id not in self._pages:
            raise KeyError(f"unknown page {page_id}")
        if replace:
            for old in [t for t, info in self._tokens.items() if info.page_id == page_id]:
                del self._tokens[old]
        self._tokens[token] = PageToken(token, page_id, expires_at)

    def expire_token(self, token: str | None = None, *, page_id: str | None = None,
                     at: float | None = None) -> int:
        """Make ``token`` (or every token of ``page_id``) expire at ``at`` (default now)."""
        when = self.clock() if at is None else at
        hit = [info for info in self._tokens.values()
               if (token is not None and info.token == token)
               or (token is None and info.page_id == page_id)]
        for info in hit:
            info.expires_at = when
        return len(hit)

    def revoke_token(self, token: str, subcode: int = 460) -> None:
        self._tokens[token].revoked_subcode = subcode

    def posts(self, page_id: str | None = None, *, include_deleted: bool = True) -> list[GraphPost]:
        """Every post in creation order (deleted ones flagged), optionally of one page."""
        return [p for p in self._posts.values()
                if (page_id is None or p.page_id == page_id) and (include_deleted or not p.deleted)]

    def post(self, post_id: str) -> GraphPost | None:
        return self._posts.get(post_id)

    def effects(self) -> list[dict[str, Any]]:
        """Every create/edit/delete in order: ``{seq, time, action, page_id, post_id, message}``."""
        return list(self._effects)

    def usage(self, page_id: str | None = None) -> dict[str, Any]:
        """The values the usage headers would carry now."""
        app_pct = self._pct(len(self._window(self._app_calls)), self.app_call_limit)
        out: dict[str, Any] = {"app": {"call_count": app_pct, "total_cputime": app_pct,
                                       "total_time": app_pct}}
        if page_id is not None:
            out["page"] = self._buc_entry(page_id)
        return out

    def proof(self, token: str) -> str:
        if self.app_secret is None:
            raise ValueError("no app secret configured")
        return appsecret_proof(self.app_secret, token)

    # ----- usage accounting ------------------------------------------------------------------

    def _window(self, calls: collections.deque[float]) -> collections.deque[float]:
        horizon = self.clock() - self.usage_window_s
        while calls and calls[0] <= horizon:
            calls.popleft()
        return calls

    @staticmethod
    def _pct(count: int, limit: int) -> int:
        return count * 100 // max(limit, 1)

    def _regain_minutes(self, calls: collections.deque[float], limit: int) -> int:
        if len(calls) < limit:
            return 0
        frees_at = calls[len(calls) - limit] + self.usage_window_s
        return max(1, math.ceil((frees_at - self.clock()) / 60))

    def _buc_entry(self, page_id: str, *, floor_pct: int = 0,
                   regain: int | None = None) -> dict[str, Any]:
        calls = self._window(self._page_calls.setdefault(page_id, collections.deque()))
        pct = max(self._pct(len(calls), self.page_call_limit), floor_pct)
        return {"type": "pages", "call_count": pct, "total_cputime": pct, "total_time": pct,
                "estimated_time_to_regain_access":
                    self._regain_minutes(calls, self.page_call_limit) if regain is None else regain}

    def _usage_headers(self, page_id: str | None, fault: Fault | None = None) -> dict[str, str]:
        app = self.usage()["app"]
        buc: dict[str, Any] = {}
        if fault is not None and fault.code in APP_LEVEL_CODES:
            app = {k: max(v, 100) for k, v in app.items()}
        if page_id is not None and page_id in self._pages:
            if fault is not None and fault.code not in APP_LEVEL_CODES:
                regain = fault.regain_minutes if fault.regain_minutes is not None else 1
                buc[page_id] = [self._buc_entry(page_id, floor_pct=100, regain=regain)]
            else:
                buc[page_id] = [self._buc_entry(page_id)]
        return {"X-App-Usage": orjson.dumps(app).decode(),
                "X-Business-Use-Case-Usage": orjson.dumps(buc).decode()}

    def _count_call(self, page_id: str | None) -> None:
        app_calls = self._window(self._app_calls)
        if len(app_calls) >= self.app_call_limit:
            raise GraphError(4)
        if page_id is not None and page_id in self._pages:
            calls = self._window(self._page_calls.setdefault(page_id, collections.deque()))
            if len(calls) >= self.page_call_limit:
                raise GraphError(self.page_throttle_code)
            calls.append(self.clock())
        app_calls.append(self.clock())

    # ----- HTTP plumbing ---------------------------------------------------------------------

    def _add_api_routes(self) -> None:
        r = self.app.router
        r.add_route("*", r"/{version:v\d+\.0}/{obj:[^/]+}", self._api)
        r.add_route("*", r"/{version:v\d+\.0}/{obj:[^/]+}/{edge:[^/]+}", self._api)
        r.add_route("*", "/{tail:.*}", self._unknown_path)

    def _trace_id(self) -> str:
        return "A" + "".join(self.rng.choice(TRACE_ALPHABET) for _ in range(22))

    def _page_of(self, obj: str) -> str | None:
        if obj in self._comments:
            return str(self._comments[obj]["page_id"])
        if "_" in obj:
            return obj.split("_", 1)[0]
        if obj in self._pages:
            return obj
        post_id = self._photos.get(obj)
        return self._posts[post_id].page_id if post_id is not None else None

    def _error_response(self, request: web.Request, err: GraphError, page_id: str | None,
                        fault: Fault | None = None) -> web.Response:
        set_outcome(request, f"error:{err.code}")
        return json_response(err.envelope(self._trace_id()), status=err.http_status,
                             headers=self._usage_headers(page_id, fault))

    async def _unknown_path(self, request: web.Request) -> web.StreamResponse:
        err = GraphError(2500, f"Unknown path components: {request.path}")
        return self._error_response(request, err, None)

    async def _api(self, request: web.Request) -> web.StreamResponse:
        obj = request.match_info["obj"]
        page_id = self._page_of(obj)
        try:
            params, files = await read_params(request)
        except GraphError as err:
            return self._error_response(request, err, page_id)
        request[PARAMS_KEY] = params
        method = request.method.upper()
        override = params.pop("method", "").upper()
        if override in ("GET", "POST", "DELETE"):
            method = override

        async def action() -> web.StreamResponse:
            try:
                body = self._handle(request, method, obj, page_id, params, files)
            except GraphError as err:
                return self._error_response(request, err, page_id)
            set_outcome(request, "ok")
            return json_response(body, headers=self._usage_headers(page_id))

        return await self.guarded(request, page_id if page_id is not None else obj, action)

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        page_id = self._page_of(request.match_info.get("obj", ""))
        if fault.kind == "rate_limit":
            code = fault.code if fault.code is not None else 32
            err = GraphError(code, fault.message, http_status=fault.http_status)
            return self._error_response(request, err, page_id, fault)
        if fault.kind == "server_error":
            err = GraphError(fault.code if fault.code is not None else 2, fault.message,
                             subcode=fault.subcode, http_status=fault.http_status)
        elif fault.kind == "expire_token":
            token = request.get(PARAMS_KEY, {}).get("access_token") or bearer(request)
            if token is not None:
                self.expire_token(token)
            err = self._expired_error(self.clock())
        else:  # "error"
            err = GraphError(fault.code if fault.code is not None else 1, fault.message,
                             subcode=fault.subcode, http_status=fault.http_status)
        return self._error_response(request, err, page_id)

    # ----- the API ---------------------------------------------------------------------------

    def _expired_error(self, expired_at: float) -> GraphError:
        fmt = "%A, %d-%b-%y %H:%M:%S UTC"
        message = TOKEN_SUBCODE_MESSAGES[463].format(
            expired=time.strftime(fmt, time.gmtime(expired_at)),
            now=time.strftime(fmt, time.gmtime(self.clock())))
        return GraphError(190, message, subcode=463)

    def _authenticate(self, request: web.Request, params: Mapping[str, str]) -> PageToken:
        token = params.get("access_token") or bearer(request)
        if not token:
            raise GraphError(104, "An access token is required to request this resource.")
        info = self._tokens.get(token)
        if info is None:
            raise GraphError(190)
        if info.revoked_subcode is not None:
            raise GraphError(190, TOKEN_SUBCODE_MESSAGES.get(info.revoked_subcode, MESSAGES[190]),
                             subcode=info.revoked_subcode)
        if info.expires_at is not None and self.clock() >= info.expires_at:
            raise self._expired_error(info.expires_at)
        if self.app_secret is not None:
            proof = params.get("appsecret_proof")
            if proof is None and self.require_proof:
                raise GraphError(100, "API calls from the server require an appsecret_proof "
                                 "argument", type_="GraphMethodException")
            if proof is not None and not hmac.compare_digest(
                    proof, appsecret_proof(self.app_secret, token)):
                raise GraphError(100, "Invalid appsecret_proof provided in the API argument",
                                 type_="GraphMethodException")
        return info

    def _handle(self, request: web.Request, method: str, obj: str, page_id: str | None,
                params: dict[str, str], files: dict[str, bytes]) -> dict[str, Any]:
        token = self._authenticate(request, params)
        self._count_call(page_id)
        edge = request.match_info.get("edge")
        if obj in self._comments:
            return self._comment_object(method, obj, edge, params, token)
        if "_" in obj:
            return self._post_object(method, obj, edge, params, token)
        if obj in self._pages:
            return self._page_object(request, method, obj, edge, params, files, token)
        if obj in self._photos and edge is None:
            post = self._posts[self._photos[obj]]
            self._check_page(token, post.page_id, method, obj)
            if post.deleted:
                raise unsupported(method, obj)
            if method == "GET":
                return {"id": obj, "name": post.message, "created_time": fb_time(post.created_time)}
            if method == "DELETE":
                return self._delete(post)
        raise unsupported(method, obj)

    def _check_page(self, token: PageToken, page_id: str, method: str, obj: str) -> None:
        if token.page_id == page_id:
            return
        if method == "GET":
            raise unsupported(method, obj)
        raise GraphError(200)

    def _page_object(self, request: web.Request, method: str, page_id: str, edge: str | None,
                     params: dict[str, str], files: dict[str, bytes],
                     token: PageToken) -> dict[str, Any]:
        self._check_page(token, page_id, method, page_id)
        if edge is None:
            if method == "GET":
                return {"id": page_id, "name": self._pages[page_id]}
            raise unsupported(method, page_id)
        if edge == "feed" and method == "POST":
            return self._create_feed_post(page_id, params)
        if edge == "photos" and method == "POST":
            return self._create_photo(page_id, params, files)
        if edge in ("feed", "posts", "published_posts", "scheduled_posts") and method == "GET":
            return self._list(request, page_id, params, scheduled=edge == "scheduled_posts")
        if edge in ("feed", "posts", "published_posts", "scheduled_posts", "photos"):
            raise unsupported(method, page_id)
        raise GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node type "
                         "(Page)")

    def _post_object(self, method: str, post_id: str, edge: str | None, params: dict[str, str],
                     token: PageToken) -> dict[str, Any]:
        post = self._posts.get(post_id)
        if post is None or post.deleted:
            raise unsupported(method, post_id)
        self._check_page(token, post.page_id, method, post_id)
        if edge is not None:
            raise GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node "
                             "type (Post)")
        if method == "GET":
            return self._render(post, parse_fields(params.get("fields")))
        if method == "DELETE":
            return self._delete(post)
        if method == "POST":
            return self._edit(post, params)
        raise unsupported(method, post_id)

    def _new_id(self) -> str:
        self._next_object += 1
        return str(self._next_object)

    def _record(self, action: str, post: GraphPost, message: str | None) -> dict[str, Any]:
        effect = {"seq": self.next_seq(), "time": self.clock(), "action": action,
                  "page_id": post.page_id, "post_id": post.id, "message": message}
        self._effects.append(effect)
        return effect

    def _create_feed_post(self, page_id: str, params: dict[str, str]) -> dict[str, Any]:
        message = params.get("message") or None
        link = params.get("link") or None
        if message is None and link is None:
            raise GraphError(100, "(#100) Missing message or attachment")
        published = parse_bool(params.get("published"), "published", default=True)
        scheduled: int | None = None
        raw = params.get("scheduled_publish_time")
        if raw:
            if published:
                raise GraphError(100, "(#100) You cannot specify a scheduled publish time on a "
                                 "published post")
            scheduled = parse_timestamp(raw)
            lead = scheduled - self.clock()
            if not SCHEDULE_MIN_S <= lead <= SCHEDULE_MAX_S:
                raise GraphError(100, "(#100) The specified scheduled publish time is invalid.")
        if message is not None:
            self._check_duplicate(page_id, message, link)
        post = self._new_post(page_id, "feed", message, link, published, scheduled)
        return {"id": post.id}

    def _check_duplicate(self, page_id: str, message: str, link: str | None) -> None:
        horizon = self.clock() - self.duplicate_window_s
        for post in self._posts.values():
            if (post.page_id == page_id and not post.deleted and post.created_at >= horizon
                    and post.message == message and post.link == link):
                raise GraphError(506, subcode=1455006, user_title="Duplicate Status Update",
                                 user_msg="This status update is identical to the last one you "
                                 "posted. Try posting something different, or delete your "
                                 "previous update.")

    def _new_post(self, page_id: str, kind: str, message: str | None, link: str | None,
                  published: bool, scheduled: int | None, **photo: Any) -> GraphPost:
        now = self.clock()
        post = GraphPost(seq=0, id=f"{page_id}_{self._new_id()}", page_id=page_id, kind=kind,
                         message=message, link=link, published=published,
                         scheduled_publish_time=scheduled, created_at=now, updated_at=now,
                         **photo)
        self._posts[post.id] = post
        if post.photo_id is not None:
            self._photos[post.photo_id] = post.id
        post.seq = self._record("create", post, message)["seq"]
        return post

    def _create_photo(self, page_id: str, params: dict[str, str],
                      files: dict[str, bytes]) -> dict[str, Any]:
        url = params.get("url") or None
        source = files.get("source")
        if url is None and source is None:
            raise GraphError(324, "(#324) Requires upload file")
        caption = params.get("caption") or params.get("message") or None
        published = parse_bool(params.get("published"), "published", default=True)
        post = self._new_post(page_id, "photo", caption, None, published, None,
                              photo_id=self._new_id(), photo_url=url,
                              photo_bytes=None if source is None else len(source))
        return {"id": post.photo_id, "post_id": post.id}

    def _edit(self, post: GraphPost, params: dict[str, str]) -> dict[str, Any]:
        message = params.get("message")
        publish = params.get("is_published")
        if message is None and publish is None:
            raise GraphError(100, "(#100) Nothing to update: pass message or is_published")
        if publish is not None and parse_bool(publish, "is_published", default=False):
            post.published = True
        if message is not None:
            post.message = message
            effect = self._record("edit", post, message)
            post.edits.append({"seq": effect["seq"], "time": effect["time"], "message": message})
        post.updated_at = self.clock()
        return {"success": True}

    def _delete(self, post: GraphPost) -> dict[str, Any]:
        post.deleted = True
        post.deleted_at = self.clock()
        self._record("delete", post, post.message)
        return {"success": True}

    def _render(self, post: GraphPost, fields: Iterable[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in fields:
            if name not in POST_FIELDS:
                raise GraphError(100, f"(#100) Tried accessing nonexisting field ({name}) on "
                                 "node type (Post)")
            if name == "message" and post.message is not None:
                out["message"] = post.message
            elif name == "link" and post.link is not None:
                out["link"] = post.link
            elif name == "created_time":
                out["created_time"] = fb_time(post.created_time)
            elif name == "updated_time":
                out["updated_time"] = fb_time(post.updated_at)
            elif name == "is_published":
                out["is_published"] = post.is_published(self.clock())
            elif name == "scheduled_publish_time" and post.scheduled_publish_time is not None:
                out["scheduled_publish_time"] = post.scheduled_publish_time
            elif name == "permalink_url":
                page, _, number = post.id.partition("_")
                out["permalink_url"] = f"https://www.facebook.com/{page}/posts/{number}"
            elif name == "from":
                out["from"] = {"name": self._pages.get(post.page_id, ""), "id": post.page_id}
        out["id"] = post.id
        return out

    def _list(self, request: web.Request, page_id: str, params: dict[str, str], *,
              scheduled: bool) -> dict[str, Any]:
        now = self.clock()
        limit = parse_int(params.get("limit"), "limit", DEFAULT_LIMIT)
        limit = min(max(limit, 1), MAX_LIMIT)
        fields = parse_fields(params.get("fields"))
        posts = [p for p in self._posts.values() if p.page_id == page_id and not p.deleted
                 and (p.is_published(now) != scheduled)
                 and (not scheduled or p.scheduled_publish_time is not None)]
        posts.sort(key=lambda p: (p.created_time, p.seq), reverse=True)
        start = 0
        after = params.get("after")
        if after:
            key = decode_cursor(after)
            start = next((i for i, p in enumerate(posts) if (p.created_time, p.seq) < key),
                         len(posts))
        chunk = posts[start:start + limit]
        result: dict[str, Any] = {"data": [self._render(p, fields) for p in chunk]}
        if chunk:
            paging: dict[str, Any] = {"cursors": {"before": encode_cursor(chunk[0]),
                                                  "after": encode_cursor(chunk[-1])}}
            if start + limit < len(posts):
                paging["next"] = str(request.url.update_query(
                    {"after": encode_cursor(chunk[-1]), "limit": str(limit)}))
            result["paging"] = paging
        return result

    # ----- control API -----------------------------------------------------------------------

    def _add_control_routes(self) -> None:
        r = self.app.router
        r.add_get("/_control/posts", self._ctl_posts)
        r.add_get("/_control/effects", self._ctl_effects)
        r.add_get("/_control/usage", self._ctl_usage)
        r.add_post("/_control/pages", self._ctl_add_page)
        r.add_post("/_control/tokens", self._ctl_set_token)
        r.add_post("/_control/tokens/expire", self._ctl_expire_token)
        r.add_post("/_control/tokens/revoke", self._ctl_revoke_token)
        r.add_post("/_control/webhooks/subscribe", self._ctl_webhook_subscribe)
        r.add_post("/_control/webhooks/comment", self._ctl_webhook_comment)
        r.add_post("/_control/webhooks/replay", self._ctl_webhook_replay)
        r.add_get("/_control/replies", self._ctl_replies)

    def stats_json(self) -> dict[str, Any]:
        data = super().stats_json()
        data["posts"] = len(self._posts)
        data["effects"] = len(self._effects)
        return data

    async def _ctl_posts(self, request: web.Request) -> web.StreamResponse:
        page_id = request.query.get("page_id")
        include_deleted = request.query.get("include_deleted", "true") != "false"
        now = self.clock()
        return json_response({"posts": [p.to_json(now) for p in
                                        self.posts(page_id, include_deleted=include_deleted)]})

    async def _ctl_effects(self, request: web.Request) -> web.StreamResponse:
        return json_response({"effects": self.effects()})

    async def _ctl_usage(self, request: web.Request) -> web.StreamResponse:
        return json_response({"app": self.usage()["app"],
                              "pages": {p: self._buc_entry(p) for p in self._pages}})

    async def _ctl_add_page(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        page_id, token = _str_field(body, "page_id"), _str_field(body, "token")
        self.add_page(page_id, token, name=body.get("name"))
        return json_response({"ok": True})

    async def _ctl_set_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        page_id, token = _str_field(body, "page_id"), _str_field(body, "token")
        if page_id not in self._pages:
            raise ControlError(f"unknown page {page_id}", status=404)
        self.set_token(page_id, token, expires_at=body.get("expires_at"),
                       replace=bool(body.get("replace", True)))
        return json_response({"ok": True})

    async def _ctl_expire_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or not (body.get("token") or body.get("page_id")):
            raise ControlError('expected {"token": ...} or {"page_id": ...}, optional "at"')
        n = self.expire_token(body.get("token"), page_id=body.get("page_id"), at=body.get("at"))
        return json_response({"expired": n})

    async def _ctl_revoke_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = _str_field(body, "token")
        if token not in self._tokens:
            raise ControlError("unknown token", status=404)
        self.revoke_token(token, int(body.get("subcode", 460)))
        return json_response({"ok": True})

    # ----- webhooks: citizens' comments and the page's replies (issue 8) ---------------------

    def _init_webhooks(self) -> None:
        self._subscription: dict[str, str] | None = None
        self._comments: dict[str, dict[str, Any]] = {}
        self._replies: list[dict[str, Any]] = []
        self._last_delivery: tuple[bytes, dict[str, str]] | None = None
        self._echoes: set[asyncio.Task[Any]] = set()

    def add_comment(self, post_id: str, message: str, sender: Mapping[str, Any],
                    parent_id: str | None = None) -> dict[str, Any]:
        """A citizen's comment on a live post (or a reply under ``parent_id``)."""
        post = self._posts.get(post_id)
        if post is None or post.deleted:
            raise ControlError(f"no live post {post_id}", status=404)
        comment: dict[str, Any] = {
            "id": f"{post_id.split('_', 1)[1]}_{self._new_id()}", "post_id": post_id,
            "page_id": post.page_id, "parent_id": parent_id or post_id, "message": message,
            "from": {"id": str(sender.get("id") or ""), "name": str(sender.get("name") or "")},
            "created_time": int(self.clock()), "deleted": False, "seq": self.next_seq()}
        self._comments[comment["id"]] = comment
        return comment

    def replies(self, comment_id: str | None = None) -> list[dict[str, Any]]:
        """The page's replies to comments, in order, optionally under one comment."""
        return [r for r in self._replies if comment_id is None or r["parent_id"] == comment_id]

    def webhook_body(self, comment: Mapping[str, Any], verb: str = "add") -> bytes:
        value = {"item": "comment", "verb": verb, "comment_id": comment["id"],
                 "post_id": comment["post_id"], "parent_id": comment["parent_id"],
                 "created_time": comment["created_time"], "from": comment["from"],
                 "message": comment["message"]}
        return orjson.dumps({"object": "page", "entry": [{
            "id": comment["page_id"], "time": int(self.clock()),
            "changes": [{"field": "feed", "value": value}]}]})

    def webhook_headers(self, body: bytes, signature: str = "valid") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if signature == "missing":
            return headers
        if signature not in ("valid", "bad"):
            raise ControlError("signature is valid, bad or missing")
        key = (self.app_secret or "") if signature == "valid" else "not-the-app-secret"
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key.encode(), body,
                                                              hashlib.sha256).hexdigest()
        return headers

    def _comment_object(self, method: str, comment_id: str, edge: str | None,
                        params: dict[str, str], token: PageToken) -> dict[str, Any]:
        comment = self._comments[comment_id]
        post = self._posts.get(comment["post_id"])
        if comment["deleted"] or post is None or post.deleted:
            raise unsupported(method, comment_id)
        self._check_page(token, comment["page_id"], method, comment_id)
        if edge is None and method == "GET":
            return {k: comment[k] for k in ("id", "message", "from", "parent_id")} | {
                "created_time": fb_time(comment["created_time"])}
        if edge != "comments":
            raise GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node "
                             "type (Comment)")
        if method == "GET":
            return {"data": [{"id": r["id"], "message": r["message"], "from": r["from"],
                              "created_time": fb_time(r["created_time"])}
                             for r in self.replies(comment_id)]}
        if method != "POST":
            raise unsupported(method, comment_id)
        message = params.get("message")
        if not message:
            raise GraphError(100, "(#100) Missing message or attachment")
        page = {"id": comment["page_id"], "name": self._pages.get(comment["page_id"], "")}
        reply = self.add_comment(comment["post_id"], message, page, parent_id=comment_id)
        self._replies.append(reply)
        if self._subscription is not None:  # Graph tells the subscriber about the page's comments too
            body = self.webhook_body(reply)
            task = asyncio.get_running_loop().create_task(
                self.deliver_webhook(body, self.webhook_headers(body)))
            self._echoes.add(task)
            task.add_done_callback(self._echo_done)
        return {"id": reply["id"]}

    def _echo_done(self, task: asyncio.Task[Any]) -> None:
        self._echoes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved and dropped: a receiver that went away is not the API's concern

    async def _ctl_webhook_subscribe(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        url, verify_token = _str_field(body, "url"), _str_field(body, "verify_token")
        challenge = str(self.rng.randrange(10**9, 10**10))
        query = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url, params=query) as reply:
                text = await reply.text()
        if reply.status != 200 or text != challenge:
            raise ControlError(f"verification failed: HTTP {reply.status} {text[:100]!r}", status=409)
        self._subscription = {"url": url, "verify_token": verify_token}
        return json_response({"subscribed": True, "url": url})

    async def _ctl_webhook_comment(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        verb = str(body.get("verb", "add")) if isinstance(body, dict) else "add"
        if verb == "add":
            sender = body.get("from") if isinstance(body.get("from"), dict) else {}
            comment = self.add_comment(_str_field(body, "post_id"), _str_field(body, "message"),
                                       sender or {"id": "6001", "name": "Người dân"},
                                       parent_id=body.get("parent_id"))
        elif verb in ("edited", "remove"):
            comment = self._comments.get(_str_field(body, "comment_id"), {})
            if not comment:
                raise ControlError("unknown comment_id", status=404)
            if verb == "edited":
                comment["message"] = _str_field(body, "message")
            else:
                comment["deleted"] = True
        else:
            raise ControlError("verb is add, edited or remove")
        payload = self.webhook_body(comment, verb)
        sent = await self.deliver_webhook(
            payload, self.webhook_headers(payload, str(body.get("signature", "valid"))))
        return json_response({"comment_id": comment["id"], **sent})

    async def _ctl_replies(self, request: web.Request) -> web.StreamResponse:
        return json_response({"replies": self.replies(request.query.get("comment_id"))})


# ----- parsing helpers ---------------------------------------------------------------------------

def bearer(request: web.Request) -> str | None:
    auth = request.headers.get("Authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() in ("bearer", "oauth") else None


async def read_params(request: web.Request) -> tuple[dict[str, str], dict[str, bytes]]:
    """Query string and body (form, multipart or JSON) merged; file parts apart."""
    params: dict[str, str] = dict(request.query)
    files: dict[str, bytes] = {}
    if not request.can_read_body:
        return params, files
    ctype = request.content_type
    if ctype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                files[key] = value.file.read()
            else:
                params[key] = str(value)
    elif ctype == "application/json":
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError as exc:
            raise GraphError(100, f"(#100) The request body is not valid JSON: {exc}") from exc
        if isinstance(body, dict):
            for key, value in body.items():
                params[key] = (value if isinstance(value, str) else
                               orjson.dumps(value).decode())
    else:
        await request.read()
    return params, files


def parse_bool(raw: str | None, name: str, *, default: bool) -> bool:
    if raw is None or raw == "":
        return default
    lowered = raw.strip().lower()
    if lowered in ("true", "1"):
        return True
    if lowered in ("false", "0"):
        return False
    raise GraphError(100, f"(#100) Param {name} must be a boolean")


def parse_int(raw: str | None, name: str, default: int) -> int:
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise GraphError(100, f"(#100) Param {name} must be an integer") from None


def parse_timestamp(raw: str) -> int:
    """A UNIX timestamp or an ISO 8601 date-time (Graph takes both)."""
    try:
        return int(raw)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise GraphError(100, "(#100) The specified scheduled publish time is invalid.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return int(parsed.timestamp())


def parse_fields(raw: str | None) -> list[str]:
    if not raw:
        return list(DEFAULT_POST_FIELDS)
    return [f.strip() for f in raw.split(",") if f.strip()]


def encode_cursor(post: GraphPost) -> str:
    return base64.urlsafe_b64encode(f"{post.created_time!r}:{post.seq}".encode()).decode()


def decode_cursor(cursor: str) -> tuple[float, int]:
    try:
        created, _, seq = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return float(created), int(seq)
    except ValueError:
        raise GraphError(100, "(#100) Invalid cursor") from None


def _str_field(body: Any, name: str) -> str:
    value = body.get(name) if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise ControlError(f"{name} (a non-empty string) is required")
    return value
