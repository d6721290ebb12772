"""Who did it travels with the event (issue 15, item 4): ce_actor on cms.articles and alerts.cap
becomes the commands' and receipts' ``actor``; a forged or broken header is refused with the reason
(a dead letter), an absent one is recorded as unattributed."""

from __future__ import annotations

import pytest

from schemas import contracts
from schemas.audit import UNATTRIBUTED
from schemas.errors import InvalidContent
from schemas.models import Action, Command, IdempotencyKey, Priority, Receipt
from schemas.topics import Channel
from streams.articles.intake import cloud_event
from streams.steps import alert_actor

HEADERS = {
    "ce_specversion": "1.0",
    "ce_id": "e-1",
    "ce_source": "urn:lantoa:cms",
    "ce_type": "article.published",
    "ce_time": "2026-12-04T01:00:00Z",
    "ce_dataschema": "https://iptc.org/std/ninjs/ninjs-schema_2.1.json",
}


def test_the_actor_header_is_read_checked_or_defaulted() -> None:
    assert cloud_event({**HEADERS, "ce_actor": "editor-lan"}).actor == "editor-lan"
    assert cloud_event(HEADERS).actor == UNATTRIBUTED
    for forged in ("<script>", "editor lan", "x" * 201, "-leading-dash", "biên-tập"):
        with pytest.raises(InvalidContent, match="ce_actor"):
            cloud_event({**HEADERS, "ce_actor": forged})


def test_an_alert_with_a_forged_actor_is_refused() -> None:
    assert alert_actor([("ce_actor", b"nchmf")]) == "nchmf"
    assert alert_actor([]) == UNATTRIBUTED
    for forged in (b"\xff\xfe", b"a\nb", b""):
        with pytest.raises(InvalidContent, match="ce_actor"):
            alert_actor([("ce_actor", forged)])


def test_commands_and_receipts_carry_the_actor_within_their_contracts() -> None:
    key = IdempotencyKey("urn:a:1", 1, Channel.FANPAGE, "fanpage:p", Action.PUBLISH)
    cmd = Command(key, Priority.NORMAL, "2026-12-04T01:00:00Z", {"message": "x"}, actor="editor-lan")
    raw = cmd.to_dict()
    contracts.check("command", raw)
    assert Command.from_dict(raw).actor == "editor-lan"
    assert "actor" not in Command(key, Priority.NORMAL, "2026-12-04T01:00:00Z", {"message": "x"}).to_dict()
    receipt = Receipt("urn:a:1", "delivery", "delivered", "2026-12-04T01:00:01Z", 1, actor="editor-lan")
    contracts.check("receipt", receipt.to_dict())
    assert receipt.to_dict()["actor"] == "editor-lan"
    # the receipt id is the step's, whoever caused it: replays and dedupe are unchanged
    assert (
        receipt.receipt_id
        == Receipt("urn:a:1", "delivery", "delivered", "2026-12-04T01:00:01Z", 1).receipt_id
    )
    with pytest.raises(InvalidContent):
        contracts.check("command", {**raw, "actor": "<b>forged</b>"})
