"""Zalo OA adapter (OA Open API v3): group messages, long texts in numbered parts, corrections.

Zalo messages cannot be edited or deleted: a newer version is sent as an update notice, a
retraction as a correction notice. Each part carries a short marker so that, after an unknown
outcome, the group's recent conversation is searched before anything is sent again; the parts
already sent are kept in the ledger (progress) so a retry resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar

import aiohttp

from consumers.delivery.base import Effect, Prior, article_marker, reply_detail
from consumers.delivery.errors import PermanentDeliveryError, TargetPaused, TransientDeliveryError
from consumers.delivery.http import Reply, call
from consumers.delivery.limiter import TargetLimiter
from consumers.zalo.tokens import TokenPair, TokenStore
from schemas import metrics
from schemas.models import Action, Command, Outcome, Target
from schemas.secrets import SecretFile, SecretFileError
from schemas.topics import Channel

log = logging.getLogger(__name__)

TEXT_LIMIT = 2000
# The stream worker refuses a Zalo text over 8,000 characters at fan-out (streams/articles/bounds.py): at
# most ten parts. A command that would take more came from somewhere else (a hand-made or replayed
# record; the runtime takes 1 MiB commands, ~500 messages) and is refused before its first part
# instead of flooding the group.
MAX_PARTS = 10
RECONCILE_DEPTH = 500  # recent group messages searched for our markers after an unknown outcome
REFRESH_TOKEN_LIFETIME_S = 90 * 86400.0  # Zalo: a refresh token is valid for 3 months
TOKEN_ERRORS = {-216, -220}
PERMANENT_ALERT = {-204, -205, -223, -224}
PERMANENT_RECIPIENT = {-213, -230, -232, -237, -403}
PERMANENT = {-201, -210}
VN = timezone(timedelta(hours=7))
_SENTENCE = re.compile(r"(?<=[.!?…])\s+|\n+")


def split_text(text: str, limit: int = TEXT_LIMIT, reserve: int = 0) -> list[str]:
    """Split on sentence boundaries into pieces of at most ``limit - reserve`` characters."""
    room = max(50, limit - reserve)
    text = text.strip()
    if len(text) <= room:
        return [text]
    pieces: list[str] = []
    current = ""
    for sentence in (s.strip() for s in _SENTENCE.split(text)):
        if not sentence:
            continue
        while len(sentence) > room:  # a sentence longer than a message: cut at a space
            cut = sentence.rfind(" ", 0, room)
            cut = cut if cut > room // 2 else room
            head, sentence = sentence[:cut].rstrip(), sentence[cut:].lstrip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        candidate = f"{current} {sentence}".strip() if current else sentence
        if len(candidate) <= room:
            current = candidate
        else:
            pieces.append(current)
            current = sentence
    if current:
        pieces.append(current)
    return pieces


def _title(command: Command) -> str:
    """What a later correction calls the message: the payload's title (an alert's headline), else
    the first line of its text (an article's headline)."""
    title = command.payload.get("title")
    if not isinstance(title, str) or not title.strip():
        title = str(command.payload.get("text", "")).split("\n", 1)[0]
    return title.strip()[:200]


def part_marker(uri: str, version: int, index: int, total: int) -> str:
    return f"[{article_marker(uri)} v{version} {index}/{total}]"


class ZaloAdapter:
    """Sends OA messages to Zalo groups (GMF) or followers."""

    channel: ClassVar[Channel] = Channel.ZALO
    # Zalo's limits (about 20 requests per sliding second, the daily quota) are per Official
    # Account, not per group: pauses apply to the OA as a whole (rate_scope), and every API call
    # (each part of a long text, each reconciliation page) waits its turn on the OA's pacer here,
    # a little under the limit: at most calls_per_window in window_s (16.4/s sustained), counted
    # from the times calls actually went out, so after a stalled loop the window lets a short
    # catch-up through (call_interval_s apart) and never more. The runtime's per-delivery spacing
    # is off (min_interval_s 0): one delivery may be several calls.
    min_interval_s: ClassVar[float] = 0.0
    call_interval_s: ClassVar[float] = 0.03
    calls_per_window: ClassVar[int] = 18
    window_s: ClassVar[float] = 1.1

    def __init__(
        self,
        api_url: str,
        oauth_url: str,
        app_id: str,
        secret: SecretFile,
        tokens: TokenStore,
        targets: Callable[[str], Target | None],
        *,
        timeout_s: float = 10.0,
        clock: Callable[[], float] = time.time,
        session: aiohttp.ClientSession | None = None,
        pace_clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.api, self.oauth = api_url.rstrip("/"), oauth_url.rstrip("/")
        self.app_id, self.secret, self.tokens, self.targets = app_id, secret, tokens, targets
        self.timeout_s, self.clock = timeout_s, clock
        self.pacer = TargetLimiter(
            clock=pace_clock,
            min_interval_s=self.call_interval_s,
            max_calls=self.calls_per_window,
            window_s=self.window_s,
        )
        self._sleep = sleep
        self._session = session
        self._own_session = session is None
        self.refreshes = 0

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        metrics.TOKEN_EXPIRY.source(f"zalo:{self.app_id}", self.token_expiry)

    async def close(self) -> None:
        metrics.TOKEN_EXPIRY.remove(f"zalo:{self.app_id}")
        if self._session is not None and self._own_session:
            await self._session.close()
        self._session = None

    def token_expiry(self) -> list[metrics.Sample]:
        """Seconds left of the access and refresh tokens in the token file (read at scrape time, so
        a refresh by another process shows at once). The refresh token's expiry is the file's
        ``refresh_expires_at`` when given, else when the pair was saved plus its 90-day lifetime."""
        try:
            raw = self.tokens.read()
            saved = float(raw.get("saved_at") or self.tokens.path.stat().st_mtime)
        except FileNotFoundError:
            return []
        except SecretFileError as exc:  # the adapter refuses it when it next needs a token
            log.warning("Zalo token expiry unknown: %s", exc)
            return []
        now = self.clock()
        refresh = float(raw.get("refresh_expires_at") or saved + REFRESH_TOKEN_LIFETIME_S)
        return [
            (("zalo", self.app_id, "access"), float(raw.get("expires_at", 0)) - now),
            (("zalo", self.app_id, "refresh"), refresh - now),
        ]

    def rate_scope(self, target: str) -> str:
        return f"zalo-oa:{self.app_id}"

    # -- effects ------------------------------------------------------------------------------

    def _parts(self, command: Command, prior: Prior) -> list[str]:
        if command.key.action is Action.RETRACT:
            title = str(prior.detail.get("title") or "").strip()
            reason = str(command.payload.get("reason") or "").strip()
            notice = str(command.payload.get("notice") or "").strip()[:100]
            if notice:  # a cancelled warning ("ĐÃ HỦY CẢNH BÁO «…»"), not a taken-back article
                body = notice + (f" «{title}»" if title else "") + "."
                if reason:
                    body += f" {reason.rstrip('.')}."
            else:
                body = "ĐÍNH CHÍNH: tin" + (f" «{title}»" if title else "") + " gửi trước đây đã được gỡ."
                if reason:
                    body += f" Lý do: {reason}."
            texts = [body]
        else:
            text = str(command.payload.get("text", "")).strip()
            if command.key.action is Action.UPDATE or prior.version:
                text = "[Cập nhật] " + text
            texts = split_text(text, TEXT_LIMIT, reserve=48)
            if len(texts) > MAX_PARTS:
                raise PermanentDeliveryError(
                    f"text of {len(text):,} characters would be {len(texts)} messages, "
                    f"more than the {MAX_PARTS} a group gets for one article"
                )
        total = len(texts)
        out = []
        for i, t in enumerate(texts, start=1):
            prefix = f"({i}/{total}) " if total > 1 else ""
            out.append(f"{prefix}{t}\n{part_marker(command.key.uri, command.key.version, i, total)}")
        return out

    async def deliver(self, command: Command, prior: Prior) -> Effect:
        if command.key.action is Action.REPLY:
            return await self._reply(command)
        recipient, path = self._recipient(command)
        if command.key.action is Action.RETRACT and (not prior.version or prior.retracted):
            # Never sent, or taken back already (a Cancel after an Update that withdrew it here):
            # a correction would tell the group about a message it never had.
            why = "already taken back in this group" if prior.version else "nothing was sent to this group"
            return Effect(Outcome.SKIPPED, None, {"reason": why})
        parts = self._parts(command, prior)
        sent: dict[str, str] = dict(prior.progress.get("sent", {}))
        for index, text in enumerate(parts, start=1):
            if str(index) in sent:
                continue  # sent before a retry or a restart: never twice
            body = {"recipient": recipient, "message": {"text": text}}
            data = await self._post(path, body, command.target)
            sent[str(index)] = str((data or {}).get("message_id", ""))
            prior.progress["sent"] = sent
            if prior.save_progress is not None and index < len(parts):
                await prior.save_progress(dict(prior.progress))
        first = sent.get("1")
        outcome = (
            Outcome.DELETED
            if command.key.action is Action.RETRACT
            else (Outcome.UPDATED if prior.version else Outcome.DELIVERED)
        )
        title = _title(command)
        return Effect(
            outcome,
            first,
            {
                "message_ids": [sent[str(i)] for i in range(1, len(parts) + 1)],
                "parts": len(parts),
                "title": title or prior.detail.get("title"),
            },
        )

    async def reconcile(self, command: Command, prior: Prior) -> Effect | None:
        if command.key.action is Action.REPLY:
            return await self._find_reply(command)
        recipient, _ = self._recipient(command)
        group_id = recipient.get("group_id")
        if not group_id:
            raise TransientDeliveryError("cannot look up messages to a follower; retry later")
        parts = self._parts(command, prior)
        found: dict[str, str] = dict(prior.progress.get("sent", {}))
        markers = {
            str(i): part_marker(command.key.uri, command.key.version, i, len(parts))
            for i in range(1, len(parts) + 1)
        }
        for offset in range(0, RECONCILE_DEPTH, 50):
            page = await self._get(
                "/v3.0/oa/group/conversation",
                {"group_id": group_id, "offset": str(offset), "count": "50"},
                command.target,
            )
            recent = page if isinstance(page, list) else []
            for msg in recent:
                text = str(msg.get("message") or msg.get("text") or "")
                for index, marker in markers.items():
                    if index not in found and marker in text:
                        found[index] = str(msg.get("message_id") or msg.get("msg_id") or "")
            if len(found) == len(parts) or len(recent) < 50:
                break
        prior.progress["sent"] = found
        if len(found) == len(parts):
            outcome = (
                Outcome.DELETED
                if command.key.action is Action.RETRACT
                else (Outcome.UPDATED if prior.version else Outcome.DELIVERED)
            )
            return Effect(
                outcome,
                found.get("1"),
                {
                    "message_ids": [found[str(i)] for i in range(1, len(parts) + 1)],
                    "parts": len(parts),
                    "reconciled": True,
                    "title": _title(command),
                },
            )
        return None  # the missing parts are sent by deliver; the found ones are skipped

    # -- replies to citizens (engagement, issue 8) ---------------------------------------------

    @staticmethod
    def _reply_recipient(command: Command) -> tuple[dict[str, str], str]:
        group_id, user_id = command.payload.get("group_id"), command.payload.get("user_id")
        if group_id:
            return {"group_id": str(group_id)}, "/v3.0/oa/group/message"
        if user_id:
            return {"user_id": str(user_id)}, "/v3.0/oa/message/cs"
        raise PermanentDeliveryError("a reply needs payload.group_id or payload.user_id")

    async def _reply(self, command: Command) -> Effect:
        """An editor's answer: one message (already quoting the question) to the group or the user."""
        recipient, path = self._reply_recipient(command)
        text = str(command.payload.get("text") or "")
        if not text.strip() or len(text) > TEXT_LIMIT:
            raise PermanentDeliveryError(
                f"a reply is one message of 1 to {TEXT_LIMIT} characters, not {len(text)}"
            )
        data = await self._post(path, {"recipient": recipient, "message": {"text": text}}, command.target)
        message_id = str((data or {}).get("message_id", ""))
        return Effect(Outcome.DELIVERED, message_id, {**reply_detail(command), "message_ids": [message_id]})

    async def _find_reply(self, command: Command) -> Effect | None:
        recipient, _ = self._reply_recipient(command)
        if "group_id" not in recipient:
            raise TransientDeliveryError("cannot look up messages to a follower; retry later")
        text = str(command.payload.get("text") or "")
        for offset in range(0, RECONCILE_DEPTH, 50):
            page = await self._get(
                "/v3.0/oa/group/conversation",
                {"group_id": recipient["group_id"], "offset": str(offset), "count": "50"},
                command.target,
            )
            recent = page if isinstance(page, list) else []
            for msg in recent:
                if str(msg.get("message") or msg.get("text") or "") == text:
                    found = str(msg.get("message_id") or msg.get("msg_id") or "")
                    return Effect(
                        Outcome.DELIVERED,
                        found,
                        {**reply_detail(command), "message_ids": [found], "reconciled": True},
                    )
            if len(recent) < 50:
                break
        return None

    # -- platform calls -----------------------------------------------------------------------

    def _recipient(self, command: Command) -> tuple[dict[str, str], str]:
        target = self.targets(command.target)
        if target is None:
            raise PermanentDeliveryError(f"unknown Zalo target {command.target}")
        if target.config.get("group_id"):
            return {"group_id": str(target.config["group_id"])}, "/v3.0/oa/group/message"
        if target.config.get("user_id"):
            return {"user_id": str(target.config["user_id"])}, "/v3.0/oa/message/cs"
        raise PermanentDeliveryError(f"Zalo target {command.target} has neither group_id nor user_id")

    async def _post(self, path: str, body: dict[str, Any], target: str) -> Any:
        return await self._with_token("POST", path, target, json=body)

    async def _get(self, path: str, params: dict[str, str], target: str) -> Any:
        return await self._with_token("GET", path, target, params=params)

    async def _with_token(self, method: str, path: str, target: str, **kwargs: Any) -> Any:
        assert self._session is not None, "start() first"
        token = await self.access_token()
        for attempt in (1, 2):
            await self.pacer.turn(self.rate_scope(target), self._sleep)
            reply = await call(
                self._session,
                method,
                self.api + path,
                mutating=method != "GET",
                timeout_s=self.timeout_s,
                headers={"access_token": token},
                **kwargs,
            )
            code = self._code(reply)
            if (code in TOKEN_ERRORS or reply.status == 401) and attempt == 1:
                token = await self.access_token(force=True, seen=token)  # refresh once, retry once
                continue
            self._raise_for(reply, code, target)
            return (reply.body or {}).get("data")
        raise AssertionError("unreachable")

    @staticmethod
    def _code(reply: Reply) -> int:
        if isinstance(reply.body, dict):
            try:
                return int(reply.body.get("error", 0) or 0)
            except (TypeError, ValueError):
                return -1
        return 0 if reply.status < 400 else -1

    def _raise_for(self, reply: Reply, code: int, target: str) -> None:
        if reply.status == 200 and code == 0:
            return
        message = (
            str(reply.body.get("message", "")) if isinstance(reply.body, dict) else str(reply.body)[:200]
        )
        what = f"Zalo error {code} (HTTP {reply.status}): {message[:200]}"
        if code in TOKEN_ERRORS or reply.status == 401:
            raise TargetPaused(
                f"access token refused after a refresh ({what})", 600, code=str(code), alert=True
            )
        if code == -32:
            raise TargetPaused(f"API call limit ({what})", 5.0, code="-32")
        if code == -211:
            raise TargetPaused(f"out of quota ({what})", self._next_quota_window(), code="-211")
        if code == -234:
            raise TargetPaused(
                f"not allowed between 22:00 and 06:00 ({what})", self._until_six(), code="-234"
            )
        if code in PERMANENT_ALERT:
            raise PermanentDeliveryError(what, code=str(code), alert=True)
        if code in PERMANENT_RECIPIENT or code in PERMANENT:
            raise PermanentDeliveryError(what, code=str(code))
        if reply.status >= 500 or code == -1 or code == 0:
            raise TransientDeliveryError(what, code=str(code))
        raise PermanentDeliveryError(what, code=str(code))

    def _next_quota_window(self) -> float:
        now = datetime.fromtimestamp(self.clock(), VN)
        tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return max(60.0, (tomorrow - now).total_seconds())

    def _until_six(self) -> float:
        now = datetime.fromtimestamp(self.clock(), VN)
        six = now.replace(hour=6, minute=0, second=0, microsecond=0)
        if six <= now:
            six += timedelta(days=1)
        return max(60.0, (six - now).total_seconds())

    # -- tokens -------------------------------------------------------------------------------

    async def access_token(self, force: bool = False, seen: str | None = None) -> str:
        """The current access token, refreshed first when near expiry (or refused: ``force``)."""
        current = self.tokens.load()
        if not force and current.expires_at - self.clock() > 300:
            return current.access_token
        async with await self.tokens.exclusive():
            current = self.tokens.load()
            if seen is not None and current.access_token != seen:
                return current.access_token  # another refresher won while we waited
            if not force and current.expires_at - self.clock() > 300:
                return current.access_token
            return (await self._refresh(current)).access_token

    async def _refresh(self, current: TokenPair) -> TokenPair:
        assert self._session is not None
        secret = self.secret.get("secret_key") or ""
        reply = await call(
            self._session,
            "POST",
            self.oauth + "/v4/oa/access_token",
            mutating=True,
            timeout_s=self.timeout_s,
            headers={"secret_key": secret},
            data={
                "refresh_token": current.refresh_token,
                "app_id": self.app_id,
                "grant_type": "refresh_token",
            },
        )
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status != 200 or "access_token" not in body:
            if current.expires_at > self.clock():
                log.error(
                    "Zalo token refresh refused (%s); using the current token until it expires",
                    body.get("error", reply.status),
                )
                return current
            raise TargetPaused(
                f"Zalo token refresh refused ({body.get('error', reply.status)}): re-authorise the OA",
                3600,
                code="refresh",
                alert=True,
            )
        pair = TokenPair(
            str(body["access_token"]),
            str(body["refresh_token"]),
            self.clock() + float(body.get("expires_in", "90000")),
        )
        self.tokens.save(pair)  # durable before first use: refresh tokens are single use
        self.refreshes += 1
        log.info("Zalo access token refreshed; valid for %ss", body.get("expires_in"))
        return pair
