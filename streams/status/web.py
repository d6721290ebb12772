"""The status view of the stream worker: a follower of the receipts and command topics feeding the
status fold (streams/status/model.py, behind the lock of streams/status/view.py), and a small
HTTP server over it.

    GET /healthz                      {"ok", "caught_up", "articles", "skipped_records"}
    GET /articles?limit=N             the N articles updated most recently (no targets), newest first
    GET /alerts/approvals             the two-person rule's alerts: pending, approved or expired
    GET /alerts/feed.atom             the public Atom feed of the CAP alerts in force (no login)
    GET /alerts/{identifier}/cap.xml  the CAP XML of one of them, as received (no login)
    GET /articles/{uri}/status        one article (uri URL-encoded, '/' as %2F or as is);
                                      ?channel=CH and ?state=S narrow the target lists
                                      (the per-channel counts always cover every target)

and HTML pages for people (streams/status/pages.py): /status/{uri}, /status (and /articles when
the browser asks for text/html), /timeline/{zone}?date=YYYY-MM-DD.

Every JSON answer carries ``view``: ``caught_up`` is false until the follower has read what the
topics held when it started (a 404 before that may only mean "not read yet").

The follower reads every partition from the beginning with no consumer group (each worker holds
the whole view, so any worker answers for any article) and then follows, on the one consumer loop
(infra/kafka/loop.py, group-less). Records it cannot read are skipped, logged and counted; a
record the fold raises on unexpectedly goes through the loop's poison policy (retried, then a
dead letter); a Kafka error stops the worker (``on_crash``). It also feeds the emergency watch (lantoa_emergency_pending*, computed at scrape).

It runs in a thread with its own event loop, so nothing here can stall the worker's loop.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import orjson
from aiohttp import web
from aiokafka import TopicPartition

from infra.kafka.loop import Batch, ConsumerLoop, Handled, Subscription
from infra.kafka.outbox import Outbox, OutRecord
from schemas import metrics
from schemas.access import AccessList, Role
from schemas.codec import decode
from schemas.errors import InvalidContent
from schemas.settings import Settings
from schemas.text import identifier
from schemas.timeline import TimelineFetcher
from schemas.topics import Channel, Topic
from streams.status.model import STATES
from streams.status.pages import IDENTITY, StatusPages, for_reader, for_reader_approval, prefers_html
from streams.status.view import StatusView

log = logging.getLogger(__name__)

METADATA_REFRESH_S = 30.0


class StatusFollower:
    """Reads receipts, channel commands and emergency records from the beginning, then follows."""

    def __init__(self, settings: Settings, view: StatusView) -> None:
        self.settings, self.view = settings, view
        self.kinds: dict[str, str] = {
            settings.topic(Topic.RECEIPTS): "receipt",
            settings.topic(Topic.EMERGENCY_COMMANDS): "emergency",
            settings.topic(Topic.ALERTS_PENDING): "pending",
        }
        for channel in Channel:
            self.kinds[settings.topic(Topic.commands(channel))] = "command"
        self.kinds[settings.topic(Topic.commands(Channel.ARCHIVE))] = "archive"
        self.subscription = Subscription(
            "status",
            tuple(self.kinds),
            None,
            max_records=5000,
            poll_timeout_ms=500,
            batch_at_once=True,
            metadata_refresh_s=METADATA_REFRESH_S,
        )
        # Dead letters only: a record the fold keeps failing on (the loop's poison policy).
        self.outbox = Outbox(settings.kafka, f"{settings.client_id}-status")
        self.loop = ConsumerLoop(settings, self, self.outbox, on_caught_up=self.caught_up)

    # -- the Process of the consumer loop (infra/kafka/loop.py), group-less ---------------------

    views: tuple[()] = ()

    async def assigned(self, assigned: set[TopicPartition]) -> None:
        """New partitions: the loop reads every partition again from the beginning (the fold is
        idempotent)."""

    def revoked(self, revoked: set[TopicPartition]) -> None:
        """Group-less: nothing is ever revoked."""

    async def tick(self) -> list[OutRecord]:
        return []

    async def handle(self, batch: Batch) -> Handled:
        self._apply(batch)
        return Handled()

    def caught_up(self) -> None:
        self.view.caught_up = True
        log.info("status view caught up: %d articles", len(self.view.fold))

    async def run(self, stop: asyncio.Event) -> None:
        await self.outbox.start()
        try:
            await self.loop.run(stop)
        finally:
            await self.outbox.stop()

    def _apply(self, batch: Batch) -> None:
        with self.view.lock:
            fold = self.view.fold
            for tp, records in batch.items():
                kind = self.kinds[tp.topic]
                for rec in records:
                    try:
                        if kind == "pending":
                            key = (rec.key or b"").decode("utf-8", "replace")
                            self.view.note_approval(key, None if rec.value is None else decode(rec.value))
                            continue
                        raw = decode(rec.value)
                        if not isinstance(raw, dict):
                            raise InvalidContent("not a JSON object")
                        if kind == "receipt":
                            fold.add_receipt(raw)
                        elif kind == "command":
                            fold.add_command(raw)
                        elif kind == "archive":
                            fold.add_command(raw)
                            self.view.note_archive(raw)
                        else:
                            fold.add_emergency(raw)
                    # The view folds topics any client may write to and commits nothing: a record of
                    # the wrong shape (a field of the wrong type, a number where a mapping belongs)
                    # is counted in ``skipped`` and logged, and the other records are still folded.
                    # Dying on it would take the stream worker down and bring it back to the same
                    # record (issue 12). Anything else (a bug in the fold) still stops the view.
                    except (InvalidContent, KeyError, TypeError, ValueError, OverflowError) as exc:
                        self.view.skipped += 1
                        log.warning(
                            "status view skips %s[%s]@%s: %s", tp.topic, tp.partition, rec.offset, exc
                        )
            fold.evict()


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", charset="utf-8"
    )


OPEN_PATHS = frozenset({"/healthz", "/alerts/feed.atom"})


def _open(path: str) -> bool:
    """Paths anyone may read: health, and the public alert feed with its CAP documents (public
    warnings, meant for alert hubs that hold no token)."""
    return path in OPEN_PATHS or (path.startswith("/alerts/") and path.endswith("/cap.xml"))


CHALLENGE = 'Basic realm="Lantoa status", charset="UTF-8"'


def access_middleware(access: AccessList | None, insecure: bool) -> Any:
    """Every path but /healthz needs an identity with the viewer role (editor and ops include it):
    401 with a Basic challenge (a browser asks for the name and the token) otherwise."""

    @web.middleware
    async def check(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if insecure or _open(request.path):
            return await handler(request)
        ident = access.authenticate(request.headers.get("Authorization")) if access else None
        if ident is None or not ident.has(Role.VIEWER):
            reason = (
                "the status web has no identities: add them with `lantoa access add NAME --role editor` "
                "(LANTOA_ACCESS_FILE)"
                if access is None or not access.with_role(Role.VIEWER)
                else "unauthorised: a viewer, editor or ops token is required"
            )
            status = 401 if ident is None else 403
            resp = _json({"error": reason}, status)
            if status == 401:
                resp.headers["WWW-Authenticate"] = CHALLENGE
            return resp
        request[IDENTITY] = ident
        return await handler(request)

    return check


def make_app(
    view: StatusView,
    timeline: TimelineFetcher | None = None,
    access: AccessList | None = None,
    *,
    insecure: bool = False,
) -> web.Application:
    """The aiohttp application over a view (tests may build one over a hand-fed view); the
    timeline page reads the loudspeaker platform through ``timeline`` (none: it answers 503).
    Behind ``access`` (identities with viewer/editor/ops roles); ``insecure``: open to all."""
    pages = StatusPages(view, timeline)

    async def healthz(request: web.Request) -> web.Response:
        with view.lock:
            n = len(view.fold)
        return _json({"ok": True, "articles": n, "skipped_records": view.skipped, **view.meta()})

    async def articles(request: web.Request) -> web.Response:
        if prefers_html(request):
            return await pages.index(request)
        try:
            limit = max(1, min(500, int(request.query.get("limit", "50"))))
        except ValueError:
            return _json({"error": "limit must be an integer"}, 400)
        with view.lock:
            recent = view.fold.recent(limit)
        resp = _json({"articles": recent, "view": view.meta()})
        resp.headers["Vary"] = "Accept"
        return resp

    async def status(request: web.Request) -> web.Response:
        uri = identifier(unquote(request.match_info["uri"]))  # NFC: an NFD link names the same article
        channel = request.query.get("channel") or None
        state = request.query.get("state") or None
        if state is not None and state not in STATES:
            return _json({"error": f"state must be one of {', '.join(STATES)}"}, 400)
        with view.lock:
            found = view.fold.article(uri, channel=channel, state=state)
        if found is None:
            why = (
                "unknown article" if view.caught_up else "unknown article (the status view is still reading)"
            )
            return _json({"error": why, "uri": uri, "view": view.meta()}, 404)
        return _json({**for_reader(request, found), "view": view.meta()})

    async def approvals(request: web.Request) -> web.Response:
        if prefers_html(request):
            return await pages.index(request)
        with view.lock:
            listed = view.approval_list()
        return _json({"alerts": [for_reader_approval(request, a) for a in listed], "view": view.meta()})

    async def feed(request: web.Request) -> web.Response:
        with view.lock:
            body = view.feed_atom()
        resp = web.Response(body=body, content_type="application/atom+xml", charset="utf-8")
        resp.headers["Cache-Control"] = "public, max-age=30"
        return resp

    async def cap_xml(request: web.Request) -> web.Response:
        ident = identifier(unquote(request.match_info["identifier"]))
        with view.lock:
            body = view.cap_xml(ident)
        if body is None:
            return _json({"error": "no alert in force with this identifier", "identifier": ident[:256]}, 404)
        resp = web.Response(body=body, content_type="application/cap+xml", charset="utf-8")
        resp.headers["Cache-Control"] = "public, max-age=30"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    app = web.Application(middlewares=[access_middleware(access, insecure)])
    app.router.add_get("/alerts/feed.atom", feed)
    app.router.add_get("/alerts/{identifier}/cap.xml", cap_xml)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/articles", articles)
    app.router.add_get("/alerts/approvals", approvals)
    app.router.add_get("/articles/{uri:.+}/status", status)
    pages.add_routes(app.router)
    return app


class StatusService:
    """The follower and (with ``serve_http``) the HTTP server, in a thread of their own.

    ``start`` returns once the server listens (or raises why it could not). ``on_crash`` gets any
    unexpected error of the thread; the stream worker passes one that exits the process.
    ``timeline`` reads a zone's day for the timeline page (the bootstrap hands in the loudspeaker
    platform's reader; without one the page says it is not available).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        serve_http: bool,
        on_crash: Callable[[BaseException], None],
        view: StatusView | None = None,
        timeline: TimelineFetcher | None = None,
        access: AccessList | None = None,
    ) -> None:
        self.settings, self.serve_http, self.on_crash = settings, serve_http, on_crash
        self.access = access
        self.timeline = timeline
        self.view = view or StatusView()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 30.0) -> None:
        metrics.EMERGENCY_PENDING.source("status", lambda: self.view.emergency_samples(0))
        metrics.EMERGENCY_PENDING_AGE.source("status", lambda: self.view.emergency_samples(1))
        self._thread = threading.Thread(target=self._run, name="lantoa-status", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError("status view did not start")
        if self._error is not None:
            raise self._error

    def stop(self, timeout_s: float = 10.0) -> None:
        metrics.EMERGENCY_PENDING.remove("status")
        metrics.EMERGENCY_PENDING_AGE.remove("status")
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:
            if not self._ready.is_set():
                self._error = exc
                self._ready.set()
            else:
                self.on_crash(exc)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner: web.AppRunner | None = None
        if self.serve_http:
            insecure = self.settings.status_insecure_no_auth
            if insecure:
                log.warning(
                    "status web WITHOUT authentication (LANTOA_STATUS_INSECURE_NO_AUTH): every page is open on %s:%s",
                    self.settings.web_host,
                    self.settings.web_port,
                )
            elif self.access is None or not self.access.with_role(Role.VIEWER):
                log.warning(
                    "status web: no identity with the viewer, editor or ops role in LANTOA_ACCESS_FILE: "
                    "every page answers 401 (lantoa access add NAME --role editor)"
                )
            app = make_app(self.view, self.timeline, self.access, insecure=insecure)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, self.settings.web_host, self.settings.web_port).start()
            log.info("status view on http://%s:%s/", self.settings.web_host, self.settings.web_port)
        self._ready.set()
        try:
            await StatusFollower(self.settings, self.view).run(self._stop)
        finally:
            if runner is not None:
                await runner.cleanup()
