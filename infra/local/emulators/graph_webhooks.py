"""The Graph emulator's comments and webhooks (issue 8): citizens comment on the page's posts,
the emulator delivers the signed ``feed`` webhook to the subscriber, and the page's replies are
echoed to it, as Graph does (see ``graph`` for the control routes)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from infra.local.emulators.common import ControlError, WebhookSender, json_response, read_json
from infra.local.emulators.graph_model import GraphError, PageToken, fb_time, str_field, unsupported
from infra.local.emulators.graph_pages import GraphPages

__all__ = ["GraphComments"]


class GraphComments(WebhookSender, GraphPages):
    """Comments on the posts of ``GraphPages``, the page's replies, and the webhook subscriber."""

    def _init_state(self) -> None:
        super()._init_state()
        self._init_webhooks()

    def _init_webhooks(self) -> None:
        self._subscription: dict[str, str] | None = None
        self._comments: dict[str, dict[str, Any]] = {}
        self._replies: list[dict[str, Any]] = []
        self._last_delivery: tuple[bytes, dict[str, str]] | None = None
        self._echoes: set[asyncio.Task[Any]] = set()

    def add_comment(
        self, post_id: str, message: str, sender: Mapping[str, Any], parent_id: str | None = None
    ) -> dict[str, Any]:
        """A citizen's comment on a live post (or a reply under ``parent_id``)."""
        post = self._posts.get(post_id)
        if post is None or post.deleted:
            raise ControlError(f"no live post {post_id}", status=404)
        comment: dict[str, Any] = {
            "id": f"{post_id.split('_', 1)[1]}_{self._new_id()}",
            "post_id": post_id,
            "page_id": post.page_id,
            "parent_id": parent_id or post_id,
            "message": message,
            "from": {"id": str(sender.get("id") or ""), "name": str(sender.get("name") or "")},
            "created_time": int(self.clock()),
            "deleted": False,
            "seq": self.next_seq(),
        }
        self._comments[comment["id"]] = comment
        return comment

    def replies(self, comment_id: str | None = None) -> list[dict[str, Any]]:
        """The page's replies to comments, in order, optionally under one comment."""
        return [r for r in self._replies if comment_id is None or r["parent_id"] == comment_id]

    def webhook_body(self, comment: Mapping[str, Any], verb: str = "add", *, timed: bool = True) -> bytes:
        """The ``feed`` delivery; ``timed`` False leaves the entry's ``time`` out (a forged or
        broken delivery: Graph always sends one)."""
        value = {
            "item": "comment",
            "verb": verb,
            "comment_id": comment["id"],
            "post_id": comment["post_id"],
            "parent_id": comment["parent_id"],
            "created_time": comment["created_time"],
            "from": comment["from"],
            "message": comment["message"],
        }
        entry: dict[str, Any] = {
            "id": comment["page_id"],
            "time": int(self.clock()),
            "changes": [{"field": "feed", "value": value}],
        }
        if not timed:
            del entry["time"]
        return orjson.dumps({"object": "page", "entry": [entry]})

    def webhook_headers(self, body: bytes, signature: str = "valid") -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if signature == "missing":
            return headers
        if signature == "malformed":  # not sha256= and 64 hex digits: another algorithm, other bytes
            headers["X-Hub-Signature-256"] = "sha1=" + "é" * 40
            return headers
        if signature not in ("valid", "bad"):
            raise ControlError("signature is valid, bad, malformed or missing")
        key = (self.app_secret or "") if signature == "valid" else "not-the-app-secret"
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        return headers

    def _comment_object(
        self, method: str, comment_id: str, edge: str | None, params: dict[str, str], token: PageToken
    ) -> dict[str, Any]:
        comment = self._comments[comment_id]
        post = self._posts.get(comment["post_id"])
        if comment["deleted"] or post is None or post.deleted:
            raise unsupported(method, comment_id)
        self._check_page(token, comment["page_id"], method, comment_id)
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
                    for r in self.replies(comment_id)
                ]
            }
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
                self.deliver_webhook(body, self.webhook_headers(body))
            )
            self._echoes.add(task)
            task.add_done_callback(self._echo_done)
        return {"id": reply["id"]}

    def _echo_done(self, task: asyncio.Task[Any]) -> None:
        self._echoes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved and dropped: a receiver that went away is not the API's concern

    async def _ctl_webhook_subscribe(self, request: web.Request) -> web.StreamResponse:
        body = await read_json(request)
        url, verify_token = str_field(body, "url"), str_field(body, "verify_token")
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
            comment = self.add_comment(
                str_field(body, "post_id"),
                str_field(body, "message"),
                sender or {"id": "6001", "name": "Người dân"},
                parent_id=body.get("parent_id"),
            )
        elif verb in ("edited", "remove"):
            comment = self._comments.get(str_field(body, "comment_id"), {})
            if not comment:
                raise ControlError("unknown comment_id", status=404)
            if verb == "edited":
                comment["message"] = str_field(body, "message")
            else:
                comment["deleted"] = True
        else:
            raise ControlError("verb is add, edited or remove")
        payload = self.webhook_body(comment, verb, timed=body.get("untimed") is not True)
        sent = await self.deliver_webhook(
            payload, self.webhook_headers(payload, str(body.get("signature", "valid")))
        )
        return json_response({"comment_id": comment["id"], **sent})

    async def _ctl_replies(self, request: web.Request) -> web.StreamResponse:
        return json_response({"replies": self.replies(request.query.get("comment_id"))})
