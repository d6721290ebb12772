"""pipeline_deliveries_s: CMS events → stream worker → channel adapters → emulated platforms and S3.

The whole pipeline as it runs in production, each part its own process: ``lantoa worker`` and one
``lantoa adapter <channel>`` per channel, against the broker of this run, the Graph, Zalo and
loudspeaker emulators and a real S3 server (versitygw). Emulators answer at once: no injected faults, no
delays, the Graph usage limits raised out of reach and the Zalo daily quota too. Zalo's per-OA rate
(~20 calls/s, paced by the adapter at 1/0.06 s) is the platform's and stays.

Load: realistic articles (the first sample article, 9 KB, with a new uri, headline and province
per copy: 100 national pages, 20 national groups, the archive and the province's zones) published
by ``PublishClient`` while the run lasts. A feeder keeps every channel fed: a new article goes out
whenever some channel has fewer than ``LOOKAHEAD`` articles of work left, so the stream worker
keeps working during the window instead of front-loading a backlog.

Measured: effects at the platforms, never receipts: fanpage posts and Zalo group messages from
the emulators' request statistics (successful ``POST .../feed`` and ``POST .../group/message``),
archived versions as ``document.json`` objects in the S3 server's data directory, and the
articles' bulletins in the zones' day schedules at the loudspeaker emulator (when that channel is
included, see ``loudspeaker_status``). ``pipeline_deliveries_s`` = effects of all channels in the steady window
(after every channel delivered and ``WARMUP_S`` more seconds) / window length. Per-process CPU
over the window comes along, and with ``--profile DIR`` (``python -m bench --profile DIR
pipeline``) py-spy samples every Lantoa process for the window and the hottest frames of our
code are printed and written to ``DIR/summary.txt``.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT, Result
from bench.procstats import cpu_seconds, machine_busy, pid_listening, profiled, rss_mb, summarize_profile

SHARED = Path(os.environ.get("LANTOA_SHARED_DIR", ROOT.parent / "shared"))
TEMPLATE = SHARED / "samples" / "articles" / "01-2024-11-01-chuyen-doi-so-gan-ket.json"

PAGES, GROUPS = 100, 20
WARMUP_S, WINDOW_S = 5.0, 60.0
LOOKAHEAD = 20  # articles of work queued ahead of the fastest channel: the feeder never starves it
SAMPLE_S = 0.5
LOUDSPEAKER_POLL_S = 5.0
FAST_RETRIES = "10s=1,1m=2,10m=4"


# ------------------------------------------------------------------------------------------------
# Channels
# ------------------------------------------------------------------------------------------------


def loudspeaker_status(emulator_state: dict[str, Any] | None = None) -> tuple[bool, str]:
    """Whether the loudspeaker channel can run here, and why not.

    It is included when the adapter registry has it (``consumers.bootstrap.ADAPTERS``), its
    emulator exists (``infra/local/emulators/loudspeaker.py``) and the running emulators serve it (a
    ``loudspeaker`` entry in their state file, whose env then points the adapter at it).
    """
    from consumers.bootstrap import ADAPTERS
    from schemas.topics import Channel

    if Channel.LOUDSPEAKER not in ADAPTERS:
        return False, "no loudspeaker adapter in consumers.bootstrap.ADAPTERS yet"
    if not (ROOT / "infra" / "local" / "emulators" / "loudspeaker.py").exists():
        return False, "no infra/local/emulators/loudspeaker.py"
    if emulator_state is not None and "loudspeaker" not in emulator_state:
        return False, "infra.local.stack.Emulators does not start the loudspeaker emulator yet"
    return True, "included"


# ------------------------------------------------------------------------------------------------
# The stack: S3, emulators, topics, targets, processes
# ------------------------------------------------------------------------------------------------


@dataclass
class StackConfig:
    """Shape of one run: targets, timeouts, and what the emulators are told to do."""

    pages: int = PAGES
    groups: int = GROUPS
    emulator_config: dict[str, Any] = field(
        default_factory=lambda: {
            "graph": {"page_call_limit": 10**9, "app_call_limit": 10**9},
            "zalo": {"quota_limit": 10**9},
        }
    )
    retry_delays: str = FAST_RETRIES
    session_timeout_ms: int = 6000
    http_timeout_s: float = 3.0
    extra_env: dict[str, str] = field(default_factory=dict)


def page_id(i: int) -> str:
    return f"{300000000000000 + i}"


def group_id(i: int) -> str:
    return f"g-{i:018d}"


def write_targets(path: Path, pages: int, groups: int) -> None:
    """National pages and groups (every article reaches all of them), one archive."""
    lines = ['[[archive]]\nid = "archive:main"\nname = "Lưu trữ"\n']
    lines += [
        f'[[fanpage]]\nid = "fanpage:p{i}"\nname = "Trang {i}"\npage_id = "{page_id(i)}"\nprovinces = []\n'
        for i in range(pages)
    ]
    lines += [
        f'[[zalo]]\nid = "zalo:g{i}"\nname = "Nhóm {i}"\ngroup_id = "{group_id(i)}"\nprovinces = []\n'
        for i in range(groups)
    ]
    path.write_text("\n".join(lines), encoding="utf-8")


class PipelineStack:
    """Everything the pipeline runs against, on one broker: also the fault drill's stack."""

    def __init__(self, bootstrap: str, workdir: Path, s3: Any, config: StackConfig | None = None) -> None:
        from infra.kafka.topics import apply_topics
        from infra.local.s3.__main__ import write_credentials_file
        from infra.local.stack import Emulators
        from producers.targets import load_targets
        from schemas.settings import Settings
        from schemas.topics import Channel

        self.config = config or StackConfig()
        self.workdir = workdir
        self.s3 = s3
        workdir.mkdir(parents=True, exist_ok=True)
        self.targets_file = workdir / "targets.toml"
        write_targets(self.targets_file, self.config.pages, self.config.groups)
        self.emus = Emulators(workdir / "emu", self.targets_file, self.config.emulator_config)
        self.bucket = f"lt-{uuid.uuid4().hex[:12]}"
        creds = workdir / "s3-credentials"
        write_credentials_file(creds, s3.access_key, s3.secret_key)
        prefix = f"p{uuid.uuid4().hex[:6]}."
        self.env = {
            **os.environ,
            "LANTOA_KAFKA_BOOTSTRAP": bootstrap,
            "LANTOA_TOPIC_PREFIX": prefix,
            "LANTOA_APP_ID": f"{prefix}streams",
            "LANTOA_WEB_PORT": "0",
            "LANTOA_DATA_DIR": str(workdir / "data"),
            "LANTOA_TARGETS_FILE": str(self.targets_file),
            "LANTOA_RETRY_DELAYS": self.config.retry_delays,
            "LANTOA_CONSUMER_SESSION_TIMEOUT_MS": str(self.config.session_timeout_ms),
            "LANTOA_HTTP_TIMEOUT_S": str(self.config.http_timeout_s),
            "LANTOA_S3_BUCKET": self.bucket,
            "LANTOA_S3_ENDPOINT": s3.endpoint_url,
            "LANTOA_S3_REGION": s3.region,
            "LANTOA_S3_CREDENTIALS_FILE": str(creds),
            "LANTOA_S3_ADDRESSING_STYLE": "path",
            **self.emus.env,
            **self.config.extra_env,
        }
        self.settings = Settings.from_env(self.env)
        apply_topics(self.settings)
        load_targets(self.settings)
        included, self.loudspeaker_reason = loudspeaker_status(self.emus.state)
        self.channels: list[Channel] = [Channel.FANPAGE, Channel.ZALO, Channel.ARCHIVE]
        if included:
            self.channels.insert(0, Channel.LOUDSPEAKER)
        self.procs: dict[str, Any] = {}
        self._fresh = False
        self._registry: Any = None
        self._loudspeaker_read: tuple[float, int] = (-1e9, 0)

    # -- processes ------------------------------------------------------------------------

    def start_workers(self, adapter_processes: int = 1) -> dict[str, Any]:
        """The stream worker and ``adapter_processes`` adapters per channel (one consumer group
        each: the second and later are named ``<channel>#2``...)."""
        from infra.local.stack import Proc

        specs = [("streams", ["worker"])] + [
            (c.value if i == 1 else f"{c.value}#{i}", ["adapter", c.value])
            for c in self.channels
            for i in range(1, adapter_processes + 1)
        ]
        for name, args in specs:
            self.procs[name] = Proc(name, args, self.env, self.workdir / f"{name}.log")
        return self.procs

    def stop_workers(self) -> None:
        for p in self.procs.values():
            p.stop()

    def close(self) -> None:
        self.stop_workers()
        self.emus.close()

    # -- what a run publishes -------------------------------------------------------------

    def routes(self, doc: dict[str, Any]) -> dict[str, list[str]]:
        """channel → target ids an article reaches, from the same registry the worker loads."""
        from producers.targets import local_registry
        from schemas.article import article_from_ninjs
        from streams.routing import RouteInput, route

        art = article_from_ninjs(doc, "3.1")
        if self._registry is None:
            self._registry = local_registry(self.settings)
        plan = route(RouteInput(art.places, art.subjects), self._registry)
        return {c.value: [t.id for t in plan.get(c, [])] for c in self.channels}

    # -- effects at the platforms -----------------------------------------------------------

    def effect_counts(self, fresh: bool = False) -> dict[str, int]:
        """Effects so far per channel, cheaply (polled every half second during a run); ``fresh``
        reads everything now (the loudspeaker schedules are otherwise read every few seconds)."""
        self._fresh = fresh
        return {c.value: getattr(self, f"_count_{c.value}")() for c in self.channels}

    def _ok_requests(self, which: str, method: str, suffix: str) -> int:
        stats = self.emus.control(which, "GET", "/_control/stats")
        return sum(
            int(v.get("ok", 0))
            for k, v in stats["requests"].items()
            if k.startswith(f"{method} ") and k.endswith(suffix)
        )

    def _count_fanpage(self) -> int:
        return self._ok_requests("graph", "POST", "/feed")

    def _count_zalo(self) -> int:
        return self._ok_requests("zalo", "POST", "/group/message")

    def _count_archive(self) -> int:
        base = self.s3.data_dir / self.bucket / "articles"
        return sum(1 for _ in base.glob("*/v*/document.json")) if base.is_dir() else 0

    def _count_loudspeaker(self) -> int:
        # The schedules of every zone are a big answer from the emulator process that also serves
        # Graph and Zalo: read them at most every LOUDSPEAKER_POLL_S, and fresh for the window's ends.
        now = time.monotonic()
        if self._fresh or now - self._loudspeaker_read[0] >= LOUDSPEAKER_POLL_S:
            self._loudspeaker_read = (now, len(loudspeaker_bulletins(self.emus)))
        return self._loudspeaker_read[1]

    def effect_keys(self, uris: set[str]) -> collections.Counter[tuple[str, int, str, str]]:
        """(uri, version, channel, target) → number of effects found at the platforms (the drill)."""
        from consumers.archive.adapter import article_prefix
        from consumers.delivery.base import article_marker

        found: collections.Counter[tuple[str, int, str, str]] = collections.Counter()
        marker_of = {article_marker(u): u for u in uris}
        page_target = {page_id(i): f"fanpage:p{i}" for i in range(self.config.pages)}
        group_target = {group_id(i): f"zalo:g{i}" for i in range(self.config.groups)}

        def uri_in(text: str) -> str | None:
            for marker, uri in marker_of.items():
                if marker in text:
                    return uri
            return None

        channels = {c.value for c in self.channels}
        if "fanpage" in channels:
            for post in self.emus.control("graph", "GET", "/_control/posts")["posts"]:
                uri = uri_in(post.get("message") or "")
                if uri:
                    found[(uri, 1, "fanpage", page_target[str(post["id"]).split("_")[0]])] += 1
        if "zalo" in channels:
            for msg in self.emus.control("zalo", "GET", "/_control/messages")["messages"]:
                uri = uri_in(msg.get("text") or "")
                if uri:
                    found[(uri, 1, "zalo", group_target[msg["recipient"]])] += 1
        if "archive" in channels:
            versions = self.object_versions()
            for uri in uris:
                n = versions.get(f"{article_prefix('', uri)}v1/document.json", 0)
                if n:
                    found[(uri, 1, "archive", "archive:main")] += n
        if "loudspeaker" in channels:
            for (uri, version, target), bulletins in loudspeaker_bulletins(self.emus).items():
                if uri in uris:
                    found[(uri, version, "loudspeaker", target)] += len(bulletins)
        return found

    def object_versions(self) -> dict[str, int]:
        """key → number of versions in the archive bucket (every write adds one)."""
        import boto3
        from botocore.config import Config

        client = boto3.client(
            "s3",
            endpoint_url=self.s3.endpoint_url,
            region_name=self.s3.region,
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            config=Config(s3={"addressing_style": "path"}),
        )
        counts: collections.Counter[str] = collections.Counter()
        try:
            for page in client.get_paginator("list_object_versions").paginate(Bucket=self.bucket):
                for v in page.get("Versions", []):
                    counts[v["Key"]] += 1
        finally:
            client.close()
        return dict(counts)


def loudspeaker_bulletins(emus: Any) -> dict[tuple[str, int, str], set[str]]:
    """(uri, version, zone target) → the bulletin ids the zone's day schedules hold for it.

    A loudspeaker delivery is the article's bulletin in the zone's schedule (in a slot, or listed
    as unplaced when no window has room: the adapter's effect either way), on any day pushed. One
    bulletin id per (uri, version, zone) is one effect; two would air the same version twice.
    Corrections (a retraction's spoken notice) are not deliveries of the article.
    """
    base = getattr(emus, "loudspeaker_url", None) or (emus.state.get("loudspeaker") or {}).get("base_url")
    if not base:
        return {}
    import urllib.request

    with urllib.request.urlopen(f"{base}/_control/schedules", timeout=60) as resp:
        docs = orjson.loads(resp.read())["schedules"]
    out: dict[tuple[str, int, str], set[str]] = collections.defaultdict(set)
    for doc in docs:
        zone = str(doc["zone"])
        target = f"zone:{int(zone)}" if zone.isdigit() else f"zone:{zone}"
        body = doc.get("schedule") or {}
        for item in [*(body.get("slots") or []), *(body.get("unplaced") or [])]:
            if item.get("correction") or not item.get("uri"):
                continue
            out[(str(item["uri"]), int(item.get("version") or 0), target)].add(str(item.get("bulletin_id")))
    return dict(out)


# ------------------------------------------------------------------------------------------------
# Articles
# ------------------------------------------------------------------------------------------------


class Articles:
    """Copies of a real article, each with its own uri, headline and province."""

    def __init__(self, tag: str) -> None:
        from schemas.registry import province_names

        self.tag = tag
        self.template = orjson.loads(TEMPLATE.read_bytes())
        self.provinces = sorted(province_names())
        self.count = 0

    def next(self) -> dict[str, Any]:
        i = self.count
        self.count += 1
        doc = dict(self.template)
        doc["uri"] = f"urn:lantoa:bench:{self.tag}:{i:05d}"
        doc["headlines"] = [
            {"role": "main", "value": f"{self.template['headlines'][0]['value']} (tin số {i})"}
        ]
        code = self.provinces[i % len(self.provinces)]
        doc["places"] = [{"name": f"Tỉnh {code}", "uri": f"urn:lantoa:place:province:{code}"}]
        return doc


# ------------------------------------------------------------------------------------------------
# Process accounting
# ------------------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    """What the last run left for bench/rss.py: memory of each process at the end."""

    rss: dict[str, tuple[float, float]]
    channels: list[str]
    seconds: float


LAST: Snapshot | None = None


def measure(
    bootstrap: str,
    window_s: float = WINDOW_S,
    profile_dir: Path | None = None,
    config: StackConfig | None = None,
) -> tuple[list[Result], str]:
    """Run the pipeline, feed it, and measure effects/s over the steady window."""
    from infra.local.s3.versitygw import S3Server, build_versitygw

    global LAST
    build_versitygw()
    workdir = Path(tempfile.mkdtemp(prefix="lantoa-bench-pipeline-"))
    with S3Server(workdir / "s3") as s3:
        stack = PipelineStack(bootstrap, workdir / "stack", s3, config)
        try:
            stack.start_workers()
            run = _feed_and_watch(stack, bootstrap, window_s, profile_dir)
        finally:
            stack.close()
    names = [c.value for c in stack.channels]
    span = run["span"]
    per_channel = {ch: run["effects"][ch] / span for ch in names}
    total = sum(per_channel.values())
    LAST = Snapshot(run["rss"], names, span)
    cpu_note = ", ".join(f"{n} {c / span:.2f}" for n, c in run["cpu"].items())
    chans = ", ".join(f"{ch} {r:.1f}/s" for ch, r in per_channel.items())
    excluded = "" if "loudspeaker" in names else f"; loudspeaker not included: {stack.loudspeaker_reason}"
    if run["crashes"]:
        excluded += f"; restarted after crashing: {run['crashes']} (see the notes)"
    lantoa_cpu = sum(c for n, c in run["cpu"].items() if n not in ("kafka", "emulators", "s3", "bench"))
    per_article = run["per_article"]
    results = [
        Result(
            "pipeline_deliveries_s",
            total,
            "deliveries/s",
            "",
            f"effects at emulators/S3 over a {span:.0f}s steady window: {chans}; {run['published']} articles "
            f"published, {sum(per_article.values()):.0f} deliveries each on average{excluded}",
        ),
        Result(
            "pipeline_cpu_cores",
            lantoa_cpu / span,
            "cores",
            "",
            f"CPU over the window (cores): {cpu_note}; whole machine {run['machine']:.0%} busy "
            f"(other tenants included), {run['steal']:.0%} stolen by the hypervisor",
        ),
    ]
    detail = (
        f"channels {names}; per article {per_article}; window {span:.1f}s; CPU {cpu_note}; "
        f"emulator outcomes {run['outcomes']}; work dir {workdir}"
    )
    if profile_dir is not None:
        summaries = [
            summarize_profile(f) for f in sorted(profile_dir.glob("*.txt")) if f.name != "summary.txt"
        ]
        (profile_dir / "summary.txt").write_text("\n\n".join(summaries) + "\n")
        print("\n\n".join(summaries), file=sys.stderr)
    return results, detail


def _feed_and_watch(
    stack: PipelineStack, bootstrap: str, window_s: float, profile_dir: Path | None
) -> dict[str, Any]:
    from producers.client import PublishClient

    procs = stack.procs
    articles = Articles(uuid.uuid4().hex[:6])
    # Provinces have 40 to 170 zones: the mean over one round of the 34 is what an article brings.
    probe = Articles("probe")
    rounds = [stack.routes(probe.next()) for _ in range(len(probe.provinces))]
    per_article = {ch: sum(len(r[ch]) for r in rounds) / len(rounds) for ch in rounds[0]}
    fed = [ch for ch, n in per_article.items() if n]

    def watched() -> dict[str, int]:
        return {n: p.proc.pid for n, p in procs.items()}

    broker = pid_listening(int(bootstrap.split(",")[0].rsplit(":", 1)[1]))
    support = {
        "emulators": stack.emus.proc.pid,
        "s3": stack.s3.pid,
        **({"kafka": broker} if broker else {}),
        "bench": os.getpid(),
    }  # this harness: feeder, effect polling (the loudspeaker schedules are big)
    published = 0
    started = time.monotonic()
    t0: float | None = None
    first: dict[str, int] = {}
    cpu0: dict[str, float] = {}
    busy0 = machine_busy()
    with contextlib.ExitStack() as spy, PublishClient(stack.settings) as client:
        while True:
            now = time.monotonic()
            for p in procs.values():
                if not p.alive():  # as a supervisor would (systemd, Kubernetes); counted and reported
                    p.supervise()
            counts = stack.effect_counts()
            backlog = {ch: published * per_article[ch] - counts[ch] for ch in fed}
            # Keep the fastest channel fed: a slow one (Zalo's per-OA pace) just builds a backlog.
            while min(backlog[ch] / per_article[ch] for ch in fed) < LOOKAHEAD:
                client.publish(orjson.dumps(articles.next()))
                published += 1
                backlog = {ch: b + per_article[ch] for ch, b in backlog.items()}
            if t0 is None and all(counts[ch] > 0 for ch in fed):
                t0 = now + WARMUP_S
            elif t0 is not None and not first and now >= t0:
                first, t0 = stack.effect_counts(fresh=True), time.monotonic()
                pids0 = {**watched(), **support}
                cpu0 = {n: cpu_seconds(pid) for n, pid in pids0.items()}
                busy0 = machine_busy()
                spy.enter_context(profiled(procs, profile_dir, window_s))
            elif first and t0 is not None and now >= t0 + window_s:
                counts = stack.effect_counts(fresh=True)
                span = time.monotonic() - t0
                # A process restarted during the window counts from its new start (the dead one's
                # last seconds are lost: an undercount, flagged by the crash note).
                cpu = {
                    n: cpu_seconds(pid) - (cpu0[n] if pids0[n] == pid else 0.0)
                    for n, pid in {**watched(), **support}.items()
                }
                busy1 = machine_busy()
                rss = {n: rss_mb(pid) for n, pid in watched().items()}
                outcomes = {
                    w: stack.emus.control(w, "GET", "/_control/stats")["outcomes"]
                    for w in ("graph", "zalo", *(["loudspeaker"] if "loudspeaker" in fed else []))
                }
                break
            if now - started > 300 + window_s:
                raise TimeoutError(
                    f"not delivering on every channel after 300 s: {counts}; see {stack.workdir}"
                )
            time.sleep(SAMPLE_S)
    return {
        "span": span,
        "effects": {ch: counts[ch] - first[ch] for ch in counts},
        "cpu": cpu,
        "rss": rss,
        "crashes": {n: p.crashes for n, p in procs.items() if p.crashes},
        "machine": (busy1[0] - busy0[0]) / max(1.0, busy1[2] - busy0[2]),
        "steal": (busy1[1] - busy0[1]) / max(1.0, busy1[2] - busy0[2]),
        "published": published,
        "per_article": per_article,
        "outcomes": outcomes,
    }


def run(bootstrap: str) -> list[Result]:
    profile = os.environ.get("LANTOA_BENCH_PROFILE")
    results, detail = measure(bootstrap, profile_dir=Path(profile) if profile else None)
    print(f"pipeline: {detail}", file=sys.stderr)
    return results
