"""States and outcomes are enums in schemas/models.py; the JSON Schemas list the same values.
If one side gains a value the other lacks, receipts or ledger entries would be refused (or
accepted unnamed): this keeps the two in step."""

from __future__ import annotations

import json
from pathlib import Path

import orjson

from schemas.models import Action, LedgerState, Outcome, Receipt, Stage

SCHEMAS = Path(__file__).resolve().parents[3] / "schemas" / "json"


def enum_of(schema: str, prop: str) -> list[str]:
    doc = json.loads((SCHEMAS / schema).read_text(encoding="utf-8"))
    values: list[str] = doc["properties"][prop]["enum"]
    return values


def test_outcome_matches_the_receipt_schema() -> None:
    assert [o.value for o in Outcome] == enum_of("receipt.v1.json", "outcome")


def test_ledger_state_matches_the_ledger_schema() -> None:
    assert [s.value for s in LedgerState] == enum_of("ledger.v1.json", "state")


def test_an_enum_outcome_serialises_as_its_plain_value() -> None:
    r = Receipt(uri="urn:x", stage="delivery", outcome=Outcome.DELIVERED, at="2026-11-26T01:00:00.000Z")
    assert orjson.loads(orjson.dumps(r.to_dict()))["outcome"] == "delivered"
    # the receipt id is the same as for the plain string, so ids recorded before the enum still match
    assert r.receipt_id == Receipt("urn:x", "delivery", "delivered", "2026-11-26T01:00:00.000Z").receipt_id  # type: ignore[arg-type]


def test_stage_matches_the_receipt_schema() -> None:
    assert [s.value for s in Stage] == enum_of("receipt.v1.json", "stage")


def test_action_matches_the_command_schema() -> None:
    doc = json.loads((SCHEMAS / "command.v1.json").read_text(encoding="utf-8"))
    assert [a.value for a in Action] == doc["$defs"]["action"]["enum"]
