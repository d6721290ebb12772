"""The trust doors at their bounds and one past them: token lengths, actor names, CAP identifier
and sender lengths (they become Kafka keys and audit subjects), and `lantoa audit --since` ages."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from helpers import TYPHOON_ALERT

from producers.cli.audit import since_time
from schemas.access import (
    MAX_TOKEN_CHARS,
    MIN_TOKEN_CHARS,
    AccessError,
    AccessList,
    Role,
    check_actor,
    check_token,
)
from schemas.cap import MAX_ID_CHARS, parse_cap
from schemas.errors import InvalidContent

IDENTIFIER = b"VN-NCHMF-2026-0917-BAO05-01"


def test_token_lengths() -> None:
    assert check_token("t" * MIN_TOKEN_CHARS, "test") == "t" * MIN_TOKEN_CHARS
    with pytest.raises(AccessError, match="shorter"):
        check_token("t" * (MIN_TOKEN_CHARS - 1), "test")
    for size in (MIN_TOKEN_CHARS, MAX_TOKEN_CHARS):
        token = "k" * size
        access = AccessList.single_token(token, "cap-token", [Role.SENDER], "test")
        assert access.authenticate(f"Bearer {token}") is not None, size
    longest = AccessList.single_token("k" * 40, "cap-token", [Role.SENDER], "test")
    assert longest.authenticate("Bearer " + "k" * (MAX_TOKEN_CHARS + 1)) is None
    assert longest.authenticate("Bearer " + "k" * 1_000_000) is None  # not hashed: refused on its length


def test_actor_name_lengths() -> None:
    assert check_actor("a" * 200) == "a" * 200
    with pytest.raises(ValueError):
        check_actor("a" * 201)


@pytest.mark.parametrize("where", ["identifier", "sender"])
def test_cap_identifiers_and_senders_up_to_the_limit(where: str) -> None:
    raw = TYPHOON_ALERT.read_bytes()
    old = IDENTIFIER if where == "identifier" else b"canhbao@nchmf.example.vn"
    at_limit = raw.replace(old, b"x" * MAX_ID_CHARS, 1)
    assert len(getattr(parse_cap(at_limit), where)) == MAX_ID_CHARS
    with pytest.raises(InvalidContent, match=f"{MAX_ID_CHARS}-character limit"):
        parse_cap(raw.replace(old, b"x" * (MAX_ID_CHARS + 1), 1))


def test_a_referenced_identifier_is_bounded_too() -> None:
    raw = TYPHOON_ALERT.read_bytes().replace(b"<msgType>Alert</msgType>", b"<msgType>Cancel</msgType>")
    ref = b"<references>canhbao@nchmf.example.vn,%s,2026-09-17T05:00:00+07:00</references>\n  <info>"
    ok = raw.replace(b"<info>", ref % (b"r" * MAX_ID_CHARS), 1)
    assert parse_cap(ok).references[0].identifier == "r" * MAX_ID_CHARS
    with pytest.raises(InvalidContent, match="references> identifier"):
        parse_cap(raw.replace(b"<info>", ref % (b"r" * (MAX_ID_CHARS + 1)), 1))


def test_since_ages_at_the_edge_of_the_calendar() -> None:
    now = datetime(2026, 12, 4, tzinfo=UTC)
    assert since_time("99999d", now).year == 1753
    with pytest.raises(ValueError, match="before year 1"):
        since_time("999999d", now)
    assert since_time("0001-01-01T00:00:00Z", now).year == 1
    assert since_time("9999-12-31T23:59:59+00:00", now).year == 9999


def test_a_token_too_long_to_be_offered_is_refused_when_read() -> None:
    assert check_token("k" * MAX_TOKEN_CHARS, "test")
    with pytest.raises(AccessError, match="longer"):
        check_token("k" * (MAX_TOKEN_CHARS + 1), "test")
