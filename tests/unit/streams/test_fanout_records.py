"""command_records: the shared payload is serialised once, and every record still decodes to
exactly its command's to_dict()."""

from __future__ import annotations

import orjson

from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.settings import Settings
from schemas.topics import Channel
from streams.articles.fanout import command_records


def test_records_decode_to_their_commands() -> None:
    shared = {"text": "Bản tin \u2014 thử", "parts": [1, 2], "nested": {"a": None}}
    other = {"caption": "khác"}
    cmds = [
        Command(
            IdempotencyKey("urn:a", 2, Channel.LOUDSPEAKER, f"zone:{i}", Action.PUBLISH),
            Priority.NORMAL,
            "2026-11-26T01:00:00Z",
            shared,
            published_at=None,
            event_id="e1",
        )
        for i in range(3)
    ]
    cmds.append(
        Command(
            IdempotencyKey("urn:a", 2, Channel.FANPAGE, "fanpage:x", Action.UPDATE),
            Priority.PRIORITY,
            "2026-11-26T01:00:00Z",
            other,
            event_id="e1",
            test=True,
        )
    )
    settings = Settings(topic_prefix="p.")
    records = command_records(cmds, settings)
    assert [r.topic for r in records] == ["p.distribution.loudspeaker.commands"] * 3 + [
        "p.distribution.fanpage.commands"
    ]
    for cmd, rec in zip(cmds, records, strict=True):
        assert rec.key == cmd.target.encode()
        assert orjson.loads(rec.value or b"") == cmd.to_dict()
