"""Session-wide fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import SHARED

# The two-person rule (producers/approvals.py) holds every Actual alert over 50 zones or a whole
# province; the tests of other things send such alerts through the doors and expect them on
# alerts.cap, so their processes run with the rule off. The rule's own tests set these values.
os.environ.setdefault("LANTOA_APPROVAL_MAX_ZONES", "1000000")
os.environ.setdefault("LANTOA_APPROVAL_WHOLE_PROVINCE", "0")
# Likewise the status web: the stream workers of other tests serve it open; its access tests
# (tests/unit/streams/test_status_access.py, tests/integration/test_trust.py) set identities.
os.environ.setdefault("LANTOA_STATUS_INSECURE_NO_AUTH", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"shared material not found at {SHARED} (set LANTOA_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """The real broker: LANTOA_KAFKA_BOOTSTRAP (make test / CI start one), else started here."""
    given = os.environ.get("LANTOA_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    from infra.local.kafka.broker import KafkaBroker

    with KafkaBroker() as broker:
        yield broker.bootstrap


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # In CI a skipped test checked nothing: count it as a failure (STYLE: practices 11).
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter else 0
    if os.environ.get("CI") and skipped and exitstatus == 0:
        session.exitstatus = 1
        if reporter:
            reporter.write_line(f"CI: {skipped} skipped test(s) count as failures", red=True)
