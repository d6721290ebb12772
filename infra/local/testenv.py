"""Start the services the test suite needs, run a command with their addresses, stop them.

    python -m infra.local.testenv -- python -m pytest

Kafka: a real single-node KRaft broker from the Maven Central jars (infra/kafka). The command
gets LANTOA_KAFKA_BOOTSTRAP. Services already given in the environment are used as they are.
The command's exit code is returned; services stop even when it fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import ExitStack

from infra.local.kafka.broker import KafkaBroker


def main(argv: list[str]) -> int:
    if "--" in argv:
        argv = argv[argv.index("--") + 1 :]
    if not argv:
        print("usage: python -m infra.local.testenv -- COMMAND...", file=sys.stderr)
        return 2
    env = dict(os.environ)
    with ExitStack() as stack:
        if not env.get("LANTOA_KAFKA_BOOTSTRAP"):
            broker = stack.enter_context(KafkaBroker())
            env["LANTOA_KAFKA_BOOTSTRAP"] = broker.bootstrap
            print(f"testenv: Kafka {broker.version} at {broker.bootstrap}", flush=True)
        return subprocess.call(argv, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
