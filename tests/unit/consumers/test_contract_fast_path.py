"""The compiled fast path of schemas/contracts.py gives jsonschema's verdicts and reasons, exactly.

Every example of every contract is mutated (values replaced by tricky JSON: booleans where
numbers are expected, 1.0 for 1, strings with a final newline, odd date-times; keys removed or
added) and ``check`` must raise iff the reference (jsonschema Draft 2020-12 ``best_match``) finds
an error, with the same message.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas import contracts
from schemas.errors import InvalidContent
from schemas.topics import descriptors


def _examples() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for desc in descriptors().values():
        for ex in desc.examples:
            if desc.schema == "deadletter":
                out.append(("deadletter", ex.headers))
            elif desc.schema == "ninjs":
                out.append(
                    (
                        "cloudevents-headers",
                        {k: v for k, v in ex.headers.items() if k.startswith("ce_") or k == "content-type"},
                    )
                )
                if isinstance(ex.value, dict) and "uri" in ex.value and "pubStatus" not in ex.value:
                    out.append(("retraction", ex.value))
            elif desc.schema in contracts.CONTRACTS:
                out.append((desc.schema, ex.value))
    return out


EXAMPLES = _examples()

TRICKY = (
    st.sampled_from(
        [
            True,
            False,
            None,
            0,
            1,
            1.0,
            1.5,
            -1,
            2**63,
            "",
            "x",
            "x\n",
            " ",
            [],
            {},
            [1],
            {"a": 1},
            "0" * 64,
            "0" * 64 + "\n",
            "A" * 64,
            "2026-11-26T01:00:00Z",
            "2026-11-26T01:00:00+07:00",
            "2026-11-26T01:00:00+0700",
            "2026-11-26t01:00:00z",
            "2026-02-30T01:00:00Z",
            "2026-11-26 01:00:00Z",
            "2026-11-26T24:00:00Z",
            "2026-11-26T01:00:60Z",
            "2026-11-26",
            "publish",
            "retract",
            "fanpage",
            "zalo",
            "emergency",
            "delivered",
            "Actual",
            "urn:lantoa:article:1",
        ]
    )
    | st.text(max_size=8)
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False)
)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            found += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += paths(v, (*prefix, i))
    return found


def mutate(value: Any, path: tuple[Any, ...], how: str, new: Any) -> Any:
    if not path:
        return new if how == "replace" else value
    out = copy.deepcopy(value)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    last = path[-1]
    if how == "replace":
        parent[last] = new
    elif how == "delete" and isinstance(parent, dict):
        del parent[last]
    elif how == "add" and isinstance(parent, dict):
        parent[f"extra_{last}"] = new
    return out


def verdict(name: str, value: Any) -> str | None:
    try:
        contracts.check(name, value)
    except InvalidContent as exc:
        return exc.reason
    return None


@pytest.mark.parametrize("name", contracts.CONTRACTS)
def test_every_contract_is_compiled_or_deliberately_not(name: str) -> None:
    # article-state uses prefixItems, which fastjsonschema does not know: reference only. Every other
    # contract uses only keywords both validators agree on: the fast path is on.
    assert (contracts.fast_validator(name) is None) == (name == "article-state")


def test_a_keyword_outside_the_safe_set_disables_the_fast_path() -> None:
    assert "prefixItems" in contracts.keywords_and_formats(contracts._schema("article-state", 1))[0]
    keywords, formats = contracts.keywords_and_formats(
        {
            "type": "array",
            "prefixItems": [{"type": "string", "format": "date-time"}],
            "properties": {"prefixItems": {"type": "string"}},
        }
    )
    assert "prefixItems" in keywords and formats == {"date-time"}
    assert not keywords <= contracts._FAST_KEYWORDS


def test_examples_are_valid_on_both_paths() -> None:
    assert {n for n, _ in EXAMPLES} >= {
        "command",
        "receipt",
        "deadletter",
        "target",
        "ledger",
        "emergency",
        "cloudevents-headers",
    }
    for name, value in EXAMPLES:
        assert contracts.reference_reason(name, value) is None
        fast = contracts.fast_validator(name)
        if fast is not None:
            fast(value)  # the valid path never reaches jsonschema
        assert verdict(name, value) is None


def test_known_differences_end_in_the_reference_verdict() -> None:
    command = next(v for n, v in EXAMPLES if n == "command")
    # a pattern ending in $ accepts a final newline in Python's re: fast refuses, reference accepts
    newline = {**command, "command_id": command["command_id"] + "\n"}
    assert verdict("command", newline) is None
    # booleans are not 1; 1.0 is
    assert verdict("command", {**command, "schema_version": True}) == "$.schema_version: 1 was expected"
    assert verdict("command", {**command, "schema_version": 1.0}) is None
    # a date-time the reference's format checker refuses (no 30 February)
    assert (
        verdict("command", {**command, "issued_at": "2026-02-30T01:00:00Z"})
        == "$.issued_at: '2026-02-30T01:00:00Z' is not a 'date-time'"
    )
    assert verdict("command", {**command, "version": 0}) == "$.version: 0 is less than the minimum of 1"


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_examples_get_the_reference_verdict_and_reason(data: st.DataObject) -> None:
    name, value = data.draw(st.sampled_from(EXAMPLES))
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths(value)))
        how = data.draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        value = mutate(value, path, how, data.draw(TRICKY))
    assert verdict(name, value) == contracts.reference_reason(name, value)
