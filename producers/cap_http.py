"""HTTP endpoint for CAP alerts: `POST /cap` with the XML body → 202 and the plan, or 4xx with the reason.

Bound to 127.0.0.1 by default; put it behind the warning office's authenticated gateway. An
optional bearer token (LANTOA_CAP_TOKEN_FILE) is checked in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
from pathlib import Path

from aiohttp import web

from producers.cap_ingest import AlertProducer, check
from schemas.cap import MAX_CAP_BYTES
from schemas.errors import InvalidContent
from schemas.secrets import read_secret_text
from streams.alerts import NotForBroadcast
from streams.registry import Registry


def make_app(registry: Registry, producer: AlertProducer, token: str | None = None) -> web.Application:
    async def receive(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "unauthorised"}, status=401)
        if request.content_length is not None and request.content_length > MAX_CAP_BYTES:
            return web.json_response({"error": f"body over {MAX_CAP_BYTES} bytes"}, status=413)
        raw = await request.content.read(MAX_CAP_BYTES + 1)
        try:
            checked = check(raw, registry)
        except NotForBroadcast as exc:
            return web.json_response({"accepted": False, "reason": exc.reason}, status=422)
        except InvalidContent as exc:
            return web.json_response({"accepted": False, "reason": exc.reason}, status=400)
        result = await asyncio.to_thread(producer.send, checked, "urn:lantoa:cap-http")
        return web.json_response({"accepted": True, **result}, status=202)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=MAX_CAP_BYTES + 1024)
    app.router.add_post("/cap", receive)
    app.router.add_get("/healthz", health)
    return app


def serve(registry: Registry, producer: AlertProducer, host: str, port: int, token_file: Path | None) -> None:
    token = read_secret_text(token_file).strip() if token_file else None
    web.run_app(make_app(registry, producer, token), host=host, port=port, print=None)
