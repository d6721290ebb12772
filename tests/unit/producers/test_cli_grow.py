"""``lantoa topics grow``: its arguments, before any broker is asked."""

from __future__ import annotations

import pytest

from producers.cli.main import main


@pytest.mark.parametrize(
    "argv", [["topics", "grow"], ["topics", "grow", "zalo"], ["topics", "grow", "zalo", "6", "--dry-run"]]
)
def test_grow_needs_a_channel_and_a_count_and_has_no_dry_run(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    assert "usage: lantoa topics grow CHANNEL|streams N" in capsys.readouterr().err


def test_grow_refuses_an_unknown_channel() -> None:
    with pytest.raises(SystemExit):
        main(["topics", "grow", "telegram", "6"])
