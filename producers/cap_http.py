"""HTTP endpoint for CAP alerts: `POST /cap` with the XML body → 202 and the plan, or 4xx with the reason.

Bound to 127.0.0.1 by default; put it behind the warning office's authenticated gateway. An
optional bearer token (LANTOA_CAP_TOKEN_FILE) is checked in constant time.

The whole body is read before anything is parsed, however it arrives (with a Content-Length or
chunked, in one segment or many): a body over ``MAX_CAP_BYTES`` is refused with 413 as soon as
it is known to be (at once from its Content-Length, or when the chunks pass the limit), so no
more than the limit is ever held. Parsing and planning run on a small thread pool of their own,
not on the event loop: a 1 MB alert takes a few hundred milliseconds to check, and meanwhile the
endpoint keeps answering other requests (health checks, small alerts).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

from aiohttp import web

from producers.cap_ingest import AlertProducer, check
from schemas.cap import MAX_CAP_BYTES
from schemas.cap_signature import TrustPolicy
from schemas.errors import InvalidContent
from schemas.registry import Registry
from schemas.secrets import read_secret_text
from streams.alerts.plan import NotForBroadcast

# Alerts checked at once; more wait for a free thread. Two keep both cores of a small host busy
# with a burst of big alerts while leaving the default pool to the producer's sends.
PARSE_THREADS: Final = 2

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    """The request body passed the limit: answered 413 with ``reason``, nothing parsed."""

    def __init__(self, size: int | None, limit: int) -> None:
        self.reason = (
            f"CAP alert too large: {size} bytes (limit {limit})"
            if size is not None
            else f"CAP alert too large: the chunked body passed the limit of {limit} bytes"
        )
        super().__init__(self.reason)


async def read_body(request: web.Request, limit: int = MAX_CAP_BYTES) -> bytes:
    """The whole request body, Content-Length or chunked; BodyTooLarge past ``limit`` bytes.

    ``request.content.read(n)`` returns only what is buffered (the first TCP segment or chunk),
    which truncated bodies; this reads until the end of the body.
    """
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge(request.content_length, limit)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(None, limit)
        parts.append(chunk)
    return b"".join(parts)


def make_app(
    registry: Registry, producer: AlertProducer, token: str | None = None, trust: TrustPolicy | None = None
) -> web.Application:
    parser = ThreadPoolExecutor(max_workers=PARSE_THREADS, thread_name_prefix="cap-parse")

    def refused(status: int, reason: str) -> web.Response:
        return web.json_response({"accepted": False, "reason": reason}, status=status)

    async def receive(request: web.Request) -> web.Response:
        if token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.json_response({"error": "unauthorised"}, status=401)
        try:
            raw = await read_body(request)
        except BodyTooLarge as exc:
            return refused(413, exc.reason)
        try:
            checked = await asyncio.get_running_loop().run_in_executor(parser, check, raw, registry, trust)
        except NotForBroadcast as exc:
            return refused(422, exc.reason)
        except InvalidContent as exc:
            return refused(400, exc.reason)
        result = await asyncio.to_thread(producer.send, checked, "urn:lantoa:cap-http")
        return web.json_response({"accepted": True, **result}, status=202)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def stop_parser(app: web.Application) -> None:
        parser.shutdown(wait=True, cancel_futures=True)

    # Above the limit, so that read_body (not aiohttp's plain-text 413) answers with the reason.
    app = web.Application(client_max_size=MAX_CAP_BYTES + 1024)
    app.router.add_post("/cap", receive)
    app.router.add_get("/healthz", health)
    app.on_cleanup.append(stop_parser)
    return app


def serve(
    registry: Registry,
    producer: AlertProducer,
    host: str,
    port: int,
    token_file: Path | None,
    trust: TrustPolicy | None = None,
) -> None:
    token = read_secret_text(token_file).strip() if token_file else None
    if trust is None or not trust.configured:
        log.warning("CAP signatures are not checked: no LANTOA_CAP_TRUST_FILE")
    web.run_app(make_app(registry, producer, token, trust), host=host, port=port, print=None)
