"""Facebook Graph API (Pages) emulator, faithful to ``shared/design/channel-contracts.md``.

Serves ``/v{N}.0/...`` for any N. Parameters are read from the query string and from a form,
multipart or JSON body alike (as Graph does); ``method=DELETE`` in the parameters overrides the
HTTP method (as Graph does). Page access tokens come as ``access_token`` in the query string or
the body, or in an ``Authorization: Bearer <token>`` (or ``OAuth <token>``) header; the parameter
wins when both are given. ``token_places`` (also in ``GET /_control/stats``) counts where the
authenticated calls carried their token (query, body, header). Objects:

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

Comments and webhooks (issue 8):

- ``POST /_control/webhooks/subscribe {"url", "verify_token"}``: subscribe a receiver, after the
  verification handshake Graph performs (``GET url?hub.mode=subscribe&hub.verify_token=…&
  hub.challenge=N`` must answer 200 with N), else 409.
- ``POST /_control/webhooks/comment {"post_id", "message", "from": {"id", "name"}, "parent_id"?,
  "verb"?: add|edited|remove, "comment_id"? (edited/remove), "signature"?: valid|bad|malformed|missing,
  "untimed"?: true}``: a citizen comments on a post (or edits/deletes a comment); the emulator
  POSTs the ``feed`` webhook to the subscriber, signed ``X-Hub-Signature-256: sha256=<HMAC-SHA256(app
  secret, body)>`` (``bad``: another key; ``malformed``: not ``sha256=`` and hex; ``missing``: no
  header; ``untimed``: the entry without its ``time``) and answers ``{"comment_id",
  "status", "body", "elapsed_s"}`` with the receiver's answer.
- ``POST /_control/webhooks/replay``: POST the last delivery again, byte for byte.
- ``POST /{comment-id}/comments`` (``message``) → ``{"id"}``: the page replies (page token of the
  post's page, as for posts); ``GET /{comment-id}/comments`` lists the replies; ``GET
  /{comment-id}``. A reply is echoed to the subscriber as a ``feed`` comment ``from`` the page,
  as Graph does. ``GET /_control/replies[?comment_id=]`` lists the replies.

This module is the emulator: the HTTP side (the API, its errors and usage headers, the control
routes) over its parts, held as attributes: ``state`` (``graph_state.GraphState``: pages, tokens,
posts, photos, effects), ``meter`` (``graph_usage.UsageMeter``: the call accounting),
``subscriber`` and ``comments`` (``graph_webhooks``: the webhook subscriber, the comments and the
page's replies), all reading one ``settings`` (``graph_model.GraphSettings``). The error codes,
records and parameter parsing are in ``graph_model``.
"""

from __future__ import annotations

import collections
import hmac
import string
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Generic, TypeVar, overload

from aiohttp import web

from infra.local.emulators.common import (
    ControlError,
    EmulatorBase,
    json_response,
    read_json,
    request_key,
    set_outcome,
)
from infra.local.emulators.faults import Clock, Fault
from infra.local.emulators.graph_model import (
    MESSAGES,
    TOKEN_SUBCODE_MESSAGES,
    GraphError,
    GraphPost,
    GraphSettings,
    PageToken,
    appsecret_proof,
    bearer,
    check_page,
    fb_time,
    parse_fields,
    read_params,
    str_field,
    unsupported,
)
from infra.local.emulators.graph_state import GraphState
from infra.local.emulators.graph_usage import UsageMeter
from infra.local.emulators.graph_webhooks import GraphComments, GraphSubscriber

__all__ = ["GraphEmulator"]

PARAMS_KEY = request_key("lantoa.graph.params")
TRACE_ALPHABET = string.ascii_letters + string.digits
T = TypeVar("T")


class Setting(Generic[T]):
    """``emulator.<name>`` is ``emulator.settings.<name>``: what ``POST /_control/config`` and
    ``reset()`` set on the emulator (by name) is what its parts read."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, emulator: None, owner: type[Any] | None = None) -> Setting[T]: ...
    @overload
    def __get__(self, emulator: GraphEmulator, owner: type[Any] | None = None) -> T: ...
    def __get__(self, emulator: GraphEmulator | None, owner: type[Any] | None = None) -> T | Setting[T]:
        if emulator is None:
            return self
        value: T = getattr(emulator.settings, self.name)
        return value

    def __set__(self, emulator: GraphEmulator, value: T) -> None:
        setattr(emulator.settings, self.name, value)


class GraphEmulator(EmulatorBase):
    """The Graph API for a set of Pages, each with its Page access token(s).

    ``pages`` maps page id → Page access token (``page_names`` their names). The settings
    (``app_secret``, ``require_proof``, the limits, ``duplicate_window_s``: see
    ``GraphSettings``) are attributes of the emulator, kept in ``settings``; the in-process API
    (``add_page``, ``set_token``, ``posts``, ``add_comment``, ...) is the emulator's too, each
    method handing over to the part that holds what it acts on.
    """

    name: ClassVar[str] = "graph"
    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "require_proof": bool,
        "page_call_limit": int,
        "app_call_limit": int,
        "usage_window_s": float,
        "page_throttle_code": int,
        "duplicate_window_s": float,
    }

    app_secret = Setting[str | None]()
    require_proof = Setting[bool]()
    page_call_limit = Setting[int]()
    app_call_limit = Setting[int]()
    usage_window_s = Setting[float]()
    page_throttle_code = Setting[int]()
    duplicate_window_s = Setting[float]()

    def __init__(
        self,
        pages: Mapping[str, str] | None = None,
        *,
        page_names: Mapping[str, str] | None = None,
        app_secret: str | None = None,
        require_proof: bool = False,
        page_call_limit: int = 4800,
        app_call_limit: int = 20000,
        usage_window_s: float = 3600.0,
        page_throttle_code: int = 80001,
        duplicate_window_s: float = 3600.0,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        if require_proof and not app_secret:
            raise ValueError("require_proof needs an app_secret")
        self.settings = GraphSettings(
            app_secret=app_secret,
            require_proof=require_proof,
            page_call_limit=page_call_limit,
            app_call_limit=app_call_limit,
            usage_window_s=usage_window_s,
            page_throttle_code=page_throttle_code,
            duplicate_window_s=duplicate_window_s,
        )
        super().__init__(clock=clock, seed=seed)
        self.state = GraphState(self.settings, self.clock, self.next_seq, pages or {}, page_names or {})
        self.meter = UsageMeter(self.settings, self.clock)
        self.subscriber = GraphSubscriber()
        self.comments = GraphComments(self.state, self.subscriber, self.settings, self.clock, self.next_seq)
        # Where each authenticated call carried its token: "query" (in the URL), "body" (a form,
        # multipart or JSON field) or "header" (Authorization: Bearer/OAuth). Tests use it to
        # show a client keeps tokens out of URLs.
        self.token_places: collections.Counter[str] = collections.Counter()
        self._snapshot_config()

    def reset(self) -> None:
        super().reset()
        self.state.reset()
        self.meter.reset()
        self.subscriber.reset()
        self.comments.reset()
        self.token_places = collections.Counter()

    # ----- in-process API --------------------------------------------------------------------

    def add_page(
        self, page_id: str, token: str, *, name: str | None = None, expires_at: float | None = None
    ) -> None:
        self.state.add_page(page_id, token, name=name, expires_at=expires_at)

    def set_token(
        self, page_id: str, token: str, *, expires_at: float | None = None, replace: bool = True
    ) -> None:
        """Give ``page_id`` the token ``token``; ``replace`` forgets the page's other tokens."""
        self.state.set_token(page_id, token, expires_at=expires_at, replace=replace)

    def expire_token(
        self, token: str | None = None, *, page_id: str | None = None, at: float | None = None
    ) -> int:
        """Make ``token`` (or every token of ``page_id``) expire at ``at`` (default now)."""
        return self.state.expire_token(token, page_id=page_id, at=at)

    def revoke_token(self, token: str, subcode: int = 460) -> None:
        self.state.revoke_token(token, subcode)

    def posts(self, page_id: str | None = None, *, include_deleted: bool = True) -> list[GraphPost]:
        """Every post in creation order (deleted ones flagged), optionally of one page."""
        return self.state.posts(page_id, include_deleted=include_deleted)

    def post(self, post_id: str) -> GraphPost | None:
        return self.state.post(post_id)

    def effects(self) -> list[dict[str, Any]]:
        """Every create/edit/delete in order: ``{seq, time, action, page_id, post_id, message}``."""
        return self.state.effects()

    def usage(self, page_id: str | None = None) -> dict[str, Any]:
        """The values the usage headers would carry now."""
        return self.meter.usage(page_id)

    def proof(self, token: str) -> str:
        if self.settings.app_secret is None:
            raise ValueError("no app secret configured")
        return appsecret_proof(self.settings.app_secret, token)

    def add_comment(
        self, post_id: str, message: str, sender: Mapping[str, Any], parent_id: str | None = None
    ) -> dict[str, Any]:
        """A citizen's comment on a live post (or a reply under ``parent_id``)."""
        return self.comments.add_comment(post_id, message, sender, parent_id)

    def replies(self, comment_id: str | None = None) -> list[dict[str, Any]]:
        """The page's replies to comments, in order, optionally under one comment."""
        return self.comments.replies(comment_id)

    def webhook_body(self, comment: Mapping[str, Any], verb: str = "add", *, timed: bool = True) -> bytes:
        return self.comments.webhook_body(comment, verb, timed=timed)

    def webhook_headers(self, body: bytes, signature: str = "valid") -> dict[str, str]:
        return self.comments.webhook_headers(body, signature)

    async def deliver_webhook(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """POST one delivery to the subscriber; its answer and how long it took."""
        return await self.subscriber.deliver_webhook(body, headers)

    # ----- HTTP plumbing ---------------------------------------------------------------------

    def _add_api_routes(self) -> None:
        r = self.app.router
        r.add_route("*", r"/{version:v\d+\.0}/{obj:[^/]+}", self._api)
        r.add_route("*", r"/{version:v\d+\.0}/{obj:[^/]+}/{edge:[^/]+}", self._api)
        r.add_route("*", "/{tail:.*}", self._unknown_path)

    def _trace_id(self) -> str:
        return "A" + "".join(self.rng.choice(TRACE_ALPHABET) for _ in range(22))

    def _page_of(self, obj: str) -> str | None:
        comment = self.comments.comment(obj)
        if comment is not None:
            return str(comment["page_id"])
        if "_" in obj:
            return obj.split("_", 1)[0]
        if self.state.has_page(obj):
            return obj
        post = self.state.photo_post(obj)
        return post.page_id if post is not None else None

    def _known_page(self, page_id: str | None) -> str | None:
        """``page_id`` if the emulator has that page (its calls and usage are counted), else None."""
        return page_id if page_id is not None and self.state.has_page(page_id) else None

    def _error_response(
        self, request: web.Request, err: GraphError, page_id: str | None, fault: Fault | None = None
    ) -> web.Response:
        set_outcome(request, f"error:{err.code}")
        return json_response(
            err.envelope(self._trace_id()),
            status=err.http_status,
            headers=self.meter.headers(self._known_page(page_id), fault),
        )

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
            return json_response(body, headers=self.meter.headers(self._known_page(page_id)))

        return await self.guarded(request, page_id if page_id is not None else obj, action)

    async def _fault_response(self, request: web.Request, fault: Fault) -> web.StreamResponse:
        page_id = self._page_of(request.match_info.get("obj", ""))
        if fault.kind == "rate_limit":
            code = fault.code if fault.code is not None else 32
            err = GraphError(code, fault.message, http_status=fault.http_status)
            return self._error_response(request, err, page_id, fault)
        if fault.kind == "server_error":
            err = GraphError(
                fault.code if fault.code is not None else 2,
                fault.message,
                subcode=fault.subcode,
                http_status=fault.http_status,
            )
        elif fault.kind == "expire_token":
            token = request.get(PARAMS_KEY, {}).get("access_token") or bearer(request)
            if token is not None:
                self.expire_token(token)
            err = self._expired_error(self.clock())
        else:  # "error"
            err = GraphError(
                fault.code if fault.code is not None else 1,
                fault.message,
                subcode=fault.subcode,
                http_status=fault.http_status,
            )
        return self._error_response(request, err, page_id)

    # ----- the API ---------------------------------------------------------------------------

    def _expired_error(self, expired_at: float) -> GraphError:
        fmt = "%A, %d-%b-%y %H:%M:%S UTC"
        message = TOKEN_SUBCODE_MESSAGES[463].format(
            expired=time.strftime(fmt, time.gmtime(expired_at)),
            now=time.strftime(fmt, time.gmtime(self.clock())),
        )
        return GraphError(190, message, subcode=463)

    def _authenticate(self, request: web.Request, params: Mapping[str, str]) -> PageToken:
        # As Graph: the ``access_token`` parameter (query string or body) wins over the header; a
        # header of another scheme (Basic, ...) or with no value is no token at all (104).
        given = params.get("access_token")
        token = given or bearer(request)
        if not token:
            raise GraphError(104, "An access token is required to request this resource.")
        self.token_places[
            "header" if not given else "query" if "access_token" in request.query else "body"
        ] += 1
        info = self.state.token(token)
        if info is None:
            raise GraphError(190)
        if info.revoked_subcode is not None:
            raise GraphError(
                190,
                TOKEN_SUBCODE_MESSAGES.get(info.revoked_subcode, MESSAGES[190]),
                subcode=info.revoked_subcode,
            )
        if info.expires_at is not None and self.clock() >= info.expires_at:
            raise self._expired_error(info.expires_at)
        secret = self.settings.app_secret
        if secret is not None:
            proof = params.get("appsecret_proof")
            if proof is None and self.settings.require_proof:
                raise GraphError(
                    100,
                    "API calls from the server require an appsecret_proof argument",
                    type_="GraphMethodException",
                )
            if proof is not None and not hmac.compare_digest(proof, appsecret_proof(secret, token)):
                raise GraphError(
                    100, "Invalid appsecret_proof provided in the API argument", type_="GraphMethodException"
                )
        return info

    def _handle(
        self,
        request: web.Request,
        method: str,
        obj: str,
        page_id: str | None,
        params: dict[str, str],
        files: dict[str, bytes],
    ) -> dict[str, Any]:
        token = self._authenticate(request, params)
        self.meter.count_call(self._known_page(page_id))
        edge = request.match_info.get("edge")
        if self.comments.comment(obj) is not None:
            return self._comment_object(method, obj, edge, params, token)
        if "_" in obj:
            return self._post_object(method, obj, edge, params, token)
        if self.state.has_page(obj):
            return self._page_object(request, method, obj, edge, params, files, token)
        post = self.state.photo_post(obj)
        if post is not None and edge is None:
            check_page(token, post.page_id, method, obj)
            if post.deleted:
                raise unsupported(method, obj)
            if method == "GET":
                return {"id": obj, "name": post.message, "created_time": fb_time(post.created_time)}
            if method == "DELETE":
                return self.state.delete(post)
        raise unsupported(method, obj)

    def _page_object(
        self,
        request: web.Request,
        method: str,
        page_id: str,
        edge: str | None,
        params: dict[str, str],
        files: dict[str, bytes],
        token: PageToken,
    ) -> dict[str, Any]:
        check_page(token, page_id, method, page_id)
        if edge is None:
            if method == "GET":
                return {"id": page_id, "name": self.state.page_name(page_id)}
            raise unsupported(method, page_id)
        if edge == "feed" and method == "POST":
            return self.state.create_feed_post(page_id, params)
        if edge == "photos" and method == "POST":
            return self.state.create_photo(page_id, params, files)
        if edge in ("feed", "posts", "published_posts", "scheduled_posts") and method == "GET":
            return self.state.list_posts(request.url, page_id, params, scheduled=edge == "scheduled_posts")
        if edge in ("feed", "posts", "published_posts", "scheduled_posts", "photos"):
            raise unsupported(method, page_id)
        raise GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node type (Page)")

    def _post_object(
        self, method: str, post_id: str, edge: str | None, params: dict[str, str], token: PageToken
    ) -> dict[str, Any]:
        post = self.state.post(post_id)
        if post is None or post.deleted:
            raise unsupported(method, post_id)
        check_page(token, post.page_id, method, post_id)
        if edge is not None:
            raise GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node type (Post)")
        if method == "GET":
            return self.state.render(post, parse_fields(params.get("fields")))
        if method == "DELETE":
            return self.state.delete(post)
        if method == "POST":
            return self.state.edit(post, params)
        raise unsupported(method, post_id)

    def _comment_object(
        self, method: str, comment_id: str, edge: str | None, params: dict[str, str], token: PageToken
    ) -> dict[str, Any]:
        comment = self.comments.comment(comment_id)
        post = self.state.post(comment["post_id"]) if comment is not None else None
        if comment is None or comment["deleted"] or post is None or post.deleted:
            raise unsupported(method, comment_id)
        check_page(token, comment["page_id"], method, comment_id)
        if edge is None and method == "GET":
            return {k: comment[k] for k in ("id", "message", "from", "parent_id")} | {
                "created_time": fb_time(comment["created_time"])
            }
        if edge != "comments":
            raise GraphError(100, f"(#100) Tried accessing nonexisting field ({edge}) on node type (Comment)")
        if method == "GET":
            return {
                "data": [
                    {
                        "id": r["id"],
                        "message": r["message"],
                        "from": r["from"],
                        "created_time": fb_time(r["created_time"]),
                    }
                    for r in self.comments.replies(comment_id)
                ]
            }
        if method != "POST":
            raise unsupported(method, comment_id)
        message = params.get("message")
        if not message:
            raise GraphError(100, "(#100) Missing message or attachment")
        return {"id": self.comments.reply(comment_id, message)["id"]}

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
        data["posts"] = len(self.state.posts())
        data["effects"] = len(self.state.effects())
        data["token_places"] = dict(self.token_places)
        return data

    async def _ctl_posts(self, request: web.Request) -> web.StreamResponse:
        page_id = request.query.get("page_id")
        include_deleted = request.query.get("include_deleted", "true") != "false"
        now = self.clock()
        return json_response(
            {"posts": [p.to_json(now) for p in self.posts(page_id, include_deleted=include_deleted)]}
        )

    async def _ctl_effects(self, request: web.Request) -> web.StreamResponse:
        return json_response({"effects": self.effects()})

    async def _ctl_usage(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            {
                "app": self.usage()["app"],
                "pages": {p: self.meter.page_entry(p) for p in self.state.page_ids()},
            }
        )

    async def _ctl_add_page(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        page_id, token = str_field(body, "page_id"), str_field(body, "token")
        self.add_page(page_id, token, name=body.get("name"))
        return json_response({"ok": True})

    async def _ctl_set_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        page_id, token = str_field(body, "page_id"), str_field(body, "token")
        if not self.state.has_page(page_id):
            raise ControlError(f"unknown page {page_id}", status=404)
        self.set_token(
            page_id, token, expires_at=body.get("expires_at"), replace=bool(body.get("replace", True))
        )
        return json_response({"ok": True})

    async def _ctl_expire_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        if not isinstance(body, dict) or not (body.get("token") or body.get("page_id")):
            raise ControlError('expected {"token": ...} or {"page_id": ...}, optional "at"')
        n = self.expire_token(body.get("token"), page_id=body.get("page_id"), at=body.get("at"))
        return json_response({"expired": n})

    async def _ctl_revoke_token(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        token = str_field(body, "token")
        if self.state.token(token) is None:
            raise ControlError("unknown token", status=404)
        self.revoke_token(token, int(body.get("subcode", 460)))
        return json_response({"ok": True})

    async def _ctl_webhook_subscribe(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        url, verify_token = str_field(body, "url"), str_field(body, "verify_token")
        challenge = str(self.rng.randrange(10**9, 10**10))
        await self.subscriber.subscribe(url, verify_token, challenge)
        return json_response({"subscribed": True, "url": url})

    async def _ctl_webhook_comment(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        verb = str(body.get("verb", "add")) if isinstance(body, dict) else "add"
        if verb == "add":
            sender = body.get("from") if isinstance(body.get("from"), dict) else {}
            comment = self.comments.add_comment(
                str_field(body, "post_id"),
                str_field(body, "message"),
                sender or {"id": "6001", "name": "Người dân"},
                parent_id=body.get("parent_id"),
            )
        elif verb in ("edited", "remove"):
            comment_id = str_field(body, "comment_id")
            if self.comments.comment(comment_id) is None:
                raise ControlError("unknown comment_id", status=404)
            if verb == "edited":
                comment = self.comments.edit(comment_id, str_field(body, "message"))
            else:
                comment = self.comments.remove(comment_id)
        else:
            raise ControlError("verb is add, edited or remove")
        sent = await self.comments.notify(
            comment,
            verb,
            signature=str(body.get("signature", "valid")),
            timed=body.get("untimed") is not True,
        )
        return json_response({"comment_id": comment["id"], **sent})

    async def _ctl_webhook_replay(self, request: web.Request) -> web.StreamResponse:
        return json_response(await self.subscriber.replay())

    async def _ctl_replies(self, request: web.Request) -> web.StreamResponse:
        return json_response({"replies": self.comments.replies(request.query.get("comment_id"))})
