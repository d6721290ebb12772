"""Run the benchmarks against LANTOA_KAFKA_BOOTSTRAP (make bench starts a broker for them).

    python -m bench [--profile DIR] [NAME...]

Without names every bench in BENCHES runs, in order, and bench/RESULTS.md is rewritten; with
names only those run and nothing is written. ``--profile DIR``: py-spy samples every process of
the pipeline bench over its window (collapsed stacks and a summary in DIR).
"""

from __future__ import annotations

import os
import sys
import time

from bench.common import Result, write_results

# Order matters: passthrough reads the records raw_kafka wrote; rss reads what pipeline left.
BENCHES = ("raw_kafka", "passthrough", "pipeline", "fanout", "alerts", "rss")
# Parts of a bench that can run by name alone (not in BENCHES: their bench runs them).
PARTS = {
    "rss_day": ("rss", "run_schedule_day"),  # the schedule-day figures of bench/rss.py
    "rss_week": ("rss", "run_week"),
}  # rss_mb_loudspeaker_7days, bench/rss.py


def ratio(results: list[Result]) -> list[Result]:
    """pipeline_vs_raw_ratio, from figures of this same run only."""
    by = {r.name: r for r in results}
    if "pipeline_deliveries_s" not in by or "raw_passthrough_msgs_s" not in by:
        return []
    value = by["pipeline_deliveries_s"].value / by["raw_passthrough_msgs_s"].value
    return [
        Result(
            "pipeline_vs_raw_ratio",
            value,
            "ratio",
            ">= 0.5",
            "pipeline_deliveries_s / raw_passthrough_msgs_s",
        )
    ]


def main(argv: list[str]) -> int:
    bootstrap = os.environ.get("LANTOA_KAFKA_BOOTSTRAP")
    if not bootstrap:
        print("set LANTOA_KAFKA_BOOTSTRAP or run through `make bench`", file=sys.stderr)
        return 2
    if argv[:1] == ["--profile"]:
        os.environ["LANTOA_BENCH_PROFILE"] = argv[1]
        argv = argv[2:]
    chosen = argv or list(BENCHES)
    results: list[Result] = []
    load_before = os.getloadavg()
    started = time.monotonic()
    for name in chosen:
        module_name, function = PARTS.get(name, (name, "run"))
        module = __import__(f"bench.{module_name}", fromlist=[function])
        found = getattr(module, function)(bootstrap)
        if name == "pipeline":
            found += ratio(results + found)
        for result in found:
            print(result.line(), flush=True)
            if result.note:
                print(f"  # {result.name}: {result.note}", file=sys.stderr, flush=True)
            results.append(result)
    if not argv:
        load_after = os.getloadavg()
        extra = (
            f"\nWhole run {time.monotonic() - started:.0f}s; machine load average (1/5/15 min) "
            f"{'/'.join(f'{x:.1f}' for x in load_before)} at the start, "
            f"{'/'.join(f'{x:.1f}' for x in load_after)} at the end (the machine is shared: other "
            f"test runs compete for its 2 cores, see the notes).\n"
        )
        write_results(results, "make bench", extra=extra)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
