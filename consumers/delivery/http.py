"""HTTP calls for platform adapters: one place that turns transport failures into our errors.

A failure before the request left (connect refused, DNS) is transient: nothing happened. A
failure after it left (timeout, connection dropped) on a mutating call is OutcomeUnknown: the
platform may have acted. Read-only calls that fail are transient.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from consumers.delivery.errors import OutcomeUnknown, TransientDeliveryError


@dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    headers: dict[str, str]


async def call(
    session: aiohttp.ClientSession, method: str, url: str, *, mutating: bool, timeout_s: float, **kwargs: Any
) -> Reply:
    """Make one request and decode a JSON body (a non-JSON body comes back as text)."""
    try:
        async with session.request(
            method, url, timeout=aiohttp.ClientTimeout(total=timeout_s), **kwargs
        ) as resp:
            raw = await resp.read()
            try:
                body: Any = orjson.loads(raw) if raw else None
            except orjson.JSONDecodeError:
                body = raw.decode("utf-8", "replace")
            return Reply(resp.status, body, {k: v for k, v in resp.headers.items()})
    except aiohttp.ClientConnectorError as exc:
        raise TransientDeliveryError(f"cannot connect: {exc.os_error or exc}") from None
    except (
        TimeoutError,
        aiohttp.ServerDisconnectedError,
        aiohttp.ClientOSError,
        aiohttp.ClientPayloadError,
    ) as exc:
        what = type(exc).__name__
        if mutating:
            raise OutcomeUnknown(f"{method} sent, no answer ({what})") from None
        raise TransientDeliveryError(f"{method} failed ({what})") from None
    except aiohttp.ClientError as exc:
        raise TransientDeliveryError(f"{method} failed: {type(exc).__name__}") from None
