"""The webhook replay store: survives a restart, forgets by age, stays bounded on disk and in memory."""

from __future__ import annotations

from pathlib import Path

import pytest

from producers.webhook_seen import COMPACT_MIN_LINES, SeenEvents, SeenStoreBusy


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def lines(path: Path) -> int:
    return len(path.read_bytes().splitlines())


def test_ids_survive_a_reopen_until_their_event_stops_being_accepted(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "seen.jsonl"
    store = SeenEvents(path, 100, clock)
    store.add("fb:1:message", clock.now + 60)
    store.add("zalo:m1", clock.now + 3600)
    store.add("already-past", clock.now - 1)  # refused by the age check anyway: not kept
    store.close()
    clock.now += 30
    store = SeenEvents(path, 100, clock)
    assert "fb:1:message" in store and "zalo:m1" in store and "already-past" not in store
    clock.now += 31  # fb:1 is past its acceptance: forgotten, in memory and on the next open
    assert "fb:1:message" not in store and "zalo:m1" in store
    store.close()
    store = SeenEvents(path, 100, clock)
    assert len(store) == 1 and lines(path) == 1
    store.close()


def test_the_file_is_rewritten_with_the_live_ids_only(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "seen.jsonl"
    store = SeenEvents(path, 100_000, clock)
    for i in range(5 * COMPACT_MIN_LINES):
        store.add(f"id-{i}", clock.now + 10)
        clock.now += 0.01  # about 1,000 ids live at any time
        assert lines(path) <= max(COMPACT_MIN_LINES, 2 * len(store)) + 1
    assert len(store) <= 1001
    store.close()


def test_the_count_is_bounded_and_the_first_to_expire_go_first(tmp_path: Path) -> None:
    clock = Clock()
    store = SeenEvents(tmp_path / "seen.jsonl", 10, clock)
    for i in range(25):
        store.add(f"id-{i}", clock.now + 100 + i)
    assert len(store) <= 10
    assert "id-24" in store and "id-0" not in store
    store.close()
    assert len(SeenEvents(tmp_path / "seen.jsonl", 5, clock)) <= 5


def test_a_line_torn_by_a_crash_is_skipped(tmp_path: Path) -> None:
    clock, path = Clock(), tmp_path / "seen.jsonl"
    store = SeenEvents(path, 100, clock)
    store.add("kept", clock.now + 60)
    store.close()
    with open(path, "ab") as fh:
        fh.write(b'[1800000060.0,"tor')
    store = SeenEvents(path, 100, clock)
    assert "kept" in store and len(store) == 1
    store.close()


def test_one_process_per_store(tmp_path: Path) -> None:
    path = tmp_path / "webhooks" / "seen.jsonl"
    first = SeenEvents(path, 100, Clock())
    with pytest.raises(SeenStoreBusy, match="one lantoa webhooks per LANTOA_DATA_DIR"):
        SeenEvents(path, 100, Clock())
    first.close()
    SeenEvents(path, 100, Clock()).close()


def test_in_memory_only_without_a_path() -> None:
    clock = Clock()
    store = SeenEvents(None, 100, clock)
    store.add("a", clock.now + 1)
    assert "a" in store
    clock.now += 2
    assert "a" not in store


def test_lantoa_webhooks_refuses_a_data_dir_another_receiver_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import argparse

    from producers.cli import questions as questions_cli
    from producers.webhooks import seen_file
    from schemas.secrets import write_secret
    from schemas.settings import Settings

    settings = Settings(data_dir=tmp_path / "data")
    monkeypatch.setattr(questions_cli, "_settings", lambda: settings)
    monkeypatch.setattr(questions_cli, "ensure_kafka", lambda *a, **k: True)
    graph = write_secret(tmp_path / "graph.json", {"app_secret": "s", "verify_token": "v"})
    held = SeenEvents(seen_file(settings), 10, Clock())
    try:
        args = argparse.Namespace(
            graph_secrets=str(graph), zalo_secrets=None, host="127.0.0.1", port=0, state_file=None
        )
        assert questions_cli.cmd_webhooks(args) == 78
    finally:
        held.close()
    assert "another process holds" in capsys.readouterr().err
