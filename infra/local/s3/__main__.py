"""``python -m infra.local.s3``: build versitygw, start a detached server, stop it.

    python -m infra.local.s3 build [--version V] [--cache-dir D]
    python -m infra.local.s3 start --state-file PATH [--data-dir D] [--port P] [--version V]
    python -m infra.local.s3 status --state-file PATH
    python -m infra.local.s3 env --state-file PATH
    python -m infra.local.s3 stop --state-file PATH [--remove-data-dir]

``start`` prints the endpoint (``http://127.0.0.1:<port>``) and writes
``{"endpoint_url", "region", "pid", "root", "log_file", "credentials_file", "version"}`` to the
state file. The root credentials are written only to ``credentials_file`` (mode 0600, AWS
shared-credentials format, profile ``default``) and are never printed: point
``LANTOA_S3_CREDENTIALS_FILE`` (or ``AWS_SHARED_CREDENTIALS_FILE``) at it. A data dir that
already holds a credentials file keeps those credentials. ``env`` prints the ``LANTOA_S3_*``
settings for a shell (no secrets). ``stop`` sends SIGTERM and removes the state file; the data
dir is kept unless ``--remove-data-dir``.
"""

from __future__ import annotations

import argparse
import configparser
import logging
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from infra.local.processes import DetachedServer, read_state_file, run_command, write_state_file
from infra.local.s3.versitygw import (
    BINARY_NAME,
    DEFAULT_VERSION,
    S3Server,
    VersitygwError,
    build_versitygw,
    stop_pid,
)

CREDENTIALS_FILE_NAME = "credentials"


def _runs_versitygw_on(args: list[str], state: dict[str, Any]) -> bool:
    """The command line runs versitygw on the state file's root."""
    root = str(state.get("root", ""))
    return bool(root) and any(a.endswith(BINARY_NAME) for a in args) and any(a.startswith(root) for a in args)


SERVER = DetachedServer(
    label="versitygw",
    stop_label="versitygw",
    address_key="endpoint_url",
    dir_key="root",
    dir_marker=CREDENTIALS_FILE_NAME,
    owns=_runs_versitygw_on,
    stop_pid=stop_pid,
)


def write_credentials_file(path: Path, access_key: str, secret_key: str) -> None:
    """Write an AWS shared-credentials file readable by its owner only (0600 from creation)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".credentials-", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(
                "# versitygw root credentials written by `python -m infra.local.s3 start`\n"
                f"[default]\naws_access_key_id = {access_key}\n"
                f"aws_secret_access_key = {secret_key}\n"
            )
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_credentials_file(path: Path) -> tuple[str, str] | None:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
        section = parser["default"]
        return section["aws_access_key_id"].strip(), section["aws_secret_access_key"].strip()
    except (OSError, KeyError, configparser.Error):
        return None


def _cmd_build(ns: argparse.Namespace) -> int:
    started = time.monotonic()
    path = build_versitygw(ns.cache_dir, ns.version)
    print(path)
    print(f"ready in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return 0


def _cmd_start(ns: argparse.Namespace) -> int:
    state_file: Path = ns.state_file
    if SERVER.report_running(state_file):
        return 0
    root: Path = (ns.data_dir or Path(tempfile.mkdtemp(prefix="lantoa-s3-"))).absolute()
    creds_file = root / CREDENTIALS_FILE_NAME
    known = read_credentials_file(creds_file)
    access_key, secret_key = known if known else (None, None)
    server = S3Server(
        root,
        version=ns.version,
        port=ns.port,
        region=ns.region,
        access_key=access_key,
        secret_key=secret_key,
        start_timeout=ns.timeout,
        keep_data=True,
        die_with_parent=False,
    )
    server.root.mkdir(parents=True, exist_ok=True)
    os.chmod(server.root, 0o700)
    write_credentials_file(creds_file, server.access_key, server.secret_key)
    server.start()
    pid = server.detach()
    state = {
        "endpoint_url": server.endpoint_url,
        "region": server.region,
        "pid": pid,
        "root": str(server.root),
        "log_file": str(server.log_file),
        "credentials_file": str(creds_file),
        "version": ns.version,
    }
    write_state_file(state_file, state)
    print(server.endpoint_url)
    return 0


def _cmd_env(ns: argparse.Namespace) -> int:
    state = read_state_file(ns.state_file)
    if state is None:
        print(f"no state file at {ns.state_file}", file=sys.stderr)
        return 1
    settings = {
        "LANTOA_S3_ENDPOINT": state["endpoint_url"],
        "LANTOA_S3_REGION": state["region"],
        "LANTOA_S3_CREDENTIALS_FILE": state["credentials_file"],
        "LANTOA_S3_ADDRESSING_STYLE": "path",
    }
    for name, value in settings.items():
        print(f"export {name}={shlex.quote(str(value))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m infra.local.s3",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("build", help="go install versitygw into the cache (once)")
    p.add_argument("--version", default=DEFAULT_VERSION)
    p.add_argument(
        "--cache-dir",
        type=Path,
        default=None,
        help="cache root (default $LANTOA_CACHE_DIR or ~/.cache/lantoa)",
    )
    p.set_defaults(func=_cmd_build)

    p = sub.add_parser("start", help="start a detached server; print its endpoint")
    p.add_argument("--state-file", type=Path, required=True)
    p.add_argument("--data-dir", type=Path, default=None, help="server root (default: new temp dir)")
    p.add_argument("--port", type=int, default=None, help="default: a free loopback port")
    p.add_argument("--region", default="us-east-1")
    p.add_argument("--version", default=DEFAULT_VERSION)
    p.add_argument("--timeout", type=float, default=30.0, help="readiness timeout, seconds")
    p.set_defaults(func=_cmd_start)

    p = sub.add_parser("status", help="print the endpoint if running (exit 1 if not)")
    p.add_argument("--state-file", type=Path, required=True)
    p.set_defaults(func=SERVER.cmd_status)

    p = sub.add_parser("env", help="print the LANTOA_S3_* settings as shell exports (no secrets)")
    p.add_argument("--state-file", type=Path, required=True)
    p.set_defaults(func=_cmd_env)

    p = sub.add_parser("stop", help="stop the server of a state file")
    p.add_argument("--state-file", type=Path, required=True)
    p.add_argument("--timeout", type=float, default=10.0)
    p.add_argument(
        "--remove-data-dir",
        action="store_true",
        help="also delete the server's root dir (only if it holds our credentials file)",
    )
    p.set_defaults(func=SERVER.cmd_stop)

    return run_command(parser.parse_args(argv), VersitygwError, logging.INFO)


if __name__ == "__main__":
    sys.exit(main())
