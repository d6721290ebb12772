"""Webhook receivers: citizens' comments (Facebook Page) and messages (Zalo OA) → engagement.inbound.

``make_app(settings, producer, secrets)`` builds the aiohttp application; ``lantoa webhooks``
serves it (``serve``). Routes:

- ``GET  /webhooks/facebook``: the Graph subscription handshake: ``hub.mode=subscribe`` and
  ``hub.verify_token`` equal to ours → 200 with ``hub.challenge`` as the body, else 403.
- ``POST /webhooks/facebook``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw
  body)>`` compared in constant time over the raw bytes, before any parsing; bad or missing → 403
  and nothing produced; a header that is not ``sha256=`` and 64 hex digits (another algorithm,
  another length, bytes that are not UTF-8) → 401, never an error of ours. ``feed`` changes with ``item=comment`` are taken: verb ``add`` (a new
  comment), ``edited`` and ``remove`` (the citizen's own edit or deletion). Comments written by
  the page itself (``from.id`` = the page: our own replies, echoed back) and everything else
  (reactions, posts) are acknowledged and ignored.
- ``POST /webhooks/zalo``: ``X-ZEvent-Signature`` (optionally ``mac=``-prefixed) = hex SHA-256 of
  ``app_id + raw body + timestamp + OA secret key``, with our app id and the body's ``timestamp``
  (ms); bad, missing or malformed (not 64 hex digits, not UTF-8) → 401, a body for another app → 401, a timestamp outside the replay window
  (``replay_window_s``, 5 minutes either way) → 401: a captured request replayed later is refused.
  ``user_send_text`` (1:1 to the OA) and ``user_send_group_text`` are taken; the group is the
  body's ``group_id``, else ``recipient.id`` [guess: the contract does not show a group event],
  and a quoted message is ``message.quote_msg_id`` [guess]. Other events are ignored.
- ``GET /healthz``.

Every taken event is produced to ``engagement.inbound`` (schemas/json/engagement.v1.json) with key
``fb:<comment_id>`` / ``zalo:<msg_id>``, so all events about one comment keep their order and the
triage downstream dedupes on it too. Here, duplicates are dropped by the ids Kafka acknowledged
(an edit counts with a hash of its text), kept on disk under ``LANTOA_DATA_DIR/webhooks/`` for as
long as their event's time is accepted and no longer (producers/webhook_seen.py): a platform's
retry or a replay, before or after a restart, is answered 200 and produces nothing. A second
delivery of an id still being produced waits for the first.

Acknowledgement: the handler produces (acks=all) and answers once Kafka has acknowledged, within
a budget (``zalo_ack_budget_s`` 1.5 s, under Zalo's 2 s; ``graph_ack_budget_s`` 10 s). Measured
against the local single-node broker, 300 signed Zalo events one after another, request to
answer: p50 3.5 ms, p95 12 ms, p99 51 ms, the slowest 0.44 s (the first, on a topic just
created); lantoa_webhook_ack_seconds follows it in production. Past the budget the answer is
503, so the platform retries (the send goes on; if it lands, the retry is a duplicate). A 200 is
therefore only ever given for an event Kafka holds. Graph retries for hours; Zalo may not retry
at all, so a broker unavailable for more than the budget can lose a Zalo message: the count is in
lantoa_webhook_events_total{outcome="unavailable"} and the event is logged.

Graph deliveries carry no signed timestamp of their own, but the signed body gives each entry a
``time``: an entry older than ``graph_max_age_s`` (48 h: Facebook retries for up to 36 h), more
than ``replay_window_s`` in the future, or without a time at all is dropped (counted ``stale``),
so no entry is accepted for longer than the replay store remembers it; a replayed body within
that age is refused by the dedupe.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import orjson
from aiohttp import web

from infra.kafka.outbox import Outbox, OutRecord
from producers.webhook_seen import SeenEvents
from schemas import contracts, metrics
from schemas.codec import encode
from schemas.errors import InvalidContent
from schemas.secrets import read_secret_json
from schemas.settings import Settings
from schemas.times import checked_instant
from schemas.topics import Topic
from streams.engagement.triage import inbound_key, iso

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 256 * 1024
GRAPH_VERBS = {"add": "message", "edited": "edited", "remove": "removed"}
ZALO_EVENTS = {"user_send_text", "user_send_group_text"}


class EventSink(Protocol):
    """Where accepted events go. ``send`` returns once the record is durable (Kafka acks=all) and
    raises if it cannot be made durable."""

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...


class KafkaSink:
    """An EventSink on an aiokafka producer (idempotent, acks=all)."""

    def __init__(self, settings: Settings) -> None:

        self._outbox = Outbox(settings.kafka, f"{settings.client_id}-webhooks", linger_ms=0)

    async def start(self) -> None:
        await self._outbox.start()

    async def stop(self) -> None:
        await self._outbox.stop()

    async def send(self, topic: str, key: bytes, value: bytes) -> None:

        await self._outbox.send_all([OutRecord(topic, key, value)])


@dataclass(frozen=True)
class WebhookSecrets:
    """The platform secrets (never logged). A platform without its secret is refused (503)."""

    graph_app_secret: str | None = None
    graph_verify_token: str | None = None
    zalo_app_id: str | None = None
    zalo_oa_secret: str | None = None

    def __repr__(self) -> str:
        have = [n for n in ("graph_app_secret", "graph_verify_token", "zalo_oa_secret") if getattr(self, n)]
        return f"WebhookSecrets(zalo_app_id={self.zalo_app_id!r}, set={have})"

    @classmethod
    def from_files(cls, graph_file: Path | None, zalo_file: Path | None, zalo_app_id: str) -> WebhookSecrets:
        """Graph: JSON ``{"app_secret", "verify_token"}`` (the fanpage app secret file); Zalo: JSON
        ``{"oa_secret_key"}`` (the Zalo secret file; ``secret_key`` there is the app secret for
        token refresh, a different key)."""
        graph = read_secret_json(graph_file) if graph_file else {}
        zalo = read_secret_json(zalo_file) if zalo_file else {}
        return cls(
            graph.get("app_secret"), graph.get("verify_token"), zalo_app_id or None, zalo.get("oa_secret_key")
        )


@dataclass(frozen=True)
class ReceiverConfig:
    replay_window_s: float = 300.0
    graph_max_age_s: float = 48 * 3600.0
    zalo_ack_budget_s: float = 1.5
    graph_ack_budget_s: float = 10.0
    dedupe_size: int = 100_000


# What a signature header must look like before it is compared; anything else is malformed.
GRAPH_SIGNATURE_RE = re.compile(r"sha256=([0-9a-fA-F]{64})")
ZALO_SIGNATURE_RE = re.compile(r"(?:[mM][aA][cC]=)?([0-9a-fA-F]{64})")


def given_signature(header: str | None, pattern: re.Pattern[str]) -> str | None:
    """The hex digest a signature header carries, lower case; None when it is malformed. aiohttp
    hands bytes that are not UTF-8 over as surrogates: they never match, so they never reach an
    ``encode`` that would raise."""
    match = pattern.fullmatch(header.strip()) if header else None
    return match.group(1).lower() if match else None


def graph_signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def zalo_signature(app_id: str, body: bytes, timestamp: str, oa_secret: str) -> str:
    return hashlib.sha256(app_id.encode() + body + timestamp.encode() + oa_secret.encode()).hexdigest()


@dataclass(frozen=True)
class Inbound:
    """One event to produce: its dedupe id, its Kafka key and its record."""

    dedupe: str
    key: str
    record: dict[str, Any]
    expires_at: float  # when the platform's event stops being accepted: the dedupe keeps it until then


class Receiver:
    """The state behind the routes: secrets, dedupe, in-flight sends."""

    def __init__(
        self,
        settings: Settings,
        sink: EventSink,
        secrets: WebhookSecrets,
        config: ReceiverConfig,
        clock: Callable[[], float],
        seen: SeenEvents | None = None,
    ) -> None:
        self.topic = settings.topic(Topic.ENGAGEMENT_INBOUND)
        self.sink, self.secrets, self.config, self.clock = sink, secrets, config, clock
        self.seen = seen if seen is not None else SeenEvents(None, config.dedupe_size, clock)
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def now_iso(self) -> str:
        return iso(datetime.fromtimestamp(self.clock(), UTC))

    # -- producing ----------------------------------------------------------------------------

    async def _produce(self, item: Inbound) -> None:
        try:
            await self.sink.send(self.topic, item.key.encode(), encode(item.record))
        except Exception:
            log.exception("could not produce %s (the platform's retry will bring it again)", item.key)
            raise
        self.seen.add(item.dedupe, item.expires_at)

    def _settled(self, task: asyncio.Task[None]) -> None:
        for dedupe, running in list(self._inflight.items()):
            if running is task:
                del self._inflight[dedupe]
        if not task.cancelled():
            task.exception()  # logged in _produce; retrieved here so asyncio does not warn again

    async def accept(self, platform: str, items: list[Inbound], budget_s: float) -> web.Response:
        """Produce what is new; 200 once Kafka holds all of it, 503 if not within the budget."""
        waits: list[asyncio.Task[None]] = []
        fresh = dups = 0
        for item in items:
            if item.dedupe in self.seen:
                dups += 1
                continue
            task = self._inflight.get(item.dedupe)
            if task is None:
                try:
                    contracts.check("engagement", item.record)
                except InvalidContent as exc:  # a shape we did not expect: say so, keep going
                    log.error("%s event %s does not fit engagement.v1: %s", platform, item.key, exc.reason)
                    metrics.WEBHOOK_EVENTS.labels(platform, "ignored").inc()
                    continue
                task = asyncio.create_task(self._produce(item))
                self._inflight[item.dedupe] = task
                task.add_done_callback(self._settled)
                fresh += 1
            else:
                dups += 1
            waits.append(task)
        if dups:
            metrics.WEBHOOK_EVENTS.labels(platform, "duplicate").inc(dups)
        if waits:
            # On timeout the sends go on (asyncio.wait cancels nothing); one that lands later makes
            # the platform's retry a duplicate.
            done, pending = await asyncio.wait(waits, timeout=budget_s)
            failed = [t for t in done if t.cancelled() or t.exception() is not None]
            if pending or failed:
                metrics.WEBHOOK_EVENTS.labels(platform, "unavailable").inc(len(pending) + len(failed))
                return web.json_response({"ok": False, "error": "not stored yet, retry"}, status=503)
        if fresh:
            metrics.WEBHOOK_EVENTS.labels(platform, "accepted").inc(fresh)
        return web.json_response({"ok": True, "accepted": fresh, "duplicates": dups})

    # -- Graph --------------------------------------------------------------------------------

    async def graph_verify(self, request: web.Request) -> web.Response:
        q = request.query
        token = self.secrets.graph_verify_token
        given = q.get("hub.verify_token", "").encode("utf-8", "surrogateescape")  # never raises
        if token and q.get("hub.mode") == "subscribe" and hmac.compare_digest(given, token.encode()):
            return web.Response(text=q.get("hub.challenge", ""))
        return web.Response(status=403, text="verification failed")

    async def graph_post(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            return await self._graph_post(request)
        finally:
            metrics.WEBHOOK_ACK_SECONDS.labels("fanpage").observe(time.monotonic() - started)

    async def _graph_post(self, request: web.Request) -> web.Response:
        secret = self.secrets.graph_app_secret
        if not secret:
            return web.json_response({"error": "Graph webhooks are not configured"}, status=503)
        raw = await request.read()
        header = request.headers.get("X-Hub-Signature-256")
        given = given_signature(header, GRAPH_SIGNATURE_RE)
        if header and given is None:
            metrics.WEBHOOK_EVENTS.labels("fanpage", "forged").inc()
            log.warning("Graph webhook refused: malformed signature header")
            return web.json_response({"error": "malformed signature"}, status=401)
        if given is None or not hmac.compare_digest(
            given.encode(), graph_signature(secret, raw)[7:].encode()
        ):
            metrics.WEBHOOK_EVENTS.labels("fanpage", "forged").inc()
            log.warning("Graph webhook refused: %s signature", "bad" if given else "missing")
            return web.json_response({"error": "bad signature"}, status=403)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return web.json_response({"error": "not JSON"}, status=400)
        items = self.graph_items(body)
        return await self.accept("fanpage", items, self.config.graph_ack_budget_s)

    def graph_items(self, body: Any) -> list[Inbound]:
        if not isinstance(body, dict) or body.get("object") != "page":
            metrics.WEBHOOK_EVENTS.labels("fanpage", "ignored").inc()
            return []
        out: list[Inbound] = []
        now = self.clock()
        for entry in body.get("entry") or ():
            if not isinstance(entry, dict):
                continue
            page_id = str(entry.get("id") or "")
            at = _entry_time(entry.get("time"))
            if at is None or now - at > self.config.graph_max_age_s or at - now > self.config.replay_window_s:
                # Without a time an entry could be replayed forever; too old or from the future,
                # it would outlive what the replay store remembers.
                metrics.WEBHOOK_EVENTS.labels("fanpage", "stale").inc()
                log.warning(
                    "Graph webhook entry refused: time %r missing or outside the accepted age",
                    entry.get("time") if at is None else at,
                )
                continue
            for change in entry.get("changes") or ():
                item = self._graph_change(page_id, change, at + self.config.graph_max_age_s)
                if item is None:
                    metrics.WEBHOOK_EVENTS.labels("fanpage", "ignored").inc()
                else:
                    out.append(item)
        return out

    def _graph_change(self, page_id: str, change: Any, expires_at: float) -> Inbound | None:
        if not isinstance(change, dict) or change.get("field") != "feed":
            return None
        value = change.get("value")
        if not isinstance(value, dict) or value.get("item") != "comment":
            return None
        kind = GRAPH_VERBS.get(str(value.get("verb")))
        comment_id = str(value.get("comment_id") or "")
        sender = _obj(value.get("from"))
        if kind is None or not comment_id or (page_id and str(sender.get("id") or "") == page_id):
            return None  # other verbs (hide, ...), or the page's own comment: our reply echoed back
        text = str(value.get("message") or "")
        created = value.get("created_time")
        record: dict[str, Any] = {
            "schema_version": 1,
            "platform": "fanpage",
            "kind": kind,
            "event": f"feed.comment.{value.get('verb')}",
            "message_id": comment_id,
            "text": text,
            "post_id": value.get("post_id"),
            "page_id": page_id or None,
            "parent_id": value.get("parent_id"),
            "group_id": None,
            "sender_id": str(sender["id"]) if sender.get("id") else None,
            "sender_name": sender.get("name"),
            "created_at": _iso_time(created),
            "received_at": self.now_iso(),
        }
        dedupe = f"fb:{comment_id}:{kind}"
        if kind == "edited":
            dedupe += ":" + hashlib.sha256(text.encode()).hexdigest()[:12]
        return Inbound(dedupe, inbound_key("fanpage", comment_id), record, expires_at)

    # -- Zalo ---------------------------------------------------------------------------------

    async def zalo_post(self, request: web.Request) -> web.Response:
        started = time.monotonic()
        try:
            return await self._zalo_post(request)
        finally:
            metrics.WEBHOOK_ACK_SECONDS.labels("zalo").observe(time.monotonic() - started)

    async def _zalo_post(self, request: web.Request) -> web.Response:
        app_id, secret = self.secrets.zalo_app_id, self.secrets.zalo_oa_secret
        if not (app_id and secret):
            return web.json_response({"error": "Zalo webhooks are not configured"}, status=503)
        raw = await request.read()
        header = request.headers.get("X-ZEvent-Signature")
        given = given_signature(header, ZALO_SIGNATURE_RE)
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        timestamp = str(body.get("timestamp", "")) if isinstance(body, dict) else ""
        expected = zalo_signature(app_id, raw, timestamp, secret)
        if (
            given is None
            or not isinstance(body, dict)
            or str(body.get("app_id", "")) != app_id
            or not hmac.compare_digest(given.encode(), expected.encode())
        ):
            metrics.WEBHOOK_EVENTS.labels("zalo", "forged").inc()
            log.warning(
                "Zalo webhook refused: %s signature",
                "malformed" if header and given is None else "bad" if given else "missing",
            )
            return web.json_response({"error": "bad signature"}, status=401)
        try:
            sent_ms = float(timestamp)
        except ValueError:
            sent_ms = float("nan")
        if not abs(self.clock() - sent_ms / 1000.0) <= self.config.replay_window_s:
            metrics.WEBHOOK_EVENTS.labels("zalo", "stale").inc()
            log.warning("Zalo webhook refused: timestamp %s outside the replay window", timestamp)
            return web.json_response({"error": "stale timestamp"}, status=401)
        item = self.zalo_item(body, sent_ms)
        if item is None:
            metrics.WEBHOOK_EVENTS.labels("zalo", "ignored").inc()
            return web.json_response({"ok": True, "accepted": 0, "duplicates": 0})
        return await self.accept("zalo", [item], self.config.zalo_ack_budget_s)

    def zalo_item(self, body: dict[str, Any], sent_ms: float) -> Inbound | None:
        event = body.get("event_name")
        message = _obj(body.get("message"))
        msg_id = str(message.get("msg_id") or "")
        if event not in ZALO_EVENTS or not msg_id:
            return None
        sender, recipient = _obj(body.get("sender")), _obj(body.get("recipient"))
        group = event == "user_send_group_text"
        group_id = str(body.get("group_id") or recipient.get("id") or "") if group else ""
        if group and not group_id:
            return None
        expires_at = sent_ms / 1000.0 + self.config.replay_window_s  # refused by the window after that
        record: dict[str, Any] = {
            "schema_version": 1,
            "platform": "zalo",
            "kind": "message",
            "event": event,
            "message_id": msg_id,
            "text": str(message.get("text") or ""),
            "post_id": None,
            "group_id": group_id or None,
            "sender_id": str(sender["id"]) if sender.get("id") else None,
            "oa_id": None if group else (str(recipient["id"]) if recipient.get("id") else None),
            "quote_msg_id": str(message["quote_msg_id"]) if message.get("quote_msg_id") else None,
            "created_at": _iso_time(sent_ms / 1000.0),
            "received_at": self.now_iso(),
        }
        return Inbound(f"zalo:{msg_id}", inbound_key("zalo", msg_id), record, expires_at)


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _epoch_s(value: float) -> float:
    """Graph times are epoch seconds; tolerate milliseconds."""
    return value / 1000.0 if value > 1e11 else float(value)


def _entry_time(value: Any) -> float | None:
    """An entry's ``time`` as epoch seconds, or None when there is none we can compare."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    at = _epoch_s(value)
    return at if math.isfinite(at) else None


def _iso_time(value: Any) -> str | None:
    """The platform's creation time as RFC 3339 UTC, or None when it gives none we can hold: not a
    time, or outside the years schemas/times.py accepts (converting those to UTC overflows, and the
    triage would refuse the event). The comment is kept; its received time stands in."""
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(_epoch_s(value), UTC)
        elif isinstance(value, str) and value:
            parsed = datetime.strptime(value, "%Y-%m-%dT%H:%M:%S%z")  # Graph also writes "...+0000"
        else:
            return None
        return iso(checked_instant(parsed))
    except (ValueError, OverflowError, OSError, InvalidContent):
        return None


def seen_file(settings: Settings) -> Path:
    """Where ``lantoa webhooks`` keeps the ids it produced (see producers/webhook_seen.py)."""
    return settings.data_dir / "webhooks" / "seen.jsonl"


def make_app(
    settings: Settings,
    producer: EventSink,
    secrets: WebhookSecrets,
    *,
    config: ReceiverConfig | None = None,
    clock: Callable[[], float] = time.time,
    seen: SeenEvents | None = None,
) -> web.Application:
    """The receivers as an aiohttp application (see the module docstring). ``seen``: the replay
    store, closed with the application (default: in memory only)."""
    cfg = config or ReceiverConfig()
    receiver = Receiver(settings, producer, secrets, cfg, clock, seen)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/webhooks/facebook", receiver.graph_verify)
    app.router.add_post("/webhooks/facebook", receiver.graph_post)
    app.router.add_post("/webhooks/zalo", receiver.zalo_post)
    app.router.add_get("/healthz", health)

    async def close_seen(app: web.Application) -> None:
        receiver.seen.close()

    app.on_cleanup.append(close_seen)
    return app


def serve(
    settings: Settings, secrets: WebhookSecrets, host: str, port: int, state_file: Path | None = None
) -> None:
    """Run the receivers until SIGTERM/SIGINT. ``port`` 0 takes a free port; the bound URL is
    printed and, with ``state_file``, written there as ``{"url", "pid"}`` (removed on exit)."""
    import os
    import signal

    async def main() -> None:
        seen = SeenEvents(seen_file(settings), ReceiverConfig.dedupe_size, time.time)  # SeenStoreBusy first
        sink = KafkaSink(settings)
        await sink.start()
        runner = web.AppRunner(make_app(settings, sink, secrets, seen=seen), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        url = f"http://{host}:{bound[1]}"
        print(f"webhooks {url}", flush=True)
        if state_file is not None:
            tmp = state_file.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps({"url": url, "pid": os.getpid()}))
            tmp.replace(state_file)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
            await sink.stop()
            if state_file is not None:
                state_file.unlink(missing_ok=True)

    if settings.metrics_port:
        from prometheus_client import start_http_server

        start_http_server(settings.metrics_port, addr=settings.web_host)
    asyncio.run(main())
