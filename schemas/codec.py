"""orjson codecs for everything that travels on our topics. No I/O."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from schemas.errors import InvalidContent

Headers = Sequence[tuple[str, bytes]]

# Deepest nesting any record of ours may have (objects and arrays, the top level counting 1). The
# deepest real ones are ninjs documents with associations, a dozen levels. orjson parses up to
# 1024 levels but serialises only 254, and jsonschema, NFC and the renderers recurse: a valid
# document a few hundred levels deep crashed the stream worker when it wrote the commands, over
# and over (issue 12). Refused here, once, every consumer behind decode() is safe.
MAX_DEPTH = 64


def encode(value: Any) -> bytes:
    """Serialise a JSON-able value (dataclasses and datetimes included) with orjson."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)


def decode(raw: bytes | None) -> Any:
    """Parse JSON bytes. Raises InvalidContent with the reason when they are not JSON, or nest
    deeper than ``MAX_DEPTH`` (orjson's own limit, 1024, is refused the same way)."""
    if raw is None or len(raw) == 0:
        raise InvalidContent("empty payload")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as uexc:
            raise InvalidContent(f"not valid UTF-8: {uexc.reason} at byte {uexc.start}") from None
        raise InvalidContent(f"not JSON: {exc}") from None
    check_depth(value)
    return value


def check_depth(value: Any, limit: int = MAX_DEPTH) -> None:
    """InvalidContent when ``value`` nests deeper than ``limit``. Iterative: nothing to overflow."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            raise InvalidContent(f"nested deeper than {limit} levels, the most Lantoa accepts")
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))


def headers_to_dict(headers: Iterable[tuple[str, bytes | None]] | None) -> dict[str, str]:
    """Kafka headers as a str→str dict (undecodable header bytes are replaced, never fatal)."""
    result: dict[str, str] = {}
    for name, value in headers or ():
        result[name] = "" if value is None else value.decode("utf-8", errors="replace")
    return result


def dict_to_headers(headers: dict[str, str]) -> list[tuple[str, bytes]]:
    """A str→str dict as Kafka headers."""
    return [(k, v.encode("utf-8")) for k, v in headers.items()]
