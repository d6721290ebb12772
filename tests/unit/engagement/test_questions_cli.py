"""`lantoa questions` / `answer` / `dismiss`: finding, filtering and showing records (no broker)."""

from __future__ import annotations

from datetime import UTC, datetime, timezone
from typing import Any

import pytest

from producers.cli.main import build_parser
from producers.cli.questions import find, render, select


def rec(
    qid: str, state: str, asked: str, question: bool = True, article: str | None = "urn:a"
) -> dict[str, Any]:
    return {
        "id": qid,
        "state": state,
        "question": question,
        "asked_at": asked,
        "platform": "fanpage",
        "target": "fanpage:ha-noi",
        "article_uri": article,
        "text": "Bao giờ   có lịch?\n" * 8,
    }


TABLE = {
    r["id"]: r
    for r in [
        rec("q-aaaaaaaaaa", "open", "2026-11-26T03:00:00Z"),
        rec("q-aaaabbbbbb", "answered", "2026-11-26T01:00:00Z"),
        rec("q-cccccccccc", "comment", "2026-11-26T02:00:00Z", question=False),
        rec("q-dddddddddd", "open", "2026-11-26T02:30:00Z", article="urn:b"),
    ]
}


def test_ids_may_be_shortened_to_a_unique_prefix() -> None:
    assert find(TABLE, "q-cccc")["id"] == "q-cccccccccc"
    assert find(TABLE, "DDDD")["id"] == "q-dddddddddd"
    with pytest.raises(LookupError, match="ambiguous"):
        find(TABLE, "q-aaaa")
    with pytest.raises(LookupError, match="no question"):
        find(TABLE, "q-ffff")


def test_listing_filters_oldest_first() -> None:
    assert [r["id"] for r in select(TABLE)] == ["q-aaaabbbbbb", "q-dddddddddd", "q-aaaaaaaaaa"]
    assert [r["id"] for r in select(TABLE, only_open=True)] == ["q-dddddddddd", "q-aaaaaaaaaa"]
    assert [r["id"] for r in select(TABLE, only_open=True, article="urn:a")] == ["q-aaaaaaaaaa"]
    assert "q-cccccccccc" in [r["id"] for r in select(TABLE, everything=True)]


def test_the_table_shows_ages_and_the_oldest_open_question() -> None:
    out = render(select(TABLE), datetime(2026, 11, 26, 4, 0, tzinfo=UTC))
    lines = out.splitlines()
    assert lines[0].startswith("ID") and len(lines) == 5
    assert lines[2].split()[:4] == ["q-dddddddddd", "open", "fanpage", "1h30m"]
    assert lines[2].endswith("…") and "Bao giờ có lịch? Bao giờ" in lines[2]
    assert lines[-1] == "2 open; the oldest asked 1h30m ago"
    assert render([], datetime.now(UTC)) == "no questions"


def test_the_subcommands_are_on_the_lantoa_parser() -> None:
    parser = build_parser()
    args = parser.parse_args(["answer", "q-aaaa", "Tại UBND phường.", "--follow-up", "--wait", "5"])
    assert (args.id, args.text, args.follow_up, args.wait) == ("q-aaaa", "Tại UBND phường.", True, 5.0)
    args = parser.parse_args(["questions", "--open", "--article", "urn:a", "--json"])
    assert (args.open, args.article, args.json) == (True, "urn:a", True)
    args = parser.parse_args(["webhooks", "--port", "0"])
    assert args.port == 0
    with pytest.raises(SystemExit):
        parser.parse_args(["questions", "--open", "--all"])
