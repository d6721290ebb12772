"""Session-wide fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import SHARED


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared material not found at {SHARED} (set LANTOA_SHARED_DIR)")
    return SHARED
