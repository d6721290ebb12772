"""Facebook Page adapter (Graph API): post, edit on a newer version, delete on retraction.

Facts from shared/design/channel-contracts.md. Tokens come from a 0600 JSON file
{page_id: page access token} (schemas/secrets.py: refused when open to other users), re-read when
it changes, never logged, sent only in the ``Authorization: Bearer`` header (never in a URL). Every post carries a short
marker (the article's code) so that after an unknown outcome the post can be found in the page
feed before anything is resent. A page token that expires can be given its expiry in the same
file as ``"<page id>:expires_at": <epoch seconds>``; it is exported as lantoa_token_expiry_seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from typing import ClassVar

import aiohttp
import orjson

from consumers.delivery.base import Effect, Prior, article_marker, reply_detail
from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.delivery.http import Reply, call
from schemas import metrics
from schemas.models import Action, Command, Outcome, Target
from schemas.secrets import SecretFile
from schemas.topics import Channel

log = logging.getLogger(__name__)

TOKEN_CODES = {190, 102}
TRANSIENT_CODES = {1, 2}
RATE_CODES = {4, 17, 32, 613, 80001}
PERMISSION_CODES = {10} | set(range(200, 300))
RECONCILE_FEED_LIMIT = 100


def usage_percent(headers: dict[str, str], page_id: str) -> float | None:
    """The highest usage the platform reports for the app and this page, in percent."""
    values: list[float] = []
    for name in ("X-App-Usage", "x-app-usage"):
        if name in headers:
            try:
                values += [
                    float(v) for v in orjson.loads(headers[name]).values() if isinstance(v, (int, float))
                ]
            except (orjson.JSONDecodeError, AttributeError):
                pass
    for name in ("X-Business-Use-Case-Usage", "x-business-use-case-usage"):
        if name in headers:
            try:
                for entry in orjson.loads(headers[name]).get(page_id, []):
                    values += [float(entry.get(k, 0)) for k in ("call_count", "total_cputime", "total_time")]
            except (orjson.JSONDecodeError, AttributeError):
                pass
    return max(values) if values else None


def regain_seconds(headers: dict[str, str], page_id: str) -> float | None:
    for name in ("X-Business-Use-Case-Usage", "x-business-use-case-usage"):
        if name in headers:
            try:
                minutes = max(
                    float(e.get("estimated_time_to_regain_access", 0))
                    for e in orjson.loads(headers[name]).get(page_id, [])
                )
            except (orjson.JSONDecodeError, ValueError, AttributeError):
                return None
            return minutes * 60 if minutes > 0 else None
    return None


class FanpageAdapter:
    """Publishes to Facebook Pages through the Graph API."""

    channel: ClassVar[Channel] = Channel.FANPAGE
    # Throttle a page before Facebook does (Pages API limits are per page per hour).
    min_interval_s: ClassVar[float] = 0.0

    def __init__(
        self,
        base_url: str,
        api_version: str,
        tokens: SecretFile,
        targets: Callable[[str], Target | None],
        *,
        app_secret: SecretFile | None = None,
        timeout_s: float = 10.0,
        pause_on_token_s: float = 3600.0,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.base = f"{base_url.rstrip('/')}/{api_version}"
        self.tokens, self.targets, self.app_secret = tokens, targets, app_secret
        self.timeout_s, self.pause_on_token_s = timeout_s, pause_on_token_s
        self._session = session
        self._own_session = session is None

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        metrics.TOKEN_EXPIRY.source("fanpage", self.token_expiry)

    async def close(self) -> None:
        metrics.TOKEN_EXPIRY.remove("fanpage")
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def token_expiry(self) -> list[metrics.Sample]:
        """Seconds left per page token of the tokens file (+Inf: no ``<page id>:expires_at`` entry,
        a page token from a long-lived user token does not expire). Runs at scrape time."""
        names = self.tokens.keys()
        out: list[metrics.Sample] = []
        for page_id in (n for n in names if ":" not in n):
            expires = self.tokens.get(f"{page_id}:expires_at")
            left = float(expires) - time.time() if expires else math.inf
            out.append((("fanpage", page_id, "page"), left))
        return out

    # -- effects ------------------------------------------------------------------------------

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        page_id, token = self._page(command)
        if command.key.action is Action.REPLY:
            return await self._reply(command, page_id, token)
        if command.key.action is Action.RETRACT:
            if not prior.external_id:
                return Effect(Outcome.SKIPPED, None, {"reason": "no live post to delete"})
            reply = await self._request("DELETE", f"/{prior.external_id}", token, page_id, mutating=True)
            if self._error(reply) == (100, 33):  # already gone: the delete happened
                return Effect(Outcome.DELETED, prior.external_id)
            self._raise_for(reply, page_id, command)
            return Effect(
                Outcome.DELETED, prior.external_id, {"usage_pct": usage_percent(reply.headers, page_id)}
            )
        message = self._message(command)
        if prior.external_id:
            reply = await self._request(
                "POST", f"/{prior.external_id}", token, page_id, mutating=True, data={"message": message}
            )
            self._raise_for(reply, page_id, command)
            return Effect(
                Outcome.UPDATED, prior.external_id, {"usage_pct": usage_percent(reply.headers, page_id)}
            )
        data = {"message": message}
        link = command.payload.get("link")
        if isinstance(link, str) and link.startswith(("https://", "http://")):
            data["link"] = link
        reply = await self._request("POST", f"/{page_id}/feed", token, page_id, mutating=True, data=data)
        if self._error(reply)[0] == 506:
            # Facebook refuses a duplicate post. Ours only if we can find it by our marker.
            found = await self._find(page_id, token, article_marker(command.key.uri))
            if found:
                return Effect(Outcome.DELIVERED, found, {"reconciled": True})
            raise PermanentDeliveryError("duplicate post refused (506) and no post of ours found", code="506")
        self._raise_for(reply, page_id, command)
        post_id = str((reply.body or {}).get("id", ""))
        if not post_id:
            raise TransientDeliveryError("Graph API answered without a post id")
        return Effect(Outcome.DELIVERED, post_id, {"usage_pct": usage_percent(reply.headers, page_id)})

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        if command.key.action is Action.REPLY:
            page_id, token = self._page(command)
            found = await self._find_reply(page_id, token, command)
            return (
                Effect(Outcome.DELIVERED, found, {**reply_detail(command), "reconciled": True})
                if found
                else None
            )
        if command.key.action is not Action.PUBLISH or prior.external_id:
            return None  # edits and deletes are idempotent: resending is safe
        page_id, token = self._page(command)
        found = await self._find(page_id, token, article_marker(command.key.uri))
        return Effect(Outcome.DELIVERED, found, {"reconciled": True}) if found else None

    # -- replies to citizens (engagement, issue 8) ---------------------------------------------

    async def _reply(self, command: Command, page_id: str, token: str) -> Effect:
        """An editor's answer as a reply to the citizen's comment: POST /{comment-id}/comments."""
        comment_id, text = (
            str(command.payload.get("comment_id") or ""),
            str(command.payload.get("text") or ""),
        )
        if not comment_id or not text.strip():
            raise PermanentDeliveryError("a reply needs payload.comment_id and payload.text")
        reply = await self._request(
            "POST", f"/{comment_id}/comments", token, page_id, mutating=True, data={"message": text}
        )
        self._raise_for(reply, page_id, command)
        reply_id = str((reply.body or {}).get("id", ""))
        if not reply_id:
            raise TransientDeliveryError("Graph API answered without a comment id")
        return Effect(
            Outcome.DELIVERED,
            reply_id,
            {**reply_detail(command), "usage_pct": usage_percent(reply.headers, page_id)},
        )

    async def _find_reply(self, page_id: str, token: str, command: Command) -> str | None:
        """After an unknown outcome: the page's reply with this exact text under the comment."""
        comment_id, text = (
            str(command.payload.get("comment_id") or ""),
            str(command.payload.get("text") or ""),
        )
        reply = await self._request(
            "GET",
            f"/{comment_id}/comments",
            token,
            page_id,
            mutating=False,
            params={"limit": str(RECONCILE_FEED_LIMIT), "fields": "id,message,from"},
        )
        self._raise_for(reply, page_id, command)
        for comment in (reply.body or {}).get("data", []):
            if str((comment.get("from") or {}).get("id", "")) == page_id and comment.get("message") == text:
                return str(comment["id"])
        return None

    # -- helpers ------------------------------------------------------------------------------

    def _page(self, command: Command) -> tuple[str, str]:
        target = self.targets(command.target)
        if target is None or not target.config.get("page_id"):
            raise PermanentDeliveryError(f"unknown fanpage target {command.target}")
        page_id = str(target.config["page_id"])
        token = self.tokens.get(page_id)
        if not token:
            raise TargetPaused(
                f"no page token configured for page {page_id}",
                self.pause_on_token_s,
                code="no-token",
                alert=True,
            )
        return page_id, token

    @staticmethod
    def _message(command: Command) -> str:
        text = str(command.payload.get("message", "")).strip()
        return f"{text}\n\nMã tin: {article_marker(command.key.uri)}"

    async def _request(
        self,
        method: str,
        path: str,
        token: str,
        page_id: str,
        *,
        mutating: bool,
        data: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        assert self._session is not None, "start() first"
        # The page token travels in the Authorization header, never in a URL (query strings end up
        # in proxy and access logs) nor in a form body. The proof is an HMAC of the token under the
        # app secret: it proves the caller holds the secret and is no use without the token.
        headers = {"Authorization": f"Bearer {token}"}
        proof: dict[str, str] = {}
        secret = self.app_secret.get("app_secret") if self.app_secret else None
        if secret:
            proof["appsecret_proof"] = hmac.new(secret.encode(), token.encode(), hashlib.sha256).hexdigest()
        if method == "GET":
            return await call(
                self._session,
                method,
                self.base + path,
                mutating=False,
                timeout_s=self.timeout_s,
                params={**(params or {}), **proof},
                headers=headers,
            )
        return await call(
            self._session,
            method,
            self.base + path,
            mutating=mutating,
            timeout_s=self.timeout_s,
            data={**(data or {}), **proof},
            headers=headers,
        )

    async def _find(self, page_id: str, token: str, marker: str) -> str | None:
        reply = await self._request(
            "GET",
            f"/{page_id}/feed",
            token,
            page_id,
            mutating=False,
            params={"limit": str(RECONCILE_FEED_LIMIT), "fields": "id,message"},
        )
        self._raise_for(reply, page_id, None)
        for post in (reply.body or {}).get("data", []):
            if marker in str(post.get("message", "")):
                return str(post["id"])
        return None

    def _scrub(self, text: str, page_id: str) -> str:
        """The platform's words without the page's token, should it ever quote it back: what comes
        out of here lands in exceptions, receipts, dead letters and logs."""
        token = self.tokens.get(page_id)
        return text.replace(token, "[token]") if token else text

    @staticmethod
    def _error(reply: Reply) -> tuple[int, int]:
        if reply.status < 400 or not isinstance(reply.body, dict) or "error" not in reply.body:
            return (0, 0)
        err = reply.body["error"]
        return int(err.get("code") or 0), int(err.get("error_subcode") or 0)

    def _raise_for(self, reply: Reply, page_id: str, command: Command | None) -> None:
        if reply.status < 400:
            return
        code, subcode = self._error(reply)
        err = reply.body.get("error", {}) if isinstance(reply.body, dict) else {}
        what = (
            f"Graph error {code}/{subcode}: {self._scrub(str(err.get('message', reply.body)), page_id)[:200]}"
        )
        if code in TOKEN_CODES:
            raise TargetPaused(
                f"page token expired or revoked ({what})", self.pause_on_token_s, code=str(code), alert=True
            )
        if code in RATE_CODES:
            wait = regain_seconds(reply.headers, page_id) or 60.0
            raise TargetPaused(f"rate limited ({what})", wait, code=str(code))
        if code == 368:
            raise TargetPaused(
                f"page temporarily blocked for policy ({what})", self.pause_on_token_s, code="368", alert=True
            )
        if code in TRANSIENT_CODES or reply.status >= 500:
            raise TransientDeliveryError(what, code=str(code))
        if code in PERMISSION_CODES:
            raise PermanentDeliveryError(f"permission missing ({what})", code=str(code), alert=True)
        raise PermanentDeliveryError(what, code=str(code))
