"""A progress bar on stderr for long CLI work (bulk publish, replay); stdout stays for results."""

from __future__ import annotations

import sys


def progress(what: str, done: int, total: int, width: int = 30) -> None:
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r{what} [{'#' * filled}{'.' * (width - filled)}] {done}/{total}")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()
