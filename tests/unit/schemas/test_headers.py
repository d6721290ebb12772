"""Internal headers: which ones are stripped from outside records, and parsers that never raise.

Every bound is tested at the bound and past it; every malformed class gives the default.
"""

from __future__ import annotations

import pytest

from schemas import contracts
from schemas.codec import headers_to_dict
from schemas.deadletter import dead_letter_headers
from schemas.headers import (
    MAX_ATTEMPTS,
    MAX_NUMBER_CHARS,
    MAX_OFFSET,
    MAX_PARTITION,
    header_float,
    header_int,
    is_internal,
    strip_internal,
)


@pytest.mark.parametrize(
    "name",
    [
        "dlq_topic",
        "dlq_attempts",
        "dlq_",
        "DLQ_Topic",
        "retry_due_at",
        "retry_attempt",
        "Retry_Reason",
        "retry_anything",
        "replay",
        "REPLAY",
    ],
)
def test_internal_names(name: str) -> None:
    assert is_internal(name)


@pytest.mark.parametrize(
    "name", ["ce_id", "ce_type", "content-type", "replayed", "x-replay", "dlq", "retry", ""]
)
def test_outside_names(name: str) -> None:
    assert not is_internal(name)


def test_strip_internal_keeps_the_others_in_order() -> None:
    headers = [
        ("ce_id", b"1"),
        ("dlq_topic", b"distribution.receipts"),
        ("content-type", b"application/json"),
        ("replay", b"0:1"),
        ("retry_due_at", b"1e400"),
        ("ce_type", b"article.published"),
        ("DLQ_ATTEMPTS", b"x"),
    ]
    assert strip_internal(headers) == [
        ("ce_id", b"1"),
        ("content-type", b"application/json"),
        ("ce_type", b"article.published"),
    ]
    assert strip_internal([]) == []


# -- header_int -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "1.5",
        "1e3",
        "NaN",
        "nan",
        "inf",
        "-inf",
        "0x10",
        "1_000",
        "\u0663",
        "7 7",
        "--1",
        "+",
        "1" * (MAX_NUMBER_CHARS + 1),
    ],
)
def test_int_not_an_integer_gives_the_default(raw: str) -> None:
    assert header_int({"n": raw}, "n", 42, 0, 100) == 42


def test_int_missing_gives_the_default_as_given() -> None:
    assert header_int({}, "n", 5, 0, 100) == 5
    assert header_int({}, "n", -1, 0, 100) == -1  # the default is not clamped: callers may use it as "none"


def test_int_within_and_at_the_bounds() -> None:
    assert header_int({"n": "7"}, "n", 0, 0, 100) == 7
    assert header_int({"n": " +7 "}, "n", 0, 0, 100) == 7
    assert header_int({"n": "0"}, "n", 9, 0, 100) == 0
    assert header_int({"n": "100"}, "n", 0, 0, 100) == 100


def test_int_past_the_bounds_is_clamped() -> None:
    assert header_int({"n": "101"}, "n", 0, 0, 100) == 100
    assert header_int({"n": "-1"}, "n", 9, 0, 100) == 0
    assert header_int({"n": "-99999"}, "n", 9, 0, 100) == 0


def test_int_length_bound() -> None:
    assert header_int({"n": "9" * MAX_NUMBER_CHARS}, "n", 0, 0, MAX_OFFSET) == MAX_OFFSET  # at: huge, clamped
    assert header_int({"n": "9" * (MAX_NUMBER_CHARS + 1)}, "n", 0, 0, MAX_OFFSET) == 0  # past: not parsed


# -- header_float -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "abc",
        "NaN",
        "nan",
        "inf",
        "+inf",
        "-inf",
        "Infinity",
        "1e400",
        "-1e400",
        "0x10",
        "1_0",
        "\u0661.5",
        "1.2.3",
        "e5",
        ".",
        "1" * (MAX_NUMBER_CHARS + 1),
    ],
)
def test_float_not_a_finite_number_gives_the_default(raw: str) -> None:
    assert header_float({"t": raw}, "t", 3.5, 0.0, 100.0) == 3.5


def test_float_within_and_at_the_bounds() -> None:
    assert header_float({"t": "12.5"}, "t", 0.0, 0.0, 100.0) == 12.5
    assert header_float({"t": ".5"}, "t", 0.0, 0.0, 100.0) == 0.5
    assert header_float({"t": "5."}, "t", 0.0, 0.0, 100.0) == 5.0
    assert header_float({"t": "1e1"}, "t", 0.0, 0.0, 100.0) == 10.0
    assert header_float({"t": "0"}, "t", 9.0, 0.0, 100.0) == 0.0
    assert header_float({"t": "100"}, "t", 0.0, 0.0, 100.0) == 100.0


def test_float_past_the_bounds_is_clamped() -> None:
    assert header_float({"t": "100.001"}, "t", 0.0, 0.0, 100.0) == 100.0
    assert header_float({"t": "1e308"}, "t", 0.0, 0.0, 100.0) == 100.0
    assert header_float({"t": "-0.001"}, "t", 9.0, 0.0, 100.0) == 0.0
    assert header_float({"t": "-1e308"}, "t", 9.0, 0.0, 100.0) == 0.0


def test_float_length_bound() -> None:
    at = "1" + "0" * (MAX_NUMBER_CHARS - 1)
    assert header_float({"t": at}, "t", 0.0, 0.0, 1e300) == float(at)
    assert header_float({"t": at + "0"}, "t", 0.0, 0.0, 1e300) == 0.0


# -- dead letters -------------------------------------------------------------------------------------


def dl(previous: dict[str, str]) -> dict[str, str]:
    originals = [("ce_id", b"e1"), *((k, v.encode()) for k, v in previous.items())]
    headers = dead_letter_headers(
        originals,
        topic="cms.articles",
        partition=2,
        offset=41,
        reason="not JSON",
        stage="decode",
        now_iso="2026-11-26T01:00:00.000Z",
    )
    out = headers_to_dict(headers)
    contracts.check("deadletter", out)
    assert out["ce_id"] == "e1"
    return out


@pytest.mark.parametrize(
    ("forged", "counted"),
    [
        ("abc", "1"),
        ("", "1"),
        ("1e3", "1"),
        ("NaN", "1"),
        ("-4", "1"),
        ("1.5", "1"),
        ("9" * 200, "1"),
        ("9" * 30, str(MAX_ATTEMPTS)),
    ],
)
def test_forged_attempts_never_raise(forged: str, counted: str) -> None:
    assert dl({"dlq_attempts": forged})["dlq_attempts"] == counted


def test_attempts_count_up_to_the_bound_and_stop_there() -> None:
    assert dl({"dlq_attempts": "3"})["dlq_attempts"] == "4"
    assert dl({"dlq_attempts": str(MAX_ATTEMPTS - 1)})["dlq_attempts"] == str(MAX_ATTEMPTS)
    assert dl({"dlq_attempts": str(MAX_ATTEMPTS)})["dlq_attempts"] == str(MAX_ATTEMPTS)
    assert dl({"dlq_attempts": str(MAX_ATTEMPTS + 1)})["dlq_attempts"] == str(MAX_ATTEMPTS)


def test_a_well_formed_previous_origin_is_kept() -> None:
    got = dl(
        {
            "dlq_topic": "distribution.fanpage.commands",
            "dlq_partition": "1",
            "dlq_offset": "7",
            "dlq_first_seen": "2026-11-20T08:00:00.000Z",
            "dlq_attempts": "1",
        }
    )
    assert (got["dlq_topic"], got["dlq_partition"], got["dlq_offset"]) == (
        "distribution.fanpage.commands",
        "1",
        "7",
    )
    assert got["dlq_first_seen"] == "2026-11-20T08:00:00.000Z" and got["dlq_attempts"] == "2"
    assert (got["dlq_last_topic"], got["dlq_last_offset"]) == ("cms.articles", "2:41")


@pytest.mark.parametrize(
    "forged",
    [
        {"dlq_topic": "a topic with spaces", "dlq_partition": "1", "dlq_offset": "7"},
        {"dlq_topic": "x" * 250, "dlq_partition": "1", "dlq_offset": "7"},
        {"dlq_topic": "distribution.receipts", "dlq_partition": "abc", "dlq_offset": "7"},
        {"dlq_topic": "distribution.receipts", "dlq_partition": "1", "dlq_offset": "1e400"},
        {"dlq_topic": "distribution.receipts"},
        {"dlq_partition": "1", "dlq_offset": "7"},
    ],
)
def test_a_malformed_previous_origin_is_replaced_by_this_place(forged: dict[str, str]) -> None:
    got = dl({**forged, "dlq_first_seen": "2020-01-01T00:00:00Z"})
    assert (got["dlq_topic"], got["dlq_partition"], got["dlq_offset"]) == ("cms.articles", "2", "41")
    assert got["dlq_first_seen"] == "2026-11-26T01:00:00.000Z"


def test_topic_name_bound_and_huge_positions() -> None:
    at = dl({"dlq_topic": "x" * 249, "dlq_partition": str(MAX_PARTITION + 5), "dlq_offset": "9" * 30})
    assert at["dlq_topic"] == "x" * 249
    assert at["dlq_partition"] == str(MAX_PARTITION) and at["dlq_offset"] == str(MAX_OFFSET)


def test_a_malformed_first_seen_is_replaced() -> None:
    got = dl(
        {
            "dlq_topic": "distribution.zalo.commands",
            "dlq_partition": "0",
            "dlq_offset": "0",
            "dlq_first_seen": "yesterday",
        }
    )
    assert (
        got["dlq_topic"] == "distribution.zalo.commands"
        and got["dlq_first_seen"] == "2026-11-26T01:00:00.000Z"
    )
