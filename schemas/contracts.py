"""Validation of our own contracts (commands, receipts, targets, ...) against schemas/json.

jsonschema (Draft 2020-12, with its format checker) is the reference: its verdict and its
``best_match`` reason are what ``check`` answers. It costs ~0.2-1 ms per command, which made it the
adapters' hottest spot, so a compiled fastjsonschema validator answers first on the valid path:

- it is only used for a schema whose keywords all mean the same in both (``_FAST_KEYWORDS``;
  e.g. ``prefixItems`` is not understood by fastjsonschema, so such a schema goes to jsonschema
  only), with every ``format`` delegated to jsonschema's own format checker;
- it may be *stricter* than the reference (fastjsonschema reads ``$`` in a pattern as end of
  string, where Python's ``re`` also matches before a final newline), never laxer: when it
  refuses, the reference decides, and a value the reference accepts is accepted. So the verdicts
  and the reasons are the reference's; tests/unit/consumers/test_contract_fast_path.py compares
  both on mutated examples of every contract.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from schemas.errors import InvalidContent

try:
    import fastjsonschema
except ImportError:  # an accelerator only: without it the reference answers alone, same verdicts
    fastjsonschema = None  # type: ignore[assignment]

CONTRACTS = (
    "command",
    "receipt",
    "deadletter",
    "target",
    "retraction",
    "cloudevents-headers",
    "embargo-release",
    "engagement",
    "question",
    "ledger",
    "emergency",
    "article-state",
    "poison",
    "payload",
    "audit",
    "pending_alert",
)

# Keywords both validators implement alike (fastjsonschema's draft-2019 generator vs jsonschema's
# Draft 2020-12) plus annotations neither checks. A schema using anything else is not compiled.
_FAST_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "$ref",
        "$defs",
        "$comment",
        "title",
        "description",
        "examples",
        "default",
        "type",
        "enum",
        "const",
        "properties",
        "required",
        "additionalProperties",
        "items",
        "minItems",
        "maxItems",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "format",
    }
)
# Where the value is a map of names to subschemas (the names are not keywords), or plain data.
_SUBSCHEMA_MAPS = frozenset({"properties", "$defs"})
_DATA = frozenset({"enum", "const", "required", "examples", "default", "title", "description", "$comment"})

Validate = Callable[[Any], Any]


def _schema(name: str, version: int) -> dict[str, Any]:
    if name not in CONTRACTS:
        raise ValueError(f"unknown contract {name!r}")
    text = resources.files("schemas").joinpath("json", f"{name}.v{version}.json").read_bytes()
    schema: dict[str, Any] = orjson.loads(text)
    return schema


@cache
def _validator(name: str, version: int) -> Draft202012Validator:
    schema = _schema(name, version)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def keywords_and_formats(node: Any) -> tuple[set[str], set[str]]:
    """Every keyword and every ``format`` name a schema uses (property names excluded)."""
    keywords: set[str] = set()
    formats: set[str] = set()

    def walk(n: Any) -> None:
        if isinstance(n, list):
            for item in n:
                walk(item)
        elif isinstance(n, dict):
            for key, value in n.items():
                keywords.add(key)
                if key == "format" and isinstance(value, str):
                    formats.add(value)
                elif key in _SUBSCHEMA_MAPS and isinstance(value, dict):
                    for sub in value.values():
                        walk(sub)
                elif key not in _DATA:
                    walk(value)

    walk(node)
    return keywords, formats


@cache
def fast_validator(name: str, version: int = 1) -> Validate | None:
    """The compiled yes/no validator of a contract, or None when the schema is not safe to compile."""
    _validator(name, version)  # the schema itself is checked by the reference first
    if fastjsonschema is None:
        return None
    schema = _schema(name, version)
    keywords, formats = keywords_and_formats(schema)
    if not keywords <= _FAST_KEYWORDS:
        return None
    checker = Draft202012Validator.FORMAT_CHECKER

    def conforms(fmt: str) -> Callable[[str], bool]:
        return lambda value: bool(checker.conforms(value, fmt))

    compiled: Validate = fastjsonschema.compile(schema, formats={f: conforms(f) for f in formats})
    return compiled


def reference_reason(name: str, value: Any, version: int = 1) -> str | None:
    """jsonschema's verdict: the best-matching error as ``<json path>: <message>``, None when valid."""
    error = best_match(_validator(name, version).iter_errors(value))
    return None if error is None else f"{error.json_path}: {error.message}"


def check(name: str, value: Any, version: int = 1) -> None:
    """Raise InvalidContent with the first reason when ``value`` breaks contract ``name``."""
    fast = fast_validator(name, version)
    if fast is not None:
        try:
            fast(value)
            return
        except (fastjsonschema.JsonSchemaValueException, TypeError, ValueError):
            pass  # refused (or not understood): the reference decides and gives the reason
    reason = reference_reason(name, value, version)
    if reason is not None:
        raise InvalidContent(reason)
