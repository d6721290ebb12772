"""What the Graph emulator holds: its Pages (id and name), their Page access tokens, the posts
and photos on them, and the record of every effect on a post (see ``graph`` for the API that
serves them, ``graph_usage`` for the call accounting, ``graph_webhooks`` for comments)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from yarl import URL

from infra.local.emulators.faults import Clock
from infra.local.emulators.graph_model import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    POST_FIELDS,
    SCHEDULE_MAX_S,
    SCHEDULE_MIN_S,
    GraphError,
    GraphPost,
    GraphSettings,
    PageToken,
    decode_cursor,
    encode_cursor,
    fb_time,
    parse_bool,
    parse_fields,
    parse_int,
    parse_timestamp,
)

__all__ = ["GraphState"]


class GraphState:
    """A set of Pages, each with its Page access token(s), and their posts and photos.

    Built from ``pages`` (page id → Page access token) and ``page_names``, to which ``reset()``
    returns. The effects on posts take their ``seq`` from ``next_seq`` (the emulator's sequence,
    shared with the comments); the duplicate check reads ``settings.duplicate_window_s``.
    """

    def __init__(
        self,
        settings: GraphSettings,
        clock: Clock,
        next_seq: Callable[[], int],
        pages: Mapping[str, str],
        page_names: Mapping[str, str],
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.next_seq = next_seq
        self._initial_pages = dict(pages)
        self._initial_names = dict(page_names)
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's pages and tokens, with no post, photo or effect."""
        self._pages: dict[str, str] = {}
        self._tokens: dict[str, PageToken] = {}
        self._posts: dict[str, GraphPost] = {}
        self._photos: dict[str, str] = {}
        self._effects: list[dict[str, Any]] = []
        self._next_object = 122100000000001
        for page_id, token in self._initial_pages.items():
            self.add_page(page_id, token, name=self._initial_names.get(page_id))

    # ----- pages and tokens ------------------------------------------------------------------

    def add_page(
        self, page_id: str, token: str, *, name: str | None = None, expires_at: float | None = None
    ) -> None:
        self._pages[page_id] = name or f"Page {page_id}"
        self.set_token(page_id, token, expires_at=expires_at, replace=False)

    def has_page(self, page_id: str) -> bool:
        return page_id in self._pages

    def page_ids(self) -> list[str]:
        return list(self._pages)

    def page_name(self, page_id: str) -> str:
        """The page's name ("" for a page the emulator does not know)."""
        return self._pages.get(page_id, "")

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

    def token(self, token: str) -> PageToken | None:
        """What the emulator knows of ``token`` (None: not a token it gave out)."""
        return self._tokens.get(token)

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

    # ----- posts and photos ------------------------------------------------------------------

    def posts(self, page_id: str | None = None, *, include_deleted: bool = True) -> list[GraphPost]:
        """Every post in creation order (deleted ones flagged), optionally of one page."""
        return [
            p
            for p in self._posts.values()
            if (page_id is None or p.page_id == page_id) and (include_deleted or not p.deleted)
        ]

    def post(self, post_id: str) -> GraphPost | None:
        return self._posts.get(post_id)

    def photo_post(self, photo_id: str) -> GraphPost | None:
        """The post a photo was published with (None: not a photo id)."""
        post_id = self._photos.get(photo_id)
        return self._posts[post_id] if post_id is not None else None

    def effects(self) -> list[dict[str, Any]]:
        """Every create/edit/delete in order: ``{seq, time, action, page_id, post_id, message}``."""
        return list(self._effects)

    def new_id(self) -> str:
        """A fresh Graph object number (posts, photos and comments draw from the same series)."""
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

    def create_feed_post(self, page_id: str, params: dict[str, str]) -> dict[str, Any]:
        """``POST /{page-id}/feed``: a post with ``message`` and/or ``link``, published, or not
        (``published=false``), or scheduled (``scheduled_publish_time``)."""
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
        horizon = self.clock() - self.settings.duplicate_window_s
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
            id=f"{page_id}_{self.new_id()}",
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

    def create_photo(self, page_id: str, params: dict[str, str], files: dict[str, bytes]) -> dict[str, Any]:
        """``POST /{page-id}/photos``: a photo (by ``url`` or uploaded ``source``) and its post."""
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
            photo_id=self.new_id(),
            photo_url=url,
            photo_bytes=None if source is None else len(source),
        )
        return {"id": post.photo_id, "post_id": post.id}

    def edit(self, post: GraphPost, params: dict[str, str]) -> dict[str, Any]:
        """``POST /{post-id}``: a new ``message`` and/or ``is_published``."""
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

    def delete(self, post: GraphPost) -> dict[str, Any]:
        post.deleted = True
        post.deleted_at = self.clock()
        self._record("delete", post, post.message)
        return {"success": True}

    def render(self, post: GraphPost, fields: Iterable[str]) -> dict[str, Any]:
        """``GET /{post-id}``: the post's ``fields``, as Graph shows them."""
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

    def list_posts(
        self, url: URL, page_id: str, params: dict[str, str], *, scheduled: bool
    ) -> dict[str, Any]:
        """A page of ``GET /{page-id}/feed`` (published posts) or ``/scheduled_posts`` (not yet
        due), newest first; ``paging.next`` is ``url`` with the next cursor."""
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
        result: dict[str, Any] = {"data": [self.render(p, fields) for p in chunk]}
        if chunk:
            paging: dict[str, Any] = {
                "cursors": {"before": encode_cursor(chunk[0]), "after": encode_cursor(chunk[-1])}
            }
            if start + limit < len(posts):
                paging["next"] = str(
                    url.update_query({"after": encode_cursor(chunk[-1]), "limit": str(limit)})
                )
            result["paging"] = paging
        return result
