"""The status views show an article's title when its commands carry a payload reference (the
payload stored once, infra/kafka/payloads.py): the title travels beside the reference."""

from __future__ import annotations

from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel
from streams.status.model import StatusFold

URI = "urn:lantoa:article:shared"


def referencing(target: str, title: str | None) -> dict[str, object]:
    doc = Command(
        IdempotencyKey(URI, 1, Channel.LOUDSPEAKER, target, Action.PUBLISH),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {},
    ).to_dict()
    del doc["payload"]
    doc["payload_ref"] = {"partition": 0, "offset": 1, "sha256": "a" * 64, "bytes": 10}
    if title is not None:
        doc["payload_ref"]["title"] = title
    return doc


def test_the_title_beside_a_reference_is_the_articles_title() -> None:
    fold = StatusFold()
    fold.add_command(referencing("zone:1", "Thông báo tiêm chủng"))
    fold.add_command(referencing("zone:2", None))
    article = fold.article(URI)
    assert article is not None and article["title"] == "Thông báo tiêm chủng"
