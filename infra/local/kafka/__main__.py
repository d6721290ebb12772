"""``python -m infra.local.kafka``: fetch the jars, start a detached broker, stop it.

    python -m infra.local.kafka fetch [--tools] [--version V] [--cache-dir D]
    python -m infra.local.kafka start --state-file PATH [--data-dir D] [--version V] [--timeout S]
    python -m infra.local.kafka status --state-file PATH
    python -m infra.local.kafka stop --state-file PATH [--timeout S] [--remove-data-dir]

``start`` prints the bootstrap address (``127.0.0.1:<port>``) on stdout and writes
``{"bootstrap", "pid", "data_dir", "log_file"}`` as JSON to the state file; the broker keeps
running after the command exits. ``start`` with a state file whose broker is still alive
prints that broker's address again. ``stop`` sends SIGTERM (SIGKILL after the timeout) and
removes the state file; the data dir is left in place unless ``--remove-data-dir``.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from infra.local.kafka.broker import KafkaBroker, stop_pid
from infra.local.kafka.jars import DEFAULT_VERSION, KafkaBrokerError, fetch_jars
from infra.local.processes import DetachedServer, run_command, write_state_file


def _runs_kafka_on(args: list[str], state: dict[str, Any]) -> bool:
    """The command line runs kafka.Kafka on the state file's data dir."""
    data_dir = str(state.get("data_dir", ""))
    return "kafka.Kafka" in args and any(a.startswith(data_dir) for a in args if data_dir)


BROKER = DetachedServer(
    label="Kafka broker",
    stop_label="broker",
    address_key="bootstrap",
    dir_key="data_dir",
    dir_marker="server.properties",
    owns=_runs_kafka_on,
    stop_pid=stop_pid,
)


def _cmd_fetch(ns: argparse.Namespace) -> int:
    print(fetch_jars(ns.cache_dir, ns.version, tools=ns.tools))
    return 0


def _cmd_start(ns: argparse.Namespace) -> int:
    state_file: Path = ns.state_file
    if BROKER.report_running(state_file):
        return 0
    broker = KafkaBroker(
        ns.data_dir, version=ns.version, start_timeout=ns.timeout, keep_data_dir=True, die_with_parent=False
    )
    broker.start()
    pid = broker.detach()
    state = {
        "bootstrap": broker.bootstrap,
        "pid": pid,
        "data_dir": str(broker.data_dir),
        "log_file": str(broker.log_file),
    }
    write_state_file(state_file, state)
    print(broker.bootstrap)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.kafka",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fetch", help="download the Kafka jars from Maven Central into the cache")
    p.add_argument("--version", default=DEFAULT_VERSION)
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default $LANTOA_CACHE_DIR or ~/.cache/lantoa)",
    )
    p.add_argument(
        "--tools",
        action="store_true",
        help="fetch the kafka-tools classpath (ProducerPerformance, ...) instead",
    )
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser("start", help="start a detached broker; print its bootstrap address")
    p.add_argument("--state-file", type=Path, required=True)
    p.add_argument(
        "--data-dir", type=Path, default=None, help="reused if already formatted (default: a new temp dir)"
    )
    p.add_argument("--version", default=DEFAULT_VERSION)
    p.add_argument("--timeout", type=float, default=90.0, help="readiness timeout, seconds")
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("status", help="print the bootstrap address if running (exit 1 if not)")
    p.add_argument("--state-file", type=Path, required=True)
    p.set_defaults(func=BROKER.cmd_status)

    p = sub.add_parser("stop", help="stop the broker of a state file")
    p.add_argument("--state-file", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait after SIGTERM before SIGKILL")
    p.add_argument(
        "--remove-data-dir",
        action="store_true",
        help="also delete the broker's data dir (only if it holds server.properties)",
    )
    p.set_defaults(func=BROKER.cmd_stop)

    return run_command(parser.parse_args(argv), KafkaBrokerError, logging.WARNING)


if __name__ == "__main__":
    sys.exit(main())
