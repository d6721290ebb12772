"""Sequential publishes through PublishClient (each one acknowledged, with its audit record):
run once on a checkout before the audit trail and once after, against the same broker.

    .venv/bin/python -m infra.local.testenv -- .venv/bin/python -m bench.publish_audit
"""

from __future__ import annotations

import os
import time
import uuid

from infra.kafka.topics import apply_topics
from producers.client import PublishClient
from schemas.settings import Settings

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.environ.get("LANTOA_SHARED_DIR", os.path.join(os.path.dirname(ROOT), "shared"))
SAMPLE = os.path.join(SHARED, "samples", "articles")


def main(n: int = 300) -> None:
    settings = Settings.from_env({**os.environ, "LANTOA_TOPIC_PREFIX": f"pb{uuid.uuid4().hex[:6]}."})
    apply_topics(settings)
    first = sorted(f for f in os.listdir(SAMPLE) if f.endswith(".json"))[0]
    with open(os.path.join(SAMPLE, first), "rb") as f:
        raw = f.read()
    with PublishClient(settings) as client:
        for _ in range(20):  # warm-up: metadata, connections
            client.publish(raw)
        started = time.perf_counter()
        for _ in range(n):
            client.publish(raw)
        took = time.perf_counter() - started
    print(f"{n / took:.0f} publishes/s ({took / n * 1000:.2f} ms each, {n} sequential, acks=all)")


if __name__ == "__main__":
    main()
