"""Validation of our own contracts (commands, receipts, targets, ...) against schemas/json."""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any

import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from schemas.errors import InvalidContent

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
)


@cache
def _validator(name: str, version: int) -> Draft202012Validator:
    if name not in CONTRACTS:
        raise ValueError(f"unknown contract {name!r}")
    text = resources.files("schemas").joinpath("json", f"{name}.v{version}.json").read_bytes()
    schema = orjson.loads(text)
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check(name: str, value: Any, version: int = 1) -> None:
    """Raise InvalidContent with the first reason when ``value`` breaks contract ``name``."""
    error = best_match(_validator(name, version).iter_errors(value))
    if error is not None:
        raise InvalidContent(f"{error.json_path}: {error.message}")
