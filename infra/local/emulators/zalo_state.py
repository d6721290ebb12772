"""The Zalo emulator's OA: its groups, followers, token pairs, quota and rate limit, and the
messages it sent (see ``zalo`` for the API that serves them)."""

from __future__ import annotations

import collections
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar

from aiohttp import web

from infra.local.emulators.common import EmulatorBase
from infra.local.emulators.zalo_model import (
    GROUP_STATUSES,
    AccessToken,
    OAuthError,
    RefreshToken,
    ZaloError,
    ZaloMessage,
)

__all__ = ["ZaloState"]


class ZaloState(EmulatorBase):
    """One OA of one app: its groups (``{group_id: "active" | "disabled" | "not_member"}``),
    followers, token pair, quota and rate limit."""

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
        self._initial_groups = dict(groups) if isinstance(groups, Mapping) else {g: "active" for g in groups}
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
        # What the OA's per-second limit saw: calls refused with -32, and the most calls let
        # through in any sliding second (tests of pacing across adapter processes read them).
        self.rate_limited = 0
        self.peak_calls_per_s = 0
        self._refreshes: list[dict[str, Any]] = []
        access, refresh = self._initial_tokens
        self._access: dict[str, AccessToken] = {
            access: AccessToken(access, now, now + self.access_token_lifetime_s)
        }
        self._refresh: dict[str, RefreshToken] = {
            refresh: RefreshToken(refresh, now, now + self.refresh_token_lifetime_s)
        }
        self._current = (access, refresh)

    def reset(self) -> None:
        super().reset()
        self._init_state()

    # ----- in-process API --------------------------------------------------------------------

    def messages(self, recipient: str | None = None, *, kind: str | None = None) -> list[ZaloMessage]:
        """Every message sent, in order, optionally to one group/user or of one kind."""
        return [
            m
            for m in self._messages
            if (recipient is None or m.recipient == recipient) and (kind is None or m.kind == kind)
        ]

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
        return {
            "total": self.quota_limit,
            "used": used,
            "remain": max(0, self.quota_limit - used),
            "window_start": int(start * 1000),
            "reset_at": int((start + self.quota_window_s) * 1000),
        }

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
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": str(int(self.access_token_lifetime_s)),
        }

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
            self.rate_limited += 1
            raise ZaloError(-32)
        self._calls.append(now)
        self.peak_calls_per_s = max(self.peak_calls_per_s, len(self._calls))

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

    def _record(
        self,
        kind: str,
        recipient: str,
        text: str | None,
        attachment: dict[str, Any] | None,
        token: AccessToken,
    ) -> ZaloMessage:
        message = ZaloMessage(
            seq=self.next_seq(),
            time=self.clock(),
            message_id=f"{self.rng.getrandbits(128):032x}",
            kind=kind,
            recipient=recipient,
            text=text,
            attachment=attachment,
            access_token=token.token,
        )
        self._messages.append(message)
        return message

    def _refresh_tokens(self, secret_key: str | None, form: Mapping[str, str]) -> dict[str, str]:
        if form.get("app_id") != self.app_id:
            raise OAuthError(-14001, "Invalid app_id", "app_id is missing or unknown")  # [guess]
        if secret_key != self.secret_key:
            raise OAuthError(
                -14002, "Invalid secret_key", "the secret_key header does not match the app"
            )  # [guess]
        if form.get("grant_type") != "refresh_token":
            raise OAuthError(-14003, "Invalid grant_type", "grant_type must be refresh_token")  # [guess]
        now = self.clock()
        rt = self._refresh.get(form.get("refresh_token", ""))
        if rt is None or rt.used_at is not None or now >= rt.expires_at:
            raise OAuthError(
                -14020,
                "Invalid refresh token",
                "The refresh token is invalid, expired or has already been used",
            )
        rt.used_at = now
        pair = self._issue_pair(now)
        self._refreshes.append(
            {
                "seq": self.next_seq(),
                "time": now,
                "used_refresh_token": rt.token,
                "access_token": pair["access_token"],
                "refresh_token": pair["refresh_token"],
            }
        )
        return pair
