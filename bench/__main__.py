"""Run the benchmarks against LANTOA_KAFKA_BOOTSTRAP (make bench starts a broker for them)."""

from __future__ import annotations

import os
import sys

from bench.common import Result, write_results

BENCHES = ("fanout",)


def main(argv: list[str]) -> int:
    bootstrap = os.environ.get("LANTOA_KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("set LANTOA_KAFKA_BOOTSTRAP or run through `make bench`", file=sys.stderr)
        return 2
    chosen = argv or list(BENCHES)
    results: list[Result] = []
    for name in chosen:
        module = __import__(f"bench.{name}", fromlist=["run"])
        for result in module.run(bootstrap):
            print(result.line(), flush=True)
            results.append(result)
    if not argv:
        write_results(results, "make bench")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
