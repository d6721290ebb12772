"""Integration fixtures: the real Kafka broker (started once per session) and a running stream app.

Set LANTOA_KAFKA_BOOTSTRAP to use a broker that is already running (CI starts one with
`python -m infra.local.kafka start`); otherwise a broker is started from the Maven Central jars.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.kafka.tail import TopicTail
from infra.kafka.topics import apply_topics
from producers.client import PublishClient
from producers.targets import load_targets
from schemas.settings import Settings
from schemas.topics import Topic

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


TopicReader = TopicTail


class Pipeline:
    """A stream-app worker subprocess on its own topic prefix, plus readers for its outputs."""

    def __init__(self, bootstrap: str, tmp: Path) -> None:
        prefix = f"t{uuid.uuid4().hex[:8]}."
        self.env = {
            **os.environ,
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_WEB_PORT": "0",
            "LANTOA_DATA_DIR": str(tmp),
            "LANTOA_EMBARGO_CHECK_INTERVAL_S": "0.5",
        }
        self.settings = Settings.from_env(self.env)
        apply_topics(self.settings)
        load_targets(self.settings)
        self.log_path = tmp / "worker.log"
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "producers.cli", "worker"],
            cwd=ROOT,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        self.client = PublishClient(self.settings)
        self.readers: dict[Topic, TopicReader] = {}

    def reader(self, topic: Topic) -> TopicReader:
        if topic not in self.readers:
            self.readers[topic] = TopicReader(self.settings.kafka, self.settings.topic(topic))
        return self.readers[topic]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])

    def close(self) -> None:
        self.client.close()
        for r in self.readers.values():
            r.close()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    p = Pipeline(kafka_bootstrap, tmp_path_factory.mktemp("pipeline"))
    try:
        yield p
        assert p.alive(), f"the stream app died:\n{p.log_tail()}"
    finally:
        p.close()
