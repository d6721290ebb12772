"""Page tokens travel in the Authorization header only: never in a URL (GET reconciliation
included) nor a form body, and never in an exception's reason, even if Graph quotes one back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from consumers.delivery.base import Prior, article_marker
from consumers.delivery.errors import PermanentDeliveryError
from consumers.fanpage.adapter import FanpageAdapter
from infra.local.emulators.graph import GraphEmulator
from schemas.models import Action, Command, IdempotencyKey, Priority, Target
from schemas.secrets import SecretFile, write_secret
from schemas.topics import Channel

PAGE = "1000000001"
TOKEN = "EAAB-page-token-do-not-leak"
APP_SECRET = "app-secret-1"
TARGET = Target("fanpage:test", Channel.FANPAGE, "Trang thử", config={"page_id": PAGE})


def command(uri: str, action: Action = Action.PUBLISH, **payload: str) -> Command:
    return Command(
        IdempotencyKey(uri, 1, Channel.FANPAGE, TARGET.id, action),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        payload or {"message": "Tin thử nghiệm."},
    )


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[tuple[GraphEmulator, FanpageAdapter]]:
    emu = GraphEmulator(pages={PAGE: TOKEN}, app_secret=APP_SECRET, require_proof=True)
    base = await emu.start()
    adapter = FanpageAdapter(
        base,
        "v21.0",
        SecretFile(write_secret(tmp_path / "tokens.json", {PAGE: TOKEN})),
        {TARGET.id: TARGET}.get,
        timeout_s=2.0,
        app_secret=SecretFile(write_secret(tmp_path / "app.json", {"app_secret": APP_SECRET})),
    )
    await adapter.start()
    yield emu, adapter
    await adapter.close()
    await emu.stop()


async def test_every_call_carries_the_token_in_the_header_only(
    rig: tuple[GraphEmulator, FanpageAdapter],
) -> None:
    emu, adapter = rig
    cmd = command("urn:auth:1")
    posted = await adapter.deliver(cmd, Prior())
    assert posted.outcome == "delivered"
    # An unknown outcome: reconciliation GETs the page feed (the call that used to put the token
    # in the query string) and finds the post by its marker.
    found = await adapter.reconcile(cmd, Prior(unknown_command_id="c1"))
    assert found is not None and found.external_id == posted.external_id
    deleted = await adapter.deliver(
        command("urn:auth:1", Action.RETRACT, reason="x"), Prior(external_id=posted.external_id, version=1)
    )
    assert deleted.outcome == "deleted"
    assert emu.token_places["header"] >= 3
    assert emu.token_places["query"] == 0 and emu.token_places["body"] == 0
    assert article_marker("urn:auth:1") in emu.post(posted.external_id).message


async def test_the_emulator_takes_the_header_forms_graph_takes(
    rig: tuple[GraphEmulator, FanpageAdapter],
) -> None:
    emu, _ = rig
    url = f"{emu.base_url}/v21.0/{PAGE}"
    proof = {"appsecret_proof": emu.proof(TOKEN)}
    async with aiohttp.ClientSession() as http:
        for header, status in (
            (f"Bearer {TOKEN}", 200),
            (f"OAuth {TOKEN}", 200),
            ("Bearer ", 400),
            (f"Basic {TOKEN}", 400),
            ("Bearer not-a-token", 400),
        ):
            async with http.get(url, params=proof, headers={"Authorization": header}) as resp:
                body = await resp.json()
                assert resp.status == status, (header, body)
                if status == 400:
                    assert body["error"]["code"] in (104, 190)
    assert emu.token_places["header"] == 3  # the two good ones and the unknown token


async def test_a_token_quoted_back_by_graph_never_reaches_the_reason(
    rig: tuple[GraphEmulator, FanpageAdapter],
) -> None:
    emu, adapter = rig
    emu.faults.add("error", path="/feed$", count=1, code=100, message=f"Invalid parameter near {TOKEN}")
    with pytest.raises(PermanentDeliveryError) as caught:
        await adapter.deliver(command("urn:auth:2"), Prior())
    assert TOKEN not in caught.value.reason and "[token]" in caught.value.reason
