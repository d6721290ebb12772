"""The Graph emulator's comments and webhooks (issue 8): citizens comment on the page's posts,
the emulator delivers the signed ``feed`` webhook to the subscriber, and the page's replies are
echoed to it, as Graph does (see ``graph`` for the routes that drive them)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from infra.local.emulators.common import ControlError, WebhookSender
from infra.local.emulators.faults import Clock
from infra.local.emulators.graph_model import GraphSettings
from infra.local.emulators.graph_state import GraphState

__all__ = ["GraphComments", "GraphSubscriber"]


class GraphSubscriber(WebhookSender):
    """The one webhook subscriber: subscribed after Graph's verification handshake, then sent
    each delivery (``deliver_webhook``), the last of which ``replay`` sends again."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """No subscriber, nothing delivered."""
        # The two fields WebhookSender declares and leaves to the class that uses it to set.
        self._subscription = None
        self._last_delivery = None

    @property
    def subscribed(self) -> bool:
        return self._subscription is not None

    async def subscribe(self, url: str, verify_token: str, challenge: str) -> None:
        """Subscribe ``url`` if it passes the handshake Graph performs (``GET url?hub.mode=
        subscribe&hub.verify_token=…&hub.challenge=N`` answers 200 with N), else 409."""
        query = {"hub.mode": "subscribe", "hub.verify_token": verify_token, "hub.challenge": challenge}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            async with session.get(url, params=query) as reply:
                text = await reply.text()
        if reply.status != 200 or text != challenge:
            raise ControlError(f"verification failed: HTTP {reply.status} {text[:100]!r}", status=409)
        self._subscription = {"url": url, "verify_token": verify_token}

    async def replay(self) -> dict[str, Any]:
        """POST the last delivery again, byte for byte; the subscriber's answer."""
        if self._last_delivery is None:
            raise ControlError("nothing delivered yet", status=409)
        return await self.deliver_webhook(*self._last_delivery)


class GraphComments:
    """Comments on the posts of ``state``, the page's replies to them, and their ``feed``
    deliveries to ``subscriber`` (signed with ``settings.app_secret``). A comment is a dict
    ``{id, post_id, page_id, parent_id, message, from, created_time, deleted, seq}``."""

    def __init__(
        self,
        state: GraphState,
        subscriber: GraphSubscriber,
        settings: GraphSettings,
        clock: Clock,
        next_seq: Callable[[], int],
    ) -> None:
        self.state = state
        self.subscriber = subscriber
        self.settings = settings
        self.clock = clock
        self.next_seq = next_seq
        self.reset()

    def reset(self) -> None:
        """No comment and no reply (an echo still on its way is not called back)."""
        self._comments: dict[str, dict[str, Any]] = {}
        self._replies: list[dict[str, Any]] = []
        self._echoes: set[asyncio.Task[Any]] = set()

    def comment(self, comment_id: str) -> dict[str, Any] | None:
        """The comment (deleted ones too); None for an id that is not a comment's."""
        return self._comments.get(comment_id)

    def add_comment(
        self, post_id: str, message: str, sender: Mapping[str, Any], parent_id: str | None = None
    ) -> dict[str, Any]:
        """A citizen's comment on a live post (or a reply under ``parent_id``)."""
        post = self.state.post(post_id)
        if post is None or post.deleted:
            raise ControlError(f"no live post {post_id}", status=404)
        comment: dict[str, Any] = {
            "id": f"{post_id.split('_', 1)[1]}_{self.state.new_id()}",
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

    def edit(self, comment_id: str, message: str) -> dict[str, Any]:
        """The citizen edits a comment (which must exist)."""
        comment = self._comments[comment_id]
        comment["message"] = message
        return comment

    def remove(self, comment_id: str) -> dict[str, Any]:
        """The citizen deletes a comment (which must exist); it stays known, flagged ``deleted``."""
        comment = self._comments[comment_id]
        comment["deleted"] = True
        return comment

    def reply(self, comment_id: str, message: str) -> dict[str, Any]:
        """The page replies under ``comment_id``; echoed to the subscriber, if any, as Graph does."""
        comment = self._comments[comment_id]
        page = {"id": comment["page_id"], "name": self.state.page_name(comment["page_id"])}
        reply = self.add_comment(comment["post_id"], message, page, parent_id=comment_id)
        self._replies.append(reply)
        if self.subscriber.subscribed:  # Graph tells the subscriber about the page's comments too
            body = self.webhook_body(reply)
            task = asyncio.get_running_loop().create_task(
                self.subscriber.deliver_webhook(body, self.webhook_headers(body))
            )
            self._echoes.add(task)
            task.add_done_callback(self._echo_done)
        return reply

    def replies(self, comment_id: str | None = None) -> list[dict[str, Any]]:
        """The page's replies to comments, in order, optionally under one comment."""
        return [r for r in self._replies if comment_id is None or r["parent_id"] == comment_id]

    async def echoes_delivered(self) -> None:
        """Wait for the echoes of the page's replies still on their way (raising if one failed)."""
        for task in list(self._echoes):
            await task

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
        key = (self.settings.app_secret or "") if signature == "valid" else "not-the-app-secret"
        headers["X-Hub-Signature-256"] = "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
        return headers

    async def notify(
        self, comment: Mapping[str, Any], verb: str, *, signature: str = "valid", timed: bool = True
    ) -> dict[str, Any]:
        """Deliver the ``feed`` webhook of ``comment`` (``verb`` add, edited or remove) to the
        subscriber; its answer and how long it took."""
        payload = self.webhook_body(comment, verb, timed=timed)
        return await self.subscriber.deliver_webhook(payload, self.webhook_headers(payload, signature))

    def _echo_done(self, task: asyncio.Task[Any]) -> None:
        self._echoes.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved and dropped: a receiver that went away is not the API's concern
