"""What the Zalo emulator's OA holds and the rules it keeps: its settings, groups, followers, token
pairs (and their refresh), quota and rate limit, and the messages it sent. No HTTP here: ``zalo``
serves this state, ``zalo_webhooks`` signs citizens' messages with its app and OA."""

from __future__ import annotations

import collections
import math
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from infra.local.emulators.zalo_model import (
    GROUP_STATUSES,
    AccessToken,
    OAuthError,
    RefreshToken,
    ZaloError,
    ZaloMessage,
)

__all__ = ["ZaloState"]


class ZaloState:
    """One OA of one app: its groups (``{group_id: "active" | "disabled" | "not_member"}``),
    followers, token pair, quota and rate limit, and every message and refresh.

    The settings (``app_id`` ... ``text_limit``) are plain attributes, changed in place by the
    emulator's config API; ``clock``, ``rng`` and ``next_seq`` are the emulator's, so messages,
    refreshes and the emulator's other records share one clock, one seed and one sequence.
    ``reset()`` forgets every effect and goes back to the constructor's groups, followers and
    tokens (the settings are the emulator's to restore)."""

    def __init__(
        self,
        *,
        app_id: str,
        secret_key: str,
        oa_id: str,
        groups: Mapping[str, str] | Iterable[str],
        followers: Iterable[str],
        access_token: str,
        refresh_token: str,
        access_token_lifetime_s: float,
        refresh_token_lifetime_s: float,
        refresh_grace_s: float,
        expired_error: int,
        expiry_http_status: int,
        unknown_group_error: int,
        quota_limit: int,
        quota_window_s: float,
        quota_tz_offset_s: float,
        rate_limit_per_s: int,
        text_limit: int,
        clock: Callable[[], float],
        rng: random.Random,
        next_seq: Callable[[], int],
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
        self.clock = clock
        self.rng = rng
        self.next_seq = next_seq
        self._initial_groups = dict(groups) if isinstance(groups, Mapping) else {g: "active" for g in groups}
        for status in self._initial_groups.values():
            if status not in GROUP_STATUSES:
                raise ValueError(f"group status {status!r} not in {sorted(GROUP_STATUSES)}")
        self._initial_followers = set(followers)
        self._initial_tokens = (access_token, refresh_token)
        self.reset()

    def reset(self) -> None:
        """Back to the constructor's groups, followers and token pair; no message, call or refresh."""
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

    # ----- messages --------------------------------------------------------------------------

    def messages(self, recipient: str | None = None, *, kind: str | None = None) -> list[ZaloMessage]:
        """Every message sent, in order, optionally to one group/user or of one kind."""
        return [
            m
            for m in self._messages
            if (recipient is None or m.recipient == recipient) and (kind is None or m.kind == kind)
        ]

    def record(
        self,
        kind: str,
        recipient: str,
        text: str | None,
        attachment: dict[str, Any] | None,
        token: AccessToken,
    ) -> ZaloMessage:
        """Keep a message the OA just sent with ``token`` (checks and quota are the caller's)."""
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

    # ----- groups and followers --------------------------------------------------------------

    def set_group(self, group_id: str, status: str = "active") -> None:
        if status not in GROUP_STATUSES:
            raise ValueError(f"group status {status!r} not in {sorted(GROUP_STATUSES)}")
        self._groups[group_id] = status

    def group_status(self, group_id: str) -> str | None:
        """``active``, ``disabled`` or ``not_member``; None for a group the OA does not know."""
        return self._groups.get(group_id)

    def groups(self) -> dict[str, str]:
        """A copy of every group and its status."""
        return dict(self._groups)

    def set_follower(self, user_id: str, following: bool = True) -> None:
        if following:
            self._followers.add(user_id)
        else:
            self._followers.discard(user_id)

    def is_follower(self, user_id: str) -> bool:
        return user_id in self._followers

    def followers(self) -> list[str]:
        """Every follower, sorted."""
        return sorted(self._followers)

    # ----- quota and rate limit --------------------------------------------------------------

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

    def use_quota(self) -> None:
        """Count one message against the current window's quota; -211 when it is used up."""
        start = self._quota_window_start()
        used = self._quota_used.get(start, 0)
        if used >= self.quota_limit:
            raise ZaloError(-211)
        self._quota_used[start] = used + 1

    def count_call(self) -> None:
        """Count one API call against the per-second limit (monotonic wall clock); -32 over it."""
        now = time.monotonic()
        while self._calls and self._calls[0] <= now - 1.0:
            self._calls.popleft()
        if self.rate_limit_per_s > 0 and len(self._calls) >= self.rate_limit_per_s:
            self.rate_limited += 1
            raise ZaloError(-32)
        self._calls.append(now)
        self.peak_calls_per_s = max(self.peak_calls_per_s, len(self._calls))

    def local_hour(self) -> int:
        """The hour of the day at the OA (UTC + ``quota_tz_offset_s``)."""
        return int((self.clock() + self.quota_tz_offset_s) // 3600 % 24)

    def _quota_window_start(self) -> float:
        local = self.clock() + self.quota_tz_offset_s
        start = math.floor(local / self.quota_window_s) * self.quota_window_s
        return start - self.quota_tz_offset_s

    # ----- tokens ----------------------------------------------------------------------------

    @property
    def access_token(self) -> str:
        """The newest access token."""
        return self._current[0]

    @property
    def refresh_token(self) -> str:
        """The newest refresh token (it may already have been used)."""
        return self._current[1]

    @property
    def refresh_count(self) -> int:
        """Successful token refreshes so far."""
        return len(self._refreshes)

    def refreshes(self) -> list[dict[str, Any]]:
        return list(self._refreshes)

    def access_tokens(self) -> list[AccessToken]:
        """Every access token issued, oldest first."""
        return list(self._access.values())

    def refresh_tokens(self) -> list[RefreshToken]:
        """Every refresh token issued, oldest first."""
        return list(self._refresh.values())

    def has_access_token(self, token: str) -> bool:
        return token in self._access

    def authenticate(self, token: str) -> AccessToken:
        """The access token a request carries, if it is still good: -216 for an unknown one or
        one past its grace period, ``expired_error`` (HTTP ``expiry_http_status``) once expired."""
        now = self.clock()
        found = self._access.get(token)
        if found is None or (found.invalid_after is not None and now >= found.invalid_after):
            raise ZaloError(-216)
        if now >= found.expires_at:
            raise ZaloError(self.expired_error, http_status=self.expiry_http_status)
        return found

    def expire_access_token(self, token: str | None = None, *, at: float | None = None) -> None:
        """Make ``token`` (default: the newest access token) expire at ``at`` (default now)."""
        self._access[token or self.access_token].expires_at = self.clock() if at is None else at

    def expire_now(self, token: str) -> None:
        """An ``expire_token`` fault: ``token``, if it is an access token, is expired from now
        on (an earlier expiry stays)."""
        found = self._access.get(token)
        if found is not None:
            found.expires_at = min(found.expires_at, self.clock())

    def issue_tokens(self) -> dict[str, str]:
        """A fresh token pair, as when the OA admin authorises the app again; every older
        refresh token stops working and older access tokens follow after the grace period."""
        now = self.clock()
        for rt in self._refresh.values():
            if rt.used_at is None:
                rt.used_at = now
        return self._issue_pair(now)

    def refresh(self, secret_key: str | None, form: Mapping[str, str]) -> dict[str, str]:
        """The OAuth v4 refresh: check the app, its secret and the single-use refresh token in
        ``form``, then rotate the pair (``OAuthError`` otherwise)."""
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
