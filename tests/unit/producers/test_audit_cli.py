"""``lantoa audit`` filters without a broker: by subject, actor and time (an age or an RFC 3339 time)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from producers.cli.audit import select, since_time
from schemas.audit import AuditAction, AuditRecord

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
RECORDS = [
    AuditRecord(
        "editor-lan", AuditAction.PUBLISH, "urn:a:1", "cli", {"version": 1}, "2026-12-01T08:00:00.000+00:00"
    ),
    AuditRecord("nchmf", AuditAction.SUBMIT, "VN-1", "cap-http", {}, "2026-12-04T09:00:00.000+00:00"),
    AuditRecord("duty-officer", AuditAction.APPROVE, "VN-1", "cap-http", {}, "2026-12-04T09:05:00.000+00:00"),
    AuditRecord("editor-lan", AuditAction.RETRACT, "urn:a:1", "cli", {}, "2026-12-04T11:30:00.000+00:00"),
]


def test_filters_combine() -> None:
    assert [r.action for r in select(RECORDS, "VN-1", None, None)] == [
        AuditAction.SUBMIT,
        AuditAction.APPROVE,
    ]
    assert [r.action for r in select(RECORDS, None, "editor-lan", None)] == [
        AuditAction.PUBLISH,
        AuditAction.RETRACT,
    ]
    assert [r.actor for r in select(RECORDS, None, None, since_time("3h", NOW))] == [
        "nchmf",
        "duty-officer",
        "editor-lan",
    ]
    assert [r.actor for r in select(RECORDS, "urn:a:1", "editor-lan", since_time("1h", NOW))] == [
        "editor-lan"
    ]
    assert select(RECORDS, "urn:a:1", "nchmf", None) == []
    assert len(select(RECORDS, None, None, since_time("2026-12-04T09:05:00Z", NOW))) == 2


@pytest.mark.parametrize("bad", ["yesterday", "3 h", "-1h", "2026-13-01", ""])
def test_a_bad_since_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        since_time(bad, NOW)
