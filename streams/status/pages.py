"""Status pages for people: server-side HTML over the status view and the loudspeaker platform.

    GET /status/{uri}                      one article: per channel a summary and its targets
                                           (?channel=CH&state=S narrow the lists, as the JSON API)
    GET /status, /articles (Accept: html)  the articles updated most recently (?limit=N)
    GET /timeline/{zone}?date=YYYY-MM-DD   one loudspeaker zone's day (default: today there)

For editors and on-call engineers, in Vietnamese, readable on a phone. No JavaScript at all: the
pages refresh themselves with ``<meta http-equiv="refresh">``, expanders are ``<details>``, and
the Content-Security-Policy allows nothing but the one inline stylesheet (by its hash) and GET
forms to this server, so a hostile title or reason that slipped past escaping still could not
run. The pages are Jinja2 templates (``streams/status/templates``) with autoescape on: every value
from the outside is escaped, in text and in attributes alike; no Python code builds HTML.

State is never colour alone: every badge carries its word, and ``data-state``/``data-target``
attributes carry the machine names (the browser tests read them).

The timeline's data comes from an injected ``TimelineFetcher`` (a fake in tests).
``PlatformTimeline`` is the real one: the zone's day schedule as the loudspeaker platform holds
it (what ``lantoa schedule`` prints) and the platform's emergencies that touch the zone that day.
The stream app itself never talks to a channel; only this page, on request, reads the platform.

This module is the HTTP side (content negotiation, the handlers); the pages are built in
``streams.status.layout`` (words, stylesheet, page frame, badges), ``streams.status.article`` (an
article, the recent articles) and ``streams.status.timeline`` (a zone's day), and
``consumers.loudspeaker.timeline`` holds ``PlatformTimeline`` (the worker's bootstrap hands it in). Each name is imported from its own module.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from schemas.access import Identity, Role
from schemas.text import identifier
from schemas.timeline import TimelineFetcher, TimelineUnavailable, UnknownZone
from streams.status.article import render_article, render_index
from streams.status.layout import HEADERS, STATUS_REFRESH_S, TIMELINE_REFRESH_S, render_message
from streams.status.model import STATES
from streams.status.timeline import render_timeline
from streams.status.view import StatusView

log = logging.getLogger(__name__)


# -- HTTP ---------------------------------------------------------------------------------------


def html_response(body: str, status: int = 200) -> web.Response:
    resp = web.Response(text=body, status=status, content_type="text/html", charset="utf-8", headers=HEADERS)
    resp.enable_compression()  # a national article lists 3,321 zones; tables shrink ~10x
    return resp


def prefers_html(request: web.Request) -> bool:
    """A browser asking for a page: ``?format=html``, or ``text/html`` named in Accept with a
    quality above JSON's. API clients (no Accept, ``*/*``, JSON) keep getting JSON."""
    fmt = request.query.get("format")
    if fmt in ("html", "json"):
        return fmt == "html"
    quality: dict[str, float] = {}
    for part in request.headers.get("Accept", "").split(","):
        kind, _, params = part.strip().partition(";")
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[kind.strip().lower()] = q
    html_q = quality.get("text/html", 0.0)
    json_q = quality.get("application/json", quality.get("application/*", quality.get("*/*", 0.0)))
    return html_q > 0 and html_q > json_q


# The identity the status web's access check proved (streams/status/web.py); absent in open mode.
IDENTITY = web.RequestKey("identity", Identity)


def for_reader(request: web.Request, article: dict[str, Any]) -> dict[str, Any]:
    """An article as this request's identity may see it: a viewer (not an editor or ops) is not
    shown who did each step. Open mode (no identity on the request): as it is."""
    ident = request.get(IDENTITY)
    if ident is None or ident.has(Role.EDITOR):
        return article
    events = [{k: v for k, v in ev.items() if k != "actor"} for ev in article.get("events") or []]
    return {**article, "events": events}


def for_reader_approval(request: web.Request, entry: dict[str, Any]) -> dict[str, Any]:
    """A pending alert as this request's identity may see it: names are for editors and ops."""
    ident = request.get(IDENTITY)
    if ident is None or ident.has(Role.EDITOR):
        return entry
    return {k: v for k, v in entry.items() if k not in ("submitted_by", "approved_by")}


class StatusPages:
    """The aiohttp handlers of the pages over a status view and (optionally) a timeline fetcher."""

    def __init__(self, view: StatusView, timeline: TimelineFetcher | None = None) -> None:
        self.view, self.timeline = view, timeline

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/status", self.index)
        router.add_get("/status/{uri:.+}", self.article)
        router.add_get("/timeline/{zone}", self.zone_day)

    async def index(self, request: web.Request) -> web.Response:
        try:
            limit = max(1, min(500, int(request.query.get("limit", "50"))))
        except ValueError:
            return html_response(render_message("Yêu cầu không hợp lệ", "limit phải là số nguyên."), 400)
        with self.view.lock:
            recent = self.view.fold.recent(limit)
            approvals = [for_reader_approval(request, a) for a in self.view.approval_list()]
        resp = html_response(
            await asyncio.to_thread(render_index, recent, self.view.meta(), approvals=approvals)
        )
        resp.headers["Vary"] = "Accept"  # /articles answers JSON or this page
        return resp

    async def article(self, request: web.Request) -> web.Response:
        uri = identifier(unquote(request.match_info["uri"]))  # NFC: an NFD link names the same article
        channel = request.query.get("channel") or None
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            return html_response(
                render_message("Yêu cầu không hợp lệ", f"state phải là một trong: {', '.join(STATES)}"), 400
            )
        with self.view.lock:
            found = self.view.fold.article(uri, state=state)
        if found is None:
            # Refreshing: an editor may open the page right after publishing, before routing.
            why = (
                "Chưa có thông tin nào về bài này."
                if self.view.caught_up
                else "Chưa có thông tin về bài này: máy chủ vẫn đang đọc lại dữ liệu, xin chờ."
            )
            return html_response(
                render_message("Không tìm thấy bài", why, refresh=STATUS_REFRESH_S, detail=uri), 404
            )
        found = for_reader(request, found)
        # A national article renders 3,321 rows (~0.15 s): off the loop that also follows Kafka.
        page = await asyncio.to_thread(render_article, found, self.view.meta(), channel=channel, state=state)
        return html_response(page)

    async def zone_day(self, request: web.Request) -> web.Response:
        zone = identifier(unquote(request.match_info["zone"]))
        raw = request.query.get("date")
        try:
            day = date.fromisoformat(raw) if raw else None
        except ValueError:
            return html_response(
                render_message("Yêu cầu không hợp lệ", "Ngày phải có dạng YYYY-MM-DD.", detail=raw), 400
            )
        if self.timeline is None:
            return html_response(
                render_message("Chưa cấu hình", "Máy chủ này không đọc được nền tảng loa."), 503
            )
        try:
            found = await self.timeline(zone, day)
        except UnknownZone as exc:
            return html_response(render_message("Không có vùng loa này", str(exc), detail=zone), 404)
        except TimelineUnavailable as exc:
            log.warning("timeline of %s: %s", zone, exc)
            return html_response(
                render_message(
                    "Không lấy được lịch phát",
                    "Nền tảng loa không trả lời được lúc này.",
                    refresh=TIMELINE_REFRESH_S,
                    detail=str(exc),
                ),
                502,
            )
        now = datetime.fromtimestamp(self.view.clock(), UTC)
        return html_response(render_timeline(found, now))
