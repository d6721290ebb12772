"""rss_mb_<process>: resident memory of each Lantoa process type after a pipeline run.

VmRSS (and the peak, VmHWM) from ``/proc/<pid>/status`` of the stream worker and of each channel
adapter, read at the end of bench/pipeline.py's steady window, before the processes stop. When
the pipeline bench did not run in this invocation, a short pipeline run is made first.

TODO(loudspeaker schedules): the issue's ``rss_mb_<process>`` goal (<= 300 MB) is "after a full
day of schedules for every zone": that needs the loudspeaker adapter and the emergency pusher
(the lead's part). Hook: ``schedule_day_rss(bootstrap)`` below should run a day of schedules for
all 3,321 zones through the loudspeaker adapter and return ``{process: (rss, hwm)}``; ``run``
reports it as ``rss_mb_<process>_schedule_day`` as soon as it returns something.
"""

from __future__ import annotations

from bench import pipeline
from bench.common import Result

SHORT_WINDOW_S = 20.0


def schedule_day_rss(bootstrap: str) -> dict[str, tuple[float, float]]:
    """TODO(loudspeaker): a full day of schedules for every zone → {process: (VmRSS MB, VmHWM MB)}."""
    return {}


def run(bootstrap: str) -> list[Result]:
    if pipeline.LAST is None:
        pipeline.measure(bootstrap, window_s=SHORT_WINDOW_S)
    snap = pipeline.LAST
    assert snap is not None
    results = [
        Result(f"rss_mb_{name}", rss, "MB", "<= 300",
               f"VmRSS after the {snap.seconds:.0f}s pipeline window; peak VmHWM {hwm:.0f} MB")
        for name, (rss, hwm) in snap.rss.items()
    ]
    for name, (rss, hwm) in schedule_day_rss(bootstrap).items():
        results.append(Result(f"rss_mb_{name}_schedule_day", rss, "MB", "<= 300",
                              f"after a full day of schedules for every zone; peak {hwm:.0f} MB"))
    return results
