"""rss_mb_<process>: resident memory of each Lantoa process type after a pipeline run, and after
a full day of schedules for every zone.

VmRSS (and the peak, VmHWM) from ``/proc/<pid>/status`` of the stream worker and of each channel
adapter, read at the end of bench/pipeline.py's steady window, before the processes stop. When
the pipeline bench did not run in this invocation, a short pipeline run is made first.

``rss_mb_<process>_schedule_day`` (the issue's figure, goal <= 300 MB): ``schedule_day()`` runs
``lantoa worker`` and ``lantoa adapter loudspeaker`` as processes against the emulators and
publishes ``DAY_ARTICLES`` national articles through ``PublishClient``: each reaches all 3,321
zones, and their bulletins (about ``BULLETIN_S`` of speech each: the sample article's summary
said ``SUMMARY_REPEATS`` times) fill every zone's windows of the day (the default 2 × 45 min) with
some left over for the next day. Once every loudspeaker command is committed (consumer group
lag 0), the memory of both processes is read; the note says how full the zones' days are (read
back from the platform emulator) and how long it took.

``rss_mb_loudspeaker_7days`` (issue 12, goal <= 300 MB): ``loudspeaker_week()`` does the same for
seven national days in a row (``WEEK_DAYS`` × ``DAY_ARTICLES`` articles × 3,321 zones) through one
loudspeaker adapter process whose clock moves a day ahead before each day (bench/week_adapter.py,
SIGUSR1), and reads its memory once the seventh day is committed. Its ledger then holds a week of
entries: all younger than the horizon (7 days + 1 hour), so this is the most it holds in steady
state; later days are swept as they pass it.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench import pipeline, procstats
from bench.common import Result
from infra.kafka import clients
from schemas.settings import KafkaConnection

SHORT_WINDOW_S = 20.0
DAY_ARTICLES = 22
SUMMARY_REPEATS = 20
BULLETIN_S = 270.0  # measured: ~4.5 min of espeak-ng speech at the default 150 wpm
DAY_TIMEOUT_S = 1800.0
WEEK_DAYS = 7


@dataclass
class ScheduleDay:
    """What ``schedule_day`` measured."""

    rss: dict[str, tuple[float, float]]
    articles: int
    commands: int
    seconds: float
    note: str


LAST_DAY: ScheduleDay | None = None


def _article(template: dict[str, Any], tag: str, i: int) -> dict[str, Any]:
    doc = dict(template)
    doc["uri"] = f"urn:lantoa:bench:day:{tag}:{i:03d}"
    doc["headlines"] = [{"role": "main", "value": f"{template['headlines'][0]['value']} (bản tin {i})"}]
    summary = template["descriptions"][0]["value"]
    doc["descriptions"] = [
        {
            "role": "summary",
            "contentType": "text/plain",
            "value": " ".join(f"Ý {k + 1}. {summary}" for k in range(SUMMARY_REPEATS)),
        }
    ]
    doc["places"] = []  # national: every zone
    return doc


def _lag(bootstrap: str, group: str, topic: str) -> tuple[int, int]:
    """(records in the topic, records not yet committed by the group)."""
    from kafka import TopicPartition

    consumer = clients.consumer(KafkaConnection(bootstrap), group_id=group, enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        end = consumer.end_offsets(tps)
        return sum(end.values()), sum(end[tp] - (consumer.committed(tp) or 0) for tp in tps)
    finally:
        consumer.close()


def _fill(emus: Any) -> str:
    """How full the zones' days are at the platform: slots and seconds per zone and day."""
    import urllib.request

    base = emus.loudspeaker_url
    with urllib.request.urlopen(f"{base}/_control/schedules", timeout=300) as resp:
        docs = orjson.loads(resp.read())["schedules"]
    by_day: dict[str, list[tuple[int, float]]] = {}
    for doc in docs:
        body = doc.get("schedule") or {}
        windows = sum(float(w.get("capacity_s") or 0) for w in body.get("windows") or [])
        used = sum(float(w.get("used_s") or 0) for w in body.get("windows") or [])
        by_day.setdefault(str(doc["date"]), []).append(
            (len(body.get("slots") or []), used / windows if windows else 0.0)
        )
    parts = []
    for day, rows in sorted(by_day.items()):
        slots = [s for s, _ in rows]
        fill = [f for _, f in rows]
        parts.append(
            f"{day}: {len(rows)} zones, slots/zone median {statistics.median(slots):.0f} "
            f"(min {min(slots)}), windows {statistics.median(fill):.0%} used (min {min(fill):.0%})"
        )
    return "; ".join(parts)


def schedule_day(bootstrap: str, articles: int = DAY_ARTICLES) -> ScheduleDay:
    """A full day of schedules for every zone through the stream worker and the loudspeaker
    adapter (see the module docstring); raises TimeoutError when the adapter does not finish."""
    from infra.kafka.topics import apply_topics
    from infra.local.stack import Emulators, Proc
    from producers.client import PublishClient
    from producers.targets import load_targets
    from schemas.settings import Settings
    from schemas.topics import Channel, Topic

    workdir = Path(tempfile.mkdtemp(prefix="lantoa-bench-day-"))
    targets = workdir / "targets.toml"
    pipeline.write_targets(targets, 0, 0)  # the archive only, besides the zones
    emus = Emulators(workdir / "emu", targets)
    procs: dict[str, Any] = {}
    try:
        prefix = f"d{uuid.uuid4().hex[:6]}."
        env = {
            **os.environ,
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_WEB_PORT": "0",
            "LANTOA_DATA_DIR": str(workdir / "data"),
            "LANTOA_TARGETS_FILE": str(targets),
            "LANTOA_RETRY_DELAYS": pipeline.FAST_RETRIES,
            **emus.env,
        }
        settings = Settings.from_env(env)
        apply_topics(settings)
        load_targets(settings)
        procs = {
            "streams": Proc("streams", ["worker"], env, workdir / "streams.log"),
            "loudspeaker": Proc("loudspeaker", ["adapter", "loudspeaker"], env, workdir / "loudspeaker.log"),
        }
        template = orjson.loads(pipeline.TEMPLATE.read_bytes())
        tag = uuid.uuid4().hex[:6]
        started = time.monotonic()
        with PublishClient(settings) as client:
            for i in range(articles):
                client.publish(orjson.dumps(_article(template, tag, i)))
        topic = settings.topic(Topic.commands(Channel.LOUDSPEAKER))
        group = f"{prefix}lantoa-{Channel.LOUDSPEAKER.value}"
        expected = articles * 3321
        while True:
            for p in procs.values():
                if not p.alive():
                    raise RuntimeError(f"{p.name} exited during the schedule day; see {workdir}")
            total, lag = _lag(bootstrap, group, topic)
            if total >= expected and lag == 0:
                break
            if time.monotonic() - started > DAY_TIMEOUT_S:
                raise TimeoutError(
                    f"schedule day unfinished after {DAY_TIMEOUT_S:.0f}s: {total} commands, lag {lag}"
                )
            time.sleep(5.0)
        seconds = time.monotonic() - started
        rss = {name: procstats.rss_mb(p.proc.pid) for name, p in procs.items()}
        note = (
            f"{articles} national articles × 3,321 zones = {total:,} loudspeaker commands, all committed in "
            f"{seconds:.0f}s ({total / seconds:.0f}/s); at the platform: {_fill(emus)}"
        )
        return ScheduleDay(rss, articles, total, seconds, note)
    finally:
        for p in procs.values():
            p.stop()
        emus.close()


def loudspeaker_week(bootstrap: str, days: int = WEEK_DAYS, articles: int = DAY_ARTICLES) -> ScheduleDay:
    """Seven national days through one loudspeaker adapter on a clock a day ahead per day (see the
    module docstring); raises TimeoutError when a day does not finish."""
    import signal
    import subprocess
    import sys

    from infra.kafka.topics import apply_topics
    from infra.local.stack import ROOT, Emulators, Proc
    from producers.client import PublishClient
    from producers.targets import load_targets
    from schemas.settings import Settings
    from schemas.topics import Channel, Topic

    workdir = Path(tempfile.mkdtemp(prefix="lantoa-bench-week-"))
    targets = workdir / "targets.toml"
    pipeline.write_targets(targets, 0, 0)
    emus = Emulators(workdir / "emu", targets)
    streams: Any = None
    adapter: subprocess.Popen[bytes] | None = None
    try:
        prefix = f"w{uuid.uuid4().hex[:6]}."
        env = {
            **os.environ,
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_WEB_PORT": "0",
            "LANTOA_DATA_DIR": str(workdir / "data"),
            "LANTOA_TARGETS_FILE": str(targets),
            "LANTOA_RETRY_DELAYS": pipeline.FAST_RETRIES,
            **emus.env,
        }
        settings = Settings.from_env(env)
        apply_topics(settings)
        load_targets(settings)
        streams = Proc("streams", ["worker"], env, workdir / "streams.log")
        with (workdir / "loudspeaker.log").open("ab") as log_file:
            adapter = subprocess.Popen(
                [sys.executable, "-m", "bench.week_adapter"],
                cwd=ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        template = orjson.loads(pipeline.TEMPLATE.read_bytes())
        topic = settings.topic(Topic.commands(Channel.LOUDSPEAKER))
        group = f"{prefix}lantoa-{Channel.LOUDSPEAKER.value}"
        started = time.monotonic()
        total = 0
        for day in range(days):
            if day:
                adapter.send_signal(signal.SIGUSR1)  # the adapter's clock: one day ahead
            tag = f"{uuid.uuid4().hex[:6]}-d{day}"
            with PublishClient(settings) as client:
                for i in range(articles):
                    client.publish(orjson.dumps(_article(template, tag, i)))
            expected = (day + 1) * articles * 3321
            while True:
                if not streams.alive() or adapter.poll() is not None:
                    raise RuntimeError(f"a process exited during day {day + 1} of the week; see {workdir}")
                total, lag = _lag(bootstrap, group, topic)
                if total >= expected and lag == 0:
                    rss_now, hwm_now = procstats.rss_mb(adapter.pid)
                    print(
                        f"  # week day {day + 1}/{days}: {total:,} commands committed after "
                        f"{time.monotonic() - started:.0f}s; loudspeaker VmRSS {rss_now:.0f} MB (VmHWM {hwm_now:.0f})",
                        file=sys.stderr,
                        flush=True,
                    )
                    break
                if time.monotonic() - started > DAY_TIMEOUT_S * days:
                    raise TimeoutError(
                        f"week unfinished after {time.monotonic() - started:.0f}s: day {day + 1}, "
                        f"{total} commands, lag {lag}"
                    )
                time.sleep(5.0)
        seconds = time.monotonic() - started
        rss = {"loudspeaker": procstats.rss_mb(adapter.pid)}
        if os.environ.get("LANTOA_BENCH_TRACEMALLOC"):
            adapter.send_signal(signal.SIGUSR2)  # bench/week_adapter.py writes where the memory is
            time.sleep(30.0)
        note = (
            f"{days} national days × {articles} articles × 3,321 zones = {total:,} loudspeaker commands through one "
            f"adapter on a clock a day ahead per day, all committed in {seconds:.0f}s"
        )
        return ScheduleDay(rss, articles * days, total, seconds, note)
    finally:
        if adapter is not None and adapter.poll() is None:
            adapter.terminate()
            try:
                adapter.wait(timeout=30)
            except subprocess.TimeoutExpired:
                adapter.kill()
        if streams is not None:
            streams.stop()
        emus.close()


def run_week(bootstrap: str) -> list[Result]:
    """Only the week figure (``python -m bench rss_week``)."""
    week = loudspeaker_week(bootstrap)
    rss, hwm = week.rss["loudspeaker"]
    return [Result("rss_mb_loudspeaker_7days", rss, "MB", "<= 300", f"peak VmHWM {hwm:.0f} MB; {week.note}")]


def schedule_day_rss(bootstrap: str) -> dict[str, tuple[float, float]]:
    """A full day of schedules for every zone → {process: (VmRSS MB, VmHWM MB)}."""
    global LAST_DAY
    LAST_DAY = schedule_day(bootstrap)
    return LAST_DAY.rss


def run(bootstrap: str) -> list[Result]:
    if pipeline.LAST is None:
        pipeline.measure(bootstrap, window_s=SHORT_WINDOW_S)
    snap = pipeline.LAST
    assert snap is not None
    results = [
        Result(
            f"rss_mb_{name}",
            rss,
            "MB",
            "<= 300",
            f"VmRSS after the {snap.seconds:.0f}s pipeline window; peak VmHWM {hwm:.0f} MB",
        )
        for name, (rss, hwm) in snap.rss.items()
    ]
    results += run_schedule_day(bootstrap)
    results += run_week(bootstrap)
    return results


def run_schedule_day(bootstrap: str) -> list[Result]:
    """Only the schedule-day figures (``python -m bench rss_day``)."""
    out: list[Result] = []
    for name, (rss, hwm) in schedule_day_rss(bootstrap).items():
        note = f"after a full day of schedules for every zone; peak VmHWM {hwm:.0f} MB"
        if LAST_DAY is not None:
            note += f"; {LAST_DAY.note}"
        out.append(Result(f"rss_mb_{name}_schedule_day", rss, "MB", "<= 300", note))
    return out
