"""Editors' replies and citizens' texts: no bidi or zero-width control reaches a page or a group."""

from __future__ import annotations

from typing import Any

from consumers.archive.render import clean_text
from schemas.text import INVISIBLE
from streams.engagement import triage as eng

SPOOF = "\u202eTrả\u202c lời\u200b \u2066ở\u2069 phường\ufeff\u200f"


def record(platform: str, text: str = "Hỏi\u202e gì\u200b đó?") -> dict[str, Any]:
    return {
        "id": "q-1",
        "platform": platform,
        "comment_id": "c1",
        "text": text,
        "group_id": "g-1",
        "state": "open",
        "target": f"{platform}:t",
    }


def test_a_fanpage_reply_has_no_invisible_controls() -> None:
    payload = eng.reply_payload(record("fanpage"), SPOOF)
    assert payload["text"] == payload["answer"] == "Trả lời ở phường"


def test_a_zalo_reply_quotes_the_question_without_its_controls() -> None:
    payload = eng.reply_payload(record("zalo"), SPOOF)
    assert not INVISIBLE.search(payload["text"])
    assert payload["text"] == "Trả lời câu hỏi «Hỏi gì đó?»:\nTrả lời ở phường"


def test_an_answer_of_only_controls_is_empty() -> None:
    try:
        eng.reply_payload(record("fanpage"), "\u202e\u200b\ufeff ")
    except eng.NotAnswerable as exc:
        assert "empty" in str(exc)
    else:
        raise AssertionError("an invisible answer was accepted")


def test_a_citizens_text_is_stored_without_controls() -> None:
    event = {
        "schema_version": 1,
        "platform": "zalo",
        "kind": "message",
        "message_id": "z1",
        "text": "Khi nào\u202e có điện\u200b?",
        "group_id": "g-2",
        "sender_id": "1",
        "created_at": "2026-11-26T03:00:00Z",
        "received_at": "2026-11-26T03:00:00Z",
    }
    rec = eng.new_record(event, eng.Resolution("zalo:t"), "2026-11-26T03:00:01.000Z")
    assert rec["text"] == "Khi nào có điện?"


def test_the_archive_page_uses_the_same_rule() -> None:
    assert clean_text(SPOOF) == "Trả lời ở phường"
    assert clean_text("a\x1b[2Jb\tc\nd") == "a[2Jb\tc\nd"
