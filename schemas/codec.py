"""orjson codecs for everything that travels on our topics. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from schemas.errors import InvalidContent

Headers = Sequence[tuple[str, bytes]]


def encode(value: Any) -> bytes:
    """Serialise a JSON-able value (dataclasses and datetimes included) with orjson."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def decode(raw: bytes | None) -> Any:
    """Parse JSON bytes. Raises InvalidContent with the reason when they are not JSON."""
    if raw is None or len(raw) == 0:
        raise InvalidContent("empty payload")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise InvalidContent(f"not valid UTF-8: {uexc.reason} at byte {uexc.start}") from None
        raise InvalidContent(f"not JSON: {exc}") from None


def headers_to_dict(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a str→str dict (undecodable header bytes are replaced, never fatal)."""
    result: dict[str, str] = {}
    for name, value in headers or ():
        result[name] = "" if value is None else value.decode("utf-8", errors="replace")
    return result


def dict_to_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """A str→str dict as Kafka headers."""
    return [(k, v.encode("utf-8")) for k, v in headers.items()]
