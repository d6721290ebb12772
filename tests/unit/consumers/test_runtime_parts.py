"""Retry policy, target limiter, Zalo text splitting and token storage, without Kafka."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consumers.delivery.limiter import TargetLimiter
from consumers.delivery.retry import RetryPolicy
from consumers.delivery.runtime import DeliveryRuntime
from consumers.zalo.adapter import TEXT_LIMIT, part_marker, split_text
from consumers.zalo.tokens import TokenPair, TokenStore
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_backoff_is_jittered_and_capped() -> None:
    policy = RetryPolicy(base_s=0.5, cap_s=4.0)
    assert policy.backoff(1, rng=lambda: 1.0) == 0.5
    assert policy.backoff(3, rng=lambda: 1.0) == 2.0
    assert policy.backoff(10, rng=lambda: 1.0) == 4.0
    assert policy.backoff(10, rng=lambda: 0.0) == 0.0


def test_tiers_grow_with_attempts_and_honour_retry_after() -> None:
    policy = RetryPolicy()
    assert policy.tier_for(1, None) == ("10s", 10.0)
    assert policy.tier_for(2, None) == ("1m", 60.0)
    assert policy.tier_for(9, None) == ("10m", 600.0)
    assert policy.tier_for(1, 45.0) == ("1m", 60.0)
    assert policy.tier_for(1, 99999.0) == ("10m", 600.0)
    assert not policy.exhausted(7) and policy.exhausted(8)


def test_limiter_pauses_the_target_not_others() -> None:
    clock = Clock()
    lim = TargetLimiter(clock=clock)
    lim.pause("fanpage:a", 30, "rate limited")
    assert lim.paused_for("fanpage:a") == 30 and lim.paused_for("fanpage:b") == 0
    assert lim.paused_targets() == 1
    clock.now += 31
    assert lim.paused_for("fanpage:a") == 0 and lim.paused_targets() == 0


def test_limiter_follows_usage_signals() -> None:
    clock = Clock()
    lim = TargetLimiter(clock=clock, min_interval_s=0.5)
    assert lim.delay("p") == 0
    lim.record("p")
    assert lim.delay("p") == 0.5 and lim.delay("p") == 0.5  # asking books nothing
    lim.note_usage("p", 96.0)
    assert lim.paused_for("p") == 60.0
    assert lim.paused_for("p", urgent=True) == 0.0  # emergencies are not held by usage
    lim.note_usage("q", 85.0)
    assert lim.delay("q") >= 2.0


def cmd(action: Action, version: int = 1) -> Command:
    return Command(
        IdempotencyKey("urn:x", version, Channel.FANPAGE, "fanpage:a", action),
        Priority.NORMAL,
        "2026-11-26T01:00:00Z",
        {},
    )


def test_superseded_rules() -> None:
    sup = DeliveryRuntime._superseded
    assert sup(cmd(Action.PUBLISH), None) is None
    assert sup(cmd(Action.UPDATE, 1), {"version": 2, "retracted": False}) == "version 2 is already live"
    assert sup(cmd(Action.UPDATE, 3), {"version": 2, "retracted": False}) is None
    assert sup(cmd(Action.PUBLISH, 1), {"version": 1, "retracted": True}) == "retracted at version 1"
    assert sup(cmd(Action.RETRACT, 1), {"version": 1, "retracted": True}) == "already retracted at version 1"
    assert sup(cmd(Action.RETRACT, 1), {"version": 1, "retracted": False}) is None
    # a channel keeping history (the archive) takes late older versions; retractions as before
    assert sup(cmd(Action.UPDATE, 1), {"version": 2, "retracted": False}, True) is None
    assert sup(cmd(Action.PUBLISH, 1), {"version": 2, "retracted": True}, True) is None
    assert (
        sup(cmd(Action.RETRACT, 1), {"version": 1, "retracted": True}, True)
        == "already retracted at version 1"
    )


def test_split_keeps_sentences_and_limits() -> None:
    text = " ".join(f"Câu thứ {i} nói về việc sơ tán dân." for i in range(300))
    parts = split_text(text, TEXT_LIMIT, reserve=48)
    assert len(parts) > 1
    assert all(len(p) <= TEXT_LIMIT - 48 for p in parts)
    assert all(p.endswith(".") for p in parts)
    assert " ".join(parts) == text


@given(st.text(min_size=1, max_size=6000))
def test_split_never_loses_text_or_overflows(text: str) -> None:
    parts = split_text(text, TEXT_LIMIT, reserve=48)
    assert all(len(p) <= TEXT_LIMIT - 48 for p in parts)
    joined = "".join("".join(p.split()) for p in parts)
    assert joined == "".join(text.split())


def test_a_zalo_text_past_the_part_bound_is_refused_before_any_part() -> None:
    from consumers.delivery.base import Prior
    from consumers.delivery.errors import PermanentDeliveryError
    from consumers.zalo.adapter import MAX_PARTS, ZaloAdapter
    from streams.articles.bounds import ZALO_TEXT_MAX_CHARS

    adapter = ZaloAdapter("http://zalo.invalid", "http://oauth.invalid", "app", None, None, lambda _t: None)  # type: ignore[arg-type]

    def command(text: str) -> Command:
        return Command(
            IdempotencyKey("urn:a", 1, Channel.ZALO, "zalo:g", Action.UPDATE),
            Priority.NORMAL,
            "2026-11-26T01:00:00Z",
            {"text": text},
        )

    sentence = "Câu dài nói về việc sơ tán dân khỏi vùng ngập. "
    at_fanout_bound = (sentence * 400)[: ZALO_TEXT_MAX_CHARS - len("[Cập nhật] ")]
    assert len(adapter._parts(command(at_fanout_bound), Prior())) <= MAX_PARTS  # what fan-out lets through
    with pytest.raises(PermanentDeliveryError, match=f"more than the {MAX_PARTS} a group gets"):
        adapter._parts(command(sentence * 600), Prior())


def test_part_markers_differ_by_version_and_index() -> None:
    assert part_marker("urn:a", 1, 1, 2) != part_marker("urn:a", 2, 1, 2) != part_marker("urn:a", 1, 2, 2)


def test_token_store_is_atomic_private_and_never_prints_tokens(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "zalo.json")
    store.save(TokenPair("ACCESS-SECRET", "REFRESH-SECRET", 123.0))
    assert store.load() == TokenPair("ACCESS-SECRET", "REFRESH-SECRET", 123.0)
    assert stat.S_IMODE(os.stat(tmp_path / "zalo.json").st_mode) == 0o600
    assert "SECRET" not in repr(store.load())
    assert [p.name for p in tmp_path.iterdir()] == ["zalo.json"]  # no temp files left behind


async def test_token_lock_is_exclusive(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "zalo.json")
    order: list[str] = []

    async def hold(name: str) -> None:
        async with await store.exclusive():
            order.append(f"{name}+")
            await asyncio.sleep(0.05)
            order.append(f"{name}-")

    await asyncio.gather(hold("a"), hold("b"))
    assert order in (["a+", "a-", "b+", "b-"], ["b+", "b-", "a+", "a-"])
