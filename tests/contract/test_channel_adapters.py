"""One contract suite, run against both platform adapters with their emulators and faults.

Every case ends in exactly one live effect at the emulator, or the error class the runtime maps
to a retry, a pause or a dead letter (shared tester, as apprise does for its plugins).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from consumers.delivery.base import Effect, Prior, article_marker
from consumers.delivery.errors import (
    OutcomeUnknown,
    PermanentDeliveryError,
    TargetPaused,
    TransientDeliveryError,
)
from consumers.fanpage.adapter import FanpageAdapter
from consumers.zalo.adapter import TEXT_LIMIT, ZaloAdapter
from consumers.zalo.tokens import TokenPair, TokenStore
from infra.local.emulators.graph import GraphEmulator
from infra.local.emulators.zalo import ZaloEmulator
from schemas.models import Action, Command, IdempotencyKey, Priority, Target
from schemas.secrets import SecretFile, write_secret
from schemas.topics import Channel

PAGE, GROUP = "100000000000001", "g-000000000000000001"


@dataclass
class Rig:
    """An adapter wired to its emulator, and how to count what is live there."""

    channel: Channel
    target: str
    adapter: Any
    emulator: Any
    live: Callable[[str], list[str]]  # marker → texts of live effects carrying it
    path: str  # regex of the publishing endpoint, for faults

    def command(
        self, uri: str, version: int = 1, action: Action = Action.PUBLISH, text: str = "Tin thử nghiệm."
    ) -> Command:
        payload: dict[str, Any] = (
            {"message": text, "link": "https://tin.example.vn/a/1"}
            if self.channel is Channel.FANPAGE
            else {"text": text}
        )
        if action is Action.RETRACT:
            payload = {"reason": "đính chính"}
        return Command(
            IdempotencyKey(uri, version, self.channel, self.target, action),
            Priority.NORMAL,
            "2026-11-26T01:00:00Z",
            payload,
        )


def prior_from(effect: Effect | None, version: int | None = None) -> Prior:
    if effect is None:
        return Prior()
    return Prior(external_id=effect.external_id, version=version, detail=dict(effect.detail))


@pytest.fixture(params=["fanpage", "zalo"])
async def rig(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Rig]:
    if request.param == "fanpage":
        emu = GraphEmulator(pages={PAGE: "page-token-1"})
        base = await emu.start()
        tokens = tmp_path / "tokens.json"
        write_secret(tokens, {PAGE: "page-token-1"})
        target = Target("fanpage:test", Channel.FANPAGE, "Trang thử", config={"page_id": PAGE})
        adapter = FanpageAdapter(base, "v21.0", SecretFile(tokens), {target.id: target}.get, timeout_s=2.0)

        def live(marker: str) -> list[str]:
            return [p.message for p in emu.posts(PAGE, include_deleted=False) if marker in p.message]

        r = Rig(Channel.FANPAGE, target.id, adapter, emu, live, r"/feed$")
    else:
        emu = ZaloEmulator(groups=[GROUP], access_token="acc-0", refresh_token="ref-0")
        base = await emu.start()
        write_secret(tmp_path / "secret.json", {"secret_key": "lantoa-demo-secret"})
        store = TokenStore(tmp_path / "zalo-tokens.json")
        store.save(TokenPair("acc-0", "ref-0", 4102444800.0))
        target = Target("zalo:test", Channel.ZALO, "Nhóm thử", config={"group_id": GROUP})
        adapter = ZaloAdapter(
            base,
            base,
            "lantoa-demo-app",
            SecretFile(tmp_path / "secret.json"),
            store,
            {target.id: target}.get,
            timeout_s=2.0,
        )

        def live(marker: str) -> list[str]:
            return [m.text or "" for m in emu.messages(GROUP) if marker in (m.text or "")]

        r = Rig(Channel.ZALO, target.id, adapter, emu, live, r"/group/message$")
    await r.adapter.start()
    yield r
    await r.adapter.close()
    await r.emulator.stop()


async def test_publish_makes_exactly_one_effect(rig: Rig) -> None:
    cmd = rig.command("urn:c:1")
    effect = await rig.adapter.deliver(cmd, Prior())
    assert effect.outcome == "delivered" and effect.external_id
    assert len(rig.live(article_marker("urn:c:1"))) == 1


async def test_update_then_retraction(rig: Rig) -> None:
    first = await rig.adapter.deliver(rig.command("urn:c:2"), Prior())
    updated = await rig.adapter.deliver(
        rig.command("urn:c:2", 2, Action.UPDATE, "Bản sửa."), prior_from(first, 1)
    )
    assert updated.outcome == "updated"
    gone = await rig.adapter.deliver(rig.command("urn:c:2", 2, Action.RETRACT), prior_from(updated, 2))
    assert gone.outcome == "deleted"
    texts = rig.live(article_marker("urn:c:2"))
    if rig.channel is Channel.FANPAGE:
        assert texts == []  # the post is deleted
        post = rig.emulator.post(first.external_id)
        assert post.deleted and "Bản sửa." in post.message  # edited in place, then deleted
    else:  # Zalo cannot edit or delete: an update notice, then a correction notice
        assert (
            len(texts) == 3
            and texts[1].startswith("[Cập nhật] Bản sửa.")
            and texts[2].startswith("ĐÍNH CHÍNH")
        )


async def test_retracting_what_never_went_out_does_nothing(rig: Rig) -> None:
    effect = await rig.adapter.deliver(rig.command("urn:c:3", 1, Action.RETRACT), Prior())
    assert effect.outcome == "skipped" and rig.live(article_marker("urn:c:3")) == []


async def test_rate_limit_pauses_the_target(rig: Rig) -> None:
    rig.emulator.faults.add("rate_limit", path=rig.path, count=1)
    with pytest.raises(TargetPaused) as caught:
        await rig.adapter.deliver(rig.command("urn:c:4"), Prior())
    assert caught.value.retry_after > 0
    assert rig.live(article_marker("urn:c:4")) == []


async def test_server_error_is_transient(rig: Rig) -> None:
    rig.emulator.faults.add("server_error", path=rig.path, count=1)
    with pytest.raises(TransientDeliveryError):
        await rig.adapter.deliver(rig.command("urn:c:5"), Prior())
    await rig.adapter.deliver(rig.command("urn:c:5"), Prior())
    assert len(rig.live(article_marker("urn:c:5"))) == 1


async def test_answer_lost_after_the_effect_is_reconciled_not_resent(rig: Rig) -> None:
    rig.emulator.faults.add("drop_after_effect", path=rig.path, count=1)
    cmd = rig.command("urn:c:6")
    with pytest.raises(OutcomeUnknown):
        await rig.adapter.deliver(cmd, Prior())
    found = await rig.adapter.reconcile(cmd, Prior(unknown_command_id=cmd.key.command_id()))
    assert found is not None and found.external_id
    assert len(rig.live(article_marker("urn:c:6"))) == 1


async def test_answer_lost_before_the_effect_is_resent_once(rig: Rig) -> None:
    rig.emulator.faults.add("drop_before_effect", path=rig.path, count=1)
    cmd = rig.command("urn:c:7")
    with pytest.raises(OutcomeUnknown):
        await rig.adapter.deliver(cmd, Prior())
    prior = Prior(unknown_command_id=cmd.key.command_id())
    assert await rig.adapter.reconcile(cmd, prior) is None
    await rig.adapter.deliver(cmd, prior)
    assert len(rig.live(article_marker("urn:c:7"))) == 1


async def test_invalid_parameters_are_permanent(rig: Rig) -> None:
    code = 100 if rig.channel is Channel.FANPAGE else -237
    rig.emulator.faults.add("error", path=rig.path, count=1, code=code)
    with pytest.raises(PermanentDeliveryError):
        await rig.adapter.deliver(rig.command("urn:c:8"), Prior())


async def test_expired_token(rig: Rig) -> None:
    cmd = rig.command("urn:c:9")
    if rig.channel is Channel.FANPAGE:
        rig.emulator.expire_token(page_id=PAGE)
        with pytest.raises(TargetPaused) as caught:  # no retry storm: pause and alert
            await rig.adapter.deliver(cmd, Prior())
        assert caught.value.alert
    else:
        rig.emulator.expire_access_token()
        effect = await rig.adapter.deliver(cmd, Prior())  # refreshed once, retried once
        assert effect.outcome == "delivered" and rig.emulator.refresh_count == 1
        stored = rig.adapter.tokens.load()
        assert (
            stored.access_token == rig.emulator.access_token
            and stored.refresh_token == rig.emulator.refresh_token
        )
        await rig.adapter.deliver(rig.command("urn:c:9b"), Prior())
        assert rig.emulator.refresh_count == 1


async def test_zalo_long_text_goes_in_numbered_parts_and_resumes(rig: Rig) -> None:
    if rig.channel is not Channel.ZALO:
        assert rig.channel is Channel.FANPAGE  # Graph takes long posts whole
        long_post = await rig.adapter.deliver(rig.command("urn:c:10", text="Câu. " * 2000), Prior())
        assert long_post.outcome == "delivered"
        return
    text = " ".join(f"Câu số {i} về phương án sơ tán." for i in range(400))
    rig.emulator.faults.add("server_error", path=rig.path, count=1, code=-1)
    cmd = rig.command("urn:c:10", text=text)
    prior = Prior(progress={})
    # First part fails, nothing sent; a retry sends all parts once.
    with pytest.raises(TransientDeliveryError):
        await rig.adapter.deliver(cmd, prior)
    effect = await rig.adapter.deliver(cmd, prior)
    texts = rig.live(article_marker("urn:c:10"))
    assert effect.detail["parts"] == len(texts) > 1
    assert all(len(t) <= TEXT_LIMIT for t in texts)
    assert [t.split(")", 1)[0] for t in texts] == [f"({i}/{len(texts)}" for i in range(1, len(texts) + 1)]
    # A retry of the same command after every part went out sends nothing more.
    await rig.adapter.deliver(cmd, prior)
    assert len(rig.live(article_marker("urn:c:10"))) == len(texts)
