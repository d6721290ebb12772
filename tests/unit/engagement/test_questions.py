"""Triage, the pure part: which comments are questions, where they belong, how they close."""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timezone
from typing import Any

import pytest

from schemas import contracts
from schemas.models import Action
from schemas.topics import Channel
from streams.engagement import triage as eng
from streams.engagement.store import QuestionsTable

QUESTIONS = [
    ("Bao giờ tiêm ở phường Hoàn Kiếm?", "?"),
    ("Có được hỗ trợ không ạ？", "?"),
    ("Thủ tục này làm ở đâu", "ở đâu"),
    ("Bao giờ thì phường mình được hỗ trợ cài VNeID", "bao giờ"),
    ("Đăng ký như thế nào ạ", "như thế nào"),
    ("Tại sao lại thu phí", "tại sao"),
    ("TẠI SAO lại thu phí", "tại sao"),
    ("Người dân có được miễn phí", "có được"),
    ("Mấy giờ bộ phận một cửa mở cửa ạ", "mấy giờ"),
    ("Làm căn cước cho trẻ em hết bao nhiêu tiền", "bao nhiêu"),
    ("Cho tôi hỏi thủ tục cấp đổi căn cước", "cho tôi hỏi"),
    ("Xin hỏi hạn chót nộp hồ sơ", "xin hỏi"),
    ("Nhà tôi có người già, có được đến tận nhà làm không ạ.", "có được"),
    ("Nhà tôi có người già không ạ", "có … không"),
    ("Đã có lịch tiêm chưa", "đã … chưa"),
    ("Vậy là phải đi lại hả", "hả"),
    # typed without diacritics
    ("bao gio thi co lich tiem", "bao gio"),
    ("lam o dau vay ad", "o dau"),
    ("co duoc ho tro khong", "co duoc"),
    ("nha toi co nguoi gia ko", "co … ko"),
    ("cho em hoi thu tuc", "cho em hoi"),
    # decomposed Unicode (NFD) as some phones send it
    (unicodedata.normalize("NFD", "Thủ tục làm ở đâu"), "ở đâu"),
]

NOT_QUESTIONS = [
    "Cảm ơn UBND đã thông tin!",
    "Tin hay quá 👍",
    "Tôi không bao giờ bỏ lỡ bản tin của phường",
    "Chưa bao giờ thấy phường làm nhanh như vậy",
    "Ở đâu cũng thấy chuyển đổi số",
    "Lúc nào cũng tận tình",
    "Mấy ngày nay trời mưa to",
    "Tết này tôi không đi đâu cả",
    "Ngày nào cũng nghe loa phường",
    "Xã đã có được kết quả tốt",
    "Khách sạn 5 sao",
    "Đẹp quá nhỉ",
    "Không",
    "Tôi không đồng ý với cách làm này.",
    "Chi tiết xem tại https://dichvucong.gov.vn/p/home?lang=vi nhé",
    "co dau re dep qua",  # "cô dâu", not "ở đâu"
    "Có đau đâu mà",
    "",
]


@pytest.mark.parametrize(("text", "signal"), QUESTIONS)
def test_questions_are_recognised_with_what_gave_them_away(text: str, signal: str) -> None:
    assert eng.question_signal(text) == signal
    assert eng.is_question(text)


@pytest.mark.parametrize("text", NOT_QUESTIONS)
def test_statements_thanks_and_negations_are_not_questions(text: str) -> None:
    assert eng.question_signal(text) is None


def test_question_ids_are_short_stable_and_per_platform() -> None:
    a = eng.question_id("fanpage", "111_222")
    assert a == eng.question_id("fanpage", "111_222")
    assert a != eng.question_id("zalo", "111_222")
    assert a.startswith("q-") and len(a) == 12
    assert eng.qid_of_uri(eng.question_uri(a)) == a
    assert eng.qid_of_uri("urn:lantoa:article:x") is None
    assert eng.inbound_key("fanpage", "1_2") == "fb:1_2" and eng.inbound_key("zalo", "ab") == "zalo:ab"


# -- linking ------------------------------------------------------------------------------------


def live(uri: str, target: str, external_id: str, at: str, **detail: Any) -> dict[str, Any]:
    return {
        "kind": "live",
        "uri": uri,
        "version": 1,
        "target": target,
        "external_id": external_id,
        "retracted": False,
        "at": at,
        "detail": detail,
    }


def index_with_samples() -> eng.LiveIndex:
    index = eng.LiveIndex()
    index.apply(
        Channel.FANPAGE,
        "live|urn:a|fanpage:ha-noi",
        live("urn:a", "fanpage:ha-noi", "100_7", "2026-11-26T01:00:00Z"),
    )
    index.apply(
        Channel.FANPAGE,
        "live|urn:b|fanpage:ha-noi",
        live("urn:b", "fanpage:ha-noi", "100_8", "2026-11-26T02:00:00Z"),
    )
    index.apply(
        Channel.ZALO,
        "live|urn:a|zalo:nhom",
        live("urn:a", "zalo:nhom", "m1", "2026-11-26T01:00:00Z", message_ids=["m1"], title="Tin A"),
    )
    index.apply(
        Channel.ZALO,
        "live|urn:b|zalo:nhom",
        live("urn:b", "zalo:nhom", "m2", "2026-11-26T02:00:00Z", message_ids=["m2", "m3"], title="Tin B"),
    )
    return index


def pages(page_id: str) -> list[str]:
    return {"100": ["fanpage:ha-noi"]}.get(page_id, [])


def groups(group_id: str) -> list[str]:
    return {"g-2": ["zalo:nhom"]}.get(group_id, [])


def fb_event(post_id: str, text: str = "Làm ở đâu?", **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "platform": "fanpage",
        "kind": "message",
        "message_id": f"{post_id.split('_')[1]}_99",
        "text": text,
        "post_id": post_id,
        "page_id": post_id.split("_")[0],
        "sender_id": "6001",
        "created_at": "2026-11-26T03:00:00Z",
        "received_at": "2026-11-26T03:00:01Z",
        **extra,
    }


def zalo_event(text: str, at: str = "2026-11-26T03:00:00Z", **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "platform": "zalo",
        "kind": "message",
        "message_id": "z1",
        "text": text,
        "group_id": "g-2",
        "sender_id": "8421",
        "created_at": at,
        "received_at": at,
        **extra,
    }


def test_a_fanpage_comment_belongs_to_the_article_of_its_post() -> None:
    r = eng.resolve(fb_event("100_7"), index_with_samples(), pages=pages, groups=groups)
    assert (r.article and r.article.uri, r.target, r.link) == ("urn:a", "fanpage:ha-noi", "post")


def test_a_comment_on_a_post_lantoa_did_not_make_is_answerable_through_its_page() -> None:
    r = eng.resolve(fb_event("100_555"), index_with_samples(), pages=pages, groups=groups)
    assert (r.article, r.target, r.link) == (None, "fanpage:ha-noi", None)
    r = eng.resolve(fb_event("999_1"), index_with_samples(), pages=pages, groups=groups)
    assert r.target is None


def test_a_zalo_group_message_belongs_to_the_quoted_message_else_the_latest_article_before_it() -> None:
    index = index_with_samples()
    quoted = eng.resolve(zalo_event("Cái này là sao?", quote_msg_id="m1"), index, pages=pages, groups=groups)
    assert (quoted.article and quoted.article.uri, quoted.link) == ("urn:a", "quote")
    quoted_part = eng.resolve(zalo_event("?", quote_msg_id="m3"), index, pages=pages, groups=groups)
    assert quoted_part.article and quoted_part.article.uri == "urn:b"
    recent = eng.resolve(zalo_event("Bao giờ?"), index, pages=pages, groups=groups)
    assert (recent.article and recent.article.uri, recent.target, recent.link) == (
        "urn:b",
        "zalo:nhom",
        "recent",
    )
    between = eng.resolve(
        zalo_event("Bao giờ?", at="2026-11-26T01:30:00Z"), index, pages=pages, groups=groups
    )
    assert between.article and between.article.uri == "urn:a"
    weeks_later = eng.resolve(
        zalo_event("Bao giờ?", at="2026-12-26T01:30:00Z"), index, pages=pages, groups=groups
    )
    assert (weeks_later.article, weeks_later.target) == (None, "zalo:nhom")


def test_a_zalo_message_to_the_oa_is_answered_to_its_sender() -> None:
    event = zalo_event("Hỏi chút", group_id=None, sender_id="u-77")
    r = eng.resolve(event, index_with_samples(), pages=pages, groups=groups)
    assert (r.article, r.target) == (None, "zalo-user:u-77")
    record = eng.new_record(event, r, "2026-11-26T03:00:02Z")
    assert record["user_id"] == "u-77" and record["group_id"] is None


def test_an_updated_or_retracted_post_moves_in_the_index() -> None:
    index = index_with_samples()
    index.apply(Channel.FANPAGE, "live|urn:a|fanpage:ha-noi", None)
    assert "100_7" not in index.by_post
    index.apply(
        Channel.ZALO,
        "live|urn:b|zalo:nhom",
        {**live("urn:b", "zalo:nhom", "m9", "2026-11-26T02:30:00Z"), "detail": {"message_ids": ["m9"]}},
    )
    assert "m2" not in index.by_message and index.by_message["m9"].uri == "urn:b"


# -- records ------------------------------------------------------------------------------------

NOW = "2026-11-26T03:00:02.000Z"


def new_question() -> dict[str, Any]:
    index = index_with_samples()
    event = fb_event("100_7", "Thủ tục làm ở đâu ạ?")
    record = eng.on_inbound(None, event, eng.resolve(event, index, pages=pages, groups=groups), NOW)
    assert record is not None
    return record


def test_a_new_question_is_open_linked_and_fits_its_schema() -> None:
    record = new_question()
    contracts.check("question", record)
    assert record["state"] == "open" and record["question"] and record["signal"] == "?"
    assert (record["article_uri"], record["target"], record["asked_at"]) == (
        "urn:a",
        "fanpage:ha-noi",
        "2026-11-26T03:00:00Z",
    )
    comment = eng.on_inbound(None, fb_event("100_7", "Cảm ơn!"), eng.Resolution("fanpage:ha-noi"), NOW)
    assert comment is not None and comment["state"] == "comment" and not comment["question"]


def test_replays_change_nothing_and_edits_deletions_dismissals_do() -> None:
    record = new_question()
    event = fb_event("100_7", "Thủ tục làm ở đâu ạ?")
    assert eng.on_inbound(record, event, None, NOW) is None
    edited = eng.on_inbound(record, {**event, "kind": "edited", "text": "Cảm ơn, tôi biết rồi"}, None, NOW)
    assert edited is not None and edited["state"] == "comment"
    withdrawn = eng.on_inbound(record, {**event, "kind": "removed"}, None, NOW)
    assert withdrawn is not None and withdrawn["state"] == "withdrawn"
    dismissed = eng.on_inbound(record, {**event, "kind": "dismissed", "text": "spam", "by": "bt"}, None, NOW)
    assert dismissed is not None and (dismissed["state"], dismissed["dismissed_reason"]) == (
        "dismissed",
        "spam",
    )
    contracts.check("question", dismissed)
    assert eng.on_inbound(None, {**event, "kind": "removed"}, None, NOW) is None


def test_the_ledger_closes_a_question_when_its_reply_is_out_and_says_why_when_it_failed() -> None:
    record = new_question()
    uri = eng.question_uri(record["id"])
    index = eng.LiveIndex()
    failed = index.apply(
        Channel.FANPAGE,
        "cid",
        {
            "kind": "command",
            "uri": uri,
            "version": 1,
            "target": "fanpage:ha-noi",
            "state": "failed",
            "reason": "Graph error 100/33",
            "at": NOW,
        },
    )
    assert failed is not None
    after_failure = eng.on_answer(record, failed, NOW)
    assert (
        after_failure is not None
        and after_failure["state"] == "open"
        and after_failure["answer_error"] == "Graph error 100/33"
    )
    assert eng.next_answer_version(after_failure, follow_up=False) == 2
    out = index.apply(
        Channel.FANPAGE,
        f"live|{uri}|fanpage:ha-noi",
        {**live(uri, "fanpage:ha-noi", "7_1000", NOW, text="Tại UBND phường."), "version": 2},
    )
    assert out is not None and (out.answer_id, out.text, out.version) == ("7_1000", "Tại UBND phường.", 2)
    answered = eng.on_answer(after_failure, out, NOW)
    assert answered is not None
    assert (answered["state"], answered["answer_id"], answered["answer_error"]) == (
        "answered",
        "7_1000",
        None,
    )
    contracts.check("question", answered)
    assert eng.on_answer(answered, out, NOW) is None  # the same ledger entry read again
    assert eng.on_answer(answered, failed, NOW) is None  # an older failure never reopens it
    assert index.by_target == {}  # answers are not articles


def test_the_table_counts_open_questions_and_the_oldest_age_per_platform() -> None:
    now = datetime(2026, 11, 26, 4, 0, tzinfo=UTC)
    table = QuestionsTable(clock=now.timestamp)
    base = new_question()
    for i, (platform, state, asked) in enumerate(
        [
            ("fanpage", "open", "2026-11-26T03:00:00Z"),
            ("fanpage", "open", "2026-11-26T01:00:00Z"),
            ("zalo", "open", "2026-11-26T03:30:00Z"),
            ("fanpage", "answered", "2026-11-25T01:00:00Z"),
            ("zalo", "comment", "2026-11-24T01:00:00Z"),
        ]
    ):
        table.put({**base, "id": f"q-{i:010x}", "platform": platform, "state": state, "asked_at": asked})
    assert table.stats() == (3, 3 * 3600.0)
    assert table.stats("fanpage") == (2, 3 * 3600.0) and table.stats("zalo") == (1, 1800.0)
    table.put({**table.records["q-0000000001"], "state": "answered"})
    table.remove("q-0000000000")
    assert table.stats("fanpage") == (0, 0.0) and table.stats() == (1, 1800.0)


# -- answering ----------------------------------------------------------------------------------


def test_a_fanpage_answer_is_a_reply_command_whose_key_makes_repeats_harmless() -> None:
    record = new_question()
    first = eng.reply_command(record, "Tại bộ phận một cửa UBND phường.", 1, NOW)
    again = eng.reply_command(record, "Tại bộ phận một cửa UBND phường.", 1, "2026-11-26T05:00:00Z")
    assert first.key.command_id() == again.key.command_id()
    assert (
        first.key.action is Action.REPLY
        and first.channel is Channel.FANPAGE
        and first.target == "fanpage:ha-noi"
    )
    assert first.key.uri == f"urn:lantoa:question:{record['id']}"
    assert (
        first.payload["comment_id"] == record["comment_id"]
        and first.payload["text"] == "Tại bộ phận một cửa UBND phường."
    )
    contracts.check("command", first.to_dict())
    follow_up = eng.reply_command(record, "Bổ sung: mang theo CCCD.", 2, NOW)
    assert follow_up.key.command_id() != first.key.command_id()


def test_a_zalo_answer_quotes_the_question_and_fits_one_message() -> None:
    event = zalo_event("Bao giờ thì phường mình được hỗ trợ cài VNeID " + "rất lâu " * 40)
    record = eng.on_inbound(
        None, event, eng.resolve(event, index_with_samples(), pages=pages, groups=groups), NOW
    )
    assert record is not None
    cmd = eng.reply_command(record, "Thứ Bảy này, tại trụ sở UBND phường.", 1, NOW)
    text = cmd.payload["text"]
    assert text.startswith("Trả lời câu hỏi «Bao giờ thì phường") and text.endswith(
        "Thứ Bảy này, tại trụ sở UBND phường."
    )
    assert "…»" in text and len(text) <= eng.ZALO_TEXT_LIMIT
    assert cmd.payload["group_id"] == "g-2" and cmd.target == "zalo:nhom"
    with pytest.raises(eng.NotAnswerable):
        eng.reply_command(record, "x" * 2000, 1, NOW)


def test_what_cannot_be_answered_says_why() -> None:
    record = new_question()
    with pytest.raises(eng.NotAnswerable, match="empty"):
        eng.reply_command(record, "   ", 1, NOW)
    with pytest.raises(eng.NotAnswerable, match="deleted"):
        eng.reply_command({**record, "state": "withdrawn"}, "ok", 1, NOW)
    with pytest.raises(eng.NotAnswerable, match="no target"):
        eng.reply_command({**record, "target": None}, "ok", 1, NOW)
    answered = {**record, "state": "answered", "answer_version": 1, "answer_id": "7_1"}
    with pytest.raises(eng.NotAnswerable, match="already answered"):
        eng.next_answer_version(answered, follow_up=False)
    assert eng.next_answer_version(answered, follow_up=True) == 2
    with pytest.raises(eng.NotAnswerable, match="no answer yet"):
        eng.next_answer_version(record, follow_up=True)
    assert eng.next_answer_version(record, follow_up=False) == 1
