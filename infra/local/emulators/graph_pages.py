"""The Graph emulator's pages: their tokens, posts and photos, the effects on them, and the
usage accounting behind ``X-App-Usage`` / ``X-Business-Use-Case-Usage`` (see ``graph`` for the
API that serves them)."""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

import orjson
from aiohttp import web

from infra.local.emulators.common import EmulatorBase
from infra.local.emulators.faults import Fault
from infra.local.emulators.graph_model import (
    APP_LEVEL_CODES,
    DEFAULT_LIMIT,
    MAX_LIMIT,
    POST_FIELDS,
    SCHEDULE_MAX_S,
    SCHEDULE_MIN_S,
    GraphError,
    GraphPost,
    PageToken,
    appsecret_proof,
    decode_cursor,
    encode_cursor,
    fb_time,
    parse_bool,
    parse_fields,
    parse_int,
    parse_timestamp,
    unsupported,
)

__all__ = ["GraphPages"]


class GraphPages(EmulatorBase):
    """What the Graph emulator holds: a set of Pages, each with its Page access token(s).

    ``pages`` maps page id → Page access token. With ``app_secret`` an ``appsecret_proof`` sent
    by the client is checked; with ``require_proof`` as well, a call without one is refused.
    Limits: ``page_call_limit`` calls per page and ``app_call_limit`` calls in all per
    ``usage_window_s`` (sliding). The same message (and link) on one page within
    ``duplicate_window_s`` is refused with 506.
    """

    CONFIG_KEYS: ClassVar[Mapping[str, type]] = {
        "require_proof": bool,
        "page_call_limit": int,
        "app_call_limit": int,
        "usage_window_s": float,
        "page_throttle_code": int,
        "duplicate_window_s": float,
    }

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
        clock: Callable[[], float] | None = None,
        seed: int | None = None,
    ) -> None:
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
        # Where each authenticated call carried its token: "query" (in the URL), "body" (a form,
        # multipart or JSON field) or "header" (Authorization: Bearer/OAuth). Tests use it to
        # show a client keeps tokens out of URLs.
        self.token_places: collections.Counter[str] = collections.Counter()
        for page_id, token in self._initial_pages.items():
            self.add_page(page_id, token, name=self._initial_names.get(page_id))

    def reset(self) -> None:
        super().reset()
        self._init_state()

    # ----- in-process API --------------------------------------------------------------------

    def add_page(
        self, page_id: str, token: str, *, name: str | None = None, expires_at: float | None = None
    ) -> None:
        self._pages[page_id] = name or f"Page {page_id}"
        self.set_token(page_id, token, expires_at=expires_at, replace=False)

    def set_token(
        self, page_id: str, token: str, *, expires_at: float | None = None, replace: bool = True
    ) -> None:
        """Give ``page_id`` the token ``token``; ``replace`` forgets the page's other tokens."""
        if page_id not in self._pages:
            raise KeyError(f"unknown page {page_id}")
        if replace:
            for old in [t for t, info in self._tokens.items() if info.page_id == page_id]:
                del self._tokens[old]
        self._tokens[token] = PageToken(token, page_id, expires_at)

    def expire_token(
        self, token: str | None = None, *, page_id: str | None = None, at: float | None = None
    ) -> int:
        """Make ``token`` (or every token of ``page_id``) expire at ``at`` (default now)."""
        when = self.clock() if at is None else at
        hit = [
            info
            for info in self._tokens.values()
            if (token is not None and info.token == token) or (token is None and info.page_id == page_id)
        ]
        for info in hit:
            info.expires_at = when
        return len(hit)

    def revoke_token(self, token: str, subcode: int = 460) -> None:
        self._tokens[token].revoked_subcode = subcode

    def posts(self, page_id: str | None = None, *, include_deleted: bool = True) -> list[GraphPost]:
        """Every post in creation order (deleted ones flagged), optionally of one page."""
        return [
            p
            for p in self._posts.values()
            if (page_id is None or p.page_id == page_id) and (include_deleted or not p.deleted)
        ]

    def post(self, post_id: str) -> GraphPost | None:
        return self._posts.get(post_id)

    def effects(self) -> list[dict[str, Any]]:
        """Every create/edit/delete in order: ``{seq, time, action, page_id, post_id, message}``."""
        return list(self._effects)

    def usage(self, page_id: str | None = None) -> dict[str, Any]:
        """The values the usage headers would carry now."""
        app_pct = self._pct(len(self._window(self._app_calls)), self.app_call_limit)
        out: dict[str, Any] = {
            "app": {"call_count": app_pct, "total_cputime": app_pct, "total_time": app_pct}
        }
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

    def _buc_entry(self, page_id: str, *, floor_pct: int = 0, regain: int | None = None) -> dict[str, Any]:
        calls = self._window(self._page_calls.setdefault(page_id, collections.deque()))
        pct = max(self._pct(len(calls), self.page_call_limit), floor_pct)
        return {
            "type": "pages",
            "call_count": pct,
            "total_cputime": pct,
            "total_time": pct,
            "estimated_time_to_regain_access": self._regain_minutes(calls, self.page_call_limit)
            if regain is None
            else regain,
        }

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
        return {
            "X-App-Usage": orjson.dumps(app).decode(),
            "X-Business-Use-Case-Usage": orjson.dumps(buc).decode(),
        }

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

    # ----- posts and photos -----------------------------------------------------------------

    def _check_page(self, token: PageToken, page_id: str, method: str, obj: str) -> None:
        if token.page_id == page_id:
            return
        if method == "GET":
            raise unsupported(method, obj)
        raise GraphError(200)

    def _new_id(self) -> str:
        self._next_object += 1
        return str(self._next_object)

    def _record(self, action: str, post: GraphPost, message: str | None) -> dict[str, Any]:
        effect = {
            "seq": self.next_seq(),
            "time": self.clock(),
            "action": action,
            "page_id": post.page_id,
            "post_id": post.id,
            "message": message,
        }
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
                raise GraphError(
                    100, "(#100) You cannot specify a scheduled publish time on a published post"
                )
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
            if (
                post.page_id == page_id
                and not post.deleted
                and post.created_at >= horizon
                and post.message == message
                and post.link == link
            ):
                raise GraphError(
                    506,
                    subcode=1455006,
                    user_title="Duplicate Status Update",
                    user_msg="This status update is identical to the last one you "
                    "posted. Try posting something different, or delete your "
                    "previous update.",
                )

    def _new_post(
        self,
        page_id: str,
        kind: str,
        message: str | None,
        link: str | None,
        published: bool,
        scheduled: int | None,
        **photo: Any,
    ) -> GraphPost:
        now = self.clock()
        post = GraphPost(
            seq=0,
            id=f"{page_id}_{self._new_id()}",
            page_id=page_id,
            kind=kind,
            message=message,
            link=link,
            published=published,
            scheduled_publish_time=scheduled,
            created_at=now,
            updated_at=now,
            **photo,
        )
        self._posts[post.id] = post
        if post.photo_id is not None:
            self._photos[post.photo_id] = post.id
        post.seq = self._record("create", post, message)["seq"]
        return post

    def _create_photo(self, page_id: str, params: dict[str, str], files: dict[str, bytes]) -> dict[str, Any]:
        url = params.get("url") or None
        source = files.get("source")
        if url is None and source is None:
            raise GraphError(324, "(#324) Requires upload file")
        caption = params.get("caption") or params.get("message") or None
        published = parse_bool(params.get("published"), "published", default=True)
        post = self._new_post(
            page_id,
            "photo",
            caption,
            None,
            published,
            None,
            photo_id=self._new_id(),
            photo_url=url,
            photo_bytes=None if source is None else len(source),
        )
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
                raise GraphError(
                    100, f"(#100) Tried accessing nonexisting field ({name}) on node type (Post)"
                )
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

    def _list(
        self, request: web.Request, page_id: str, params: dict[str, str], *, scheduled: bool
    ) -> dict[str, Any]:
        now = self.clock()
        limit = parse_int(params.get("limit"), "limit", DEFAULT_LIMIT)
        limit = min(max(limit, 1), MAX_LIMIT)
        fields = parse_fields(params.get("fields"))
        posts = [
            p
            for p in self._posts.values()
            if p.page_id == page_id
            and not p.deleted
            and (p.is_published(now) != scheduled)
            and (not scheduled or p.scheduled_publish_time is not None)
        ]
        posts.sort(key=lambda p: (p.created_time, p.seq), reverse=True)
        start = 0
        after = params.get("after")
        if after:
            key = decode_cursor(after)
            start = next((i for i, p in enumerate(posts) if (p.created_time, p.seq) < key), len(posts))
        chunk = posts[start : start + limit]
        result: dict[str, Any] = {"data": [self._render(p, fields) for p in chunk]}
        if chunk:
            paging: dict[str, Any] = {
                "cursors": {"before": encode_cursor(chunk[0]), "after": encode_cursor(chunk[-1])}
            }
            if start + limit < len(posts):
                paging["next"] = str(
                    request.url.update_query({"after": encode_cursor(chunk[-1]), "limit": str(limit)})
                )
            result["paging"] = paging
        return result
