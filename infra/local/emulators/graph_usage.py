"""The Graph emulator's usage accounting: the calls of the app and of each page over a sliding
window, the refusal of a call over a limit (code 4 for the app, ``page_throttle_code`` for a
page), and the ``X-App-Usage`` / ``X-Business-Use-Case-Usage`` headers every API reply carries
(see ``graph`` for the API that counts and answers)."""

from __future__ import annotations

import collections
import math
from typing import Any

import orjson

from infra.local.emulators.faults import Clock, Fault
from infra.local.emulators.graph_model import APP_LEVEL_CODES, GraphError, GraphSettings

__all__ = ["UsageMeter"]


class UsageMeter:
    """Calls counted against the limits of ``settings`` on ``clock``. A ``page_id`` given to
    ``count_call`` and ``headers`` is a page the emulator knows, or None (the call counts for
    the app only, and its reply has no page usage)."""

    def __init__(self, settings: GraphSettings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.reset()

    def reset(self) -> None:
        self._app_calls: collections.deque[float] = collections.deque()
        self._page_calls: dict[str, collections.deque[float]] = {}

    def count_call(self, page_id: str | None) -> None:
        """Count one call, or refuse it (``GraphError``) when the app or the page is at its limit."""
        app_calls = self._window(self._app_calls)
        if len(app_calls) >= self.settings.app_call_limit:
            raise GraphError(4)
        if page_id is not None:
            calls = self._window(self._page_calls.setdefault(page_id, collections.deque()))
            if len(calls) >= self.settings.page_call_limit:
                raise GraphError(self.settings.page_throttle_code)
            calls.append(self.clock())
        app_calls.append(self.clock())

    def usage(self, page_id: str | None = None) -> dict[str, Any]:
        """The values the usage headers would carry now."""
        app_pct = self._pct(len(self._window(self._app_calls)), self.settings.app_call_limit)
        out: dict[str, Any] = {
            "app": {"call_count": app_pct, "total_cputime": app_pct, "total_time": app_pct}
        }
        if page_id is not None:
            out["page"] = self.page_entry(page_id)
        return out

    def page_entry(self, page_id: str, *, floor_pct: int = 0, regain: int | None = None) -> dict[str, Any]:
        """A page's entry in ``X-Business-Use-Case-Usage``: percent of its limit (at least
        ``floor_pct``) and the minutes until the window frees a call (``regain`` if given)."""
        calls = self._window(self._page_calls.setdefault(page_id, collections.deque()))
        pct = max(self._pct(len(calls), self.settings.page_call_limit), floor_pct)
        return {
            "type": "pages",
            "call_count": pct,
            "total_cputime": pct,
            "total_time": pct,
            "estimated_time_to_regain_access": self._regain_minutes(calls, self.settings.page_call_limit)
            if regain is None
            else regain,
        }

    def headers(self, page_id: str | None, fault: Fault | None = None) -> dict[str, str]:
        """The usage headers of a reply; a rate-limit ``fault`` shows the app (codes 4, 17) or
        the page at 100 %, as the limit it stands for would."""
        app = self.usage()["app"]
        buc: dict[str, Any] = {}
        if fault is not None and fault.code in APP_LEVEL_CODES:
            app = {k: max(v, 100) for k, v in app.items()}
        if page_id is not None:
            if fault is not None and fault.code not in APP_LEVEL_CODES:
                regain = fault.regain_minutes if fault.regain_minutes is not None else 1
                buc[page_id] = [self.page_entry(page_id, floor_pct=100, regain=regain)]
            else:
                buc[page_id] = [self.page_entry(page_id)]
        return {
            "X-App-Usage": orjson.dumps(app).decode(),
            "X-Business-Use-Case-Usage": orjson.dumps(buc).decode(),
        }

    def _window(self, calls: collections.deque[float]) -> collections.deque[float]:
        horizon = self.clock() - self.settings.usage_window_s
        while calls and calls[0] <= horizon:
            calls.popleft()
        return calls

    @staticmethod
    def _pct(count: int, limit: int) -> int:
        return count * 100 // max(limit, 1)

    def _regain_minutes(self, calls: collections.deque[float], limit: int) -> int:
        if len(calls) < limit:
            return 0
        frees_at = calls[len(calls) - limit] + self.settings.usage_window_s
        return max(1, math.ceil((frees_at - self.clock()) / 60))
