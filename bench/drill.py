"""Fault drill: kill -9 every worker type, restart the broker, take S3 away, let the platforms fail.

    python -m bench.drill [--short] [--seed N] [--cluster] [--adapters N]   (make drill [DRILL_ARGS=...])

The drill owns its broker (a fresh ``KafkaBroker``, never LANTOA_KAFKA_BOOTSTRAP: it restarts it),
or with ``--cluster`` a three-node KRaft cluster (infra/local/kafka/cluster.py: replication factor 3,
``min.insync.replicas`` 2), and its S3 server, and runs the whole pipeline as processes
(bench/pipeline.py's stack): the stream worker and ``adapter_processes`` adapters per channel in
one consumer group (fanpage, Zalo, archive; loudspeaker when it is there).
Articles are published steadily by ``PublishClient`` while, on a seeded random schedule:

- each worker type is killed with SIGKILL ``kills_per_worker`` times and restarted after 0.2-2 s
  (a process that exits by itself is restarted too, and counted as a crash);
- every channel is grown by ``grow_by`` partitions once (``grow_at_s``), as an operator would:
  its adapters stopped (SIGTERM), ``lantoa topics grow CHANNEL N`` (infra/kafka/grow.py: command, retry
  and ledger topics together, the ledger moved), the adapters started again with the new
  ``LANTOA_PARTITIONS``, while the stream worker keeps producing;
- the broker is restarted once (``KafkaBroker.restart()``: same ports and data); with a cluster,
  one member is killed with SIGKILL and brought back ``broker_down_s`` later;
- S3 is unavailable for ``s3_down_s`` (versitygw stopped: connections refused);
- the emulators answer with rate limits, 5xx, replies held past the client timeout (the effect
  done, the outcome unknown) and connections dropped before or after the effect.

Then every (uri, version, channel, target) the routing plan expects must have exactly one effect
at the platforms (fanpage posts and Zalo messages found by the article marker, S3 object versions
of the archived document, bulletins in zone schedules) or a dead letter with its reason, and every
CMS event must have been decided on by the stream worker (no offset committed past an event it
never processed). The counts are printed as JSON and
written to ``test-artifacts/drill[-short].json``: expected, delivered, duplicates, lost,
dead_lettered, plus kills, crashes, faults fired and timings.
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT
from bench.pipeline import Articles, PipelineStack, StackConfig
from infra.kafka import clients
from schemas.settings import KafkaConnection


@dataclass(frozen=True)
class DrillConfig:
    """One drill's size and schedule (times in seconds from the first article)."""

    articles: int = 40  # at least; more until ``min_deliveries`` are expected
    min_deliveries: int = 10_000
    pages: int = 40
    groups: int = 10
    kills_per_worker: int = 10
    publish_over_s: float = 150.0
    adapter_kills_until_s: float = 200.0
    s3_down_at_s: float = 30.0
    s3_down_s: float = 30.0
    broker_restart_at_s: float | None = 95.0  # None: no broker restart (to isolate a fault when diagnosing)
    broker_down_s: float = 15.0  # a cluster member stays down this long
    adapter_processes: int = 2  # per channel, in one consumer group
    cluster: int = 1  # brokers; 3: a KRaft cluster, one member killed mid-run
    grow_at_s: float | None = 120.0  # every channel grown by ``grow_by`` partitions (lantoa topics grow)
    grow_by: int = 2
    deadline_s: float = 900.0
    seed: int = 20261126
    retry_delays: str = "10s=2,1m=5,10m=10"
    fault_probability: dict[str, float] = field(
        default_factory=lambda: {
            "server_error": 0.03,
            "rate_limit": 0.02,
            "timeout": 0.01,
            "drop_after_effect": 0.02,
            "drop_before_effect": 0.01,
        }
    )
    name: str = "drill"


SHORT = DrillConfig(
    articles=20,
    min_deliveries=300,
    pages=12,
    groups=6,
    kills_per_worker=2,
    publish_over_s=40.0,
    adapter_kills_until_s=55.0,
    s3_down_at_s=8.0,
    s3_down_s=20.0,
    broker_restart_at_s=32.0,
    grow_at_s=20.0,
    deadline_s=200.0,
    name="drill-short",
)


def emulator_faults(config: DrillConfig) -> dict[str, list[dict[str, Any]]]:
    """Fault queues for the Graph (page feed) and Zalo (group message) APIs, until the drill ends."""
    p = config.fault_probability
    out: dict[str, list[dict[str, Any]]] = {}
    for which, path in (("graph", "/feed$"), ("zalo", "/group/message$")):
        out[which] = [
            {
                "kind": "server_error",
                "path": path,
                "probability": p["server_error"],
                "count": None,
                **({"code": -1} if which == "zalo" else {}),
            },
            {
                "kind": "rate_limit",
                "path": path,
                "probability": p["rate_limit"],
                "count": None,
                **({"regain_minutes": 0.02} if which == "graph" else {}),
            },
            {"kind": "timeout", "path": path, "probability": p["timeout"], "count": None, "delay_s": 5.0},
            {"kind": "drop_after_effect", "path": path, "probability": p["drop_after_effect"], "count": None},
            {
                "kind": "drop_before_effect",
                "path": path,
                "probability": p["drop_before_effect"],
                "count": None,
            },
        ]
    return out


def kill_schedule(names: list[str], config: DrillConfig, rnd: random.Random) -> list[tuple[float, str]]:
    """(time, worker type) of every kill: the stream worker while articles come in, adapters longer."""
    plan: list[tuple[float, str]] = []
    for name in names:
        until = config.publish_over_s if name == "streams" else config.adapter_kills_until_s
        plan += [(rnd.uniform(5.0, until), name) for _ in range(config.kills_per_worker)]
    return sorted(plan)


def run_drill(config: DrillConfig, workdir: Path | None = None, log: Any = print) -> dict[str, Any]:
    """Run one drill end to end and return its counts (see the module docstring)."""
    from infra.local.kafka.broker import KafkaBroker
    from infra.local.kafka.cluster import KafkaCluster
    from infra.local.s3.versitygw import S3Server, build_versitygw

    build_versitygw()
    workdir = workdir or Path(tempfile.mkdtemp(prefix=f"lantoa-{config.name}-"))
    brokers: Any = (
        KafkaCluster(config.cluster, workdir / "kafka")
        if config.cluster > 1
        else KafkaBroker(workdir / "kafka")
    )
    with brokers as broker, S3Server(workdir / "s3") as s3:
        log(
            f"{config.name}: {'cluster' if config.cluster > 1 else 'broker'} {broker.bootstrap}, S3 {s3.endpoint_url}, "
            f"work dir {workdir}"
        )
        extra_env = (
            {"LANTOA_REPLICATION_FACTOR": str(broker.replication_factor)} if config.cluster > 1 else {}
        )
        stack = PipelineStack(
            broker.bootstrap,
            workdir / "stack",
            s3,
            StackConfig(
                extra_env=extra_env,
                pages=config.pages,
                groups=config.groups,
                retry_delays=config.retry_delays,
                emulator_config={
                    "graph": {"page_call_limit": 10**9, "app_call_limit": 10**9},
                    "zalo": {"quota_limit": 10**9},
                },
            ),
        )
        try:
            return _drill(config, stack, broker, s3, log)
        finally:
            stack.close()


def _drill(config: DrillConfig, stack: PipelineStack, broker: Any, s3: Any, log: Any) -> dict[str, Any]:
    from kafka.errors import KafkaError

    from infra.kafka.tail import TopicTail
    from producers.client import PublishClient
    from schemas.topics import Topic

    rnd = random.Random(config.seed)
    for which, faults in emulator_faults(config).items():
        stack.emus.control(which, "POST", "/_control/faults", {"faults": faults})
    procs = stack.start_workers(config.adapter_processes)
    articles = Articles(f"drill{config.seed}")
    docs: list[dict[str, Any]] = []
    expected: set[tuple[str, int, str, str]] = set()
    while len(docs) < config.articles or len(expected) < config.min_deliveries:
        doc = articles.next()
        docs.append(doc)
        for channel, targets in stack.routes(doc).items():
            expected |= {(doc["uri"], 1, channel, t) for t in targets}
    uris = {d["uri"] for d in docs}
    log(
        f"{config.name}: {len(docs)} articles, {len(expected)} deliveries expected over {[c.value for c in stack.channels]} "
        f"(loudspeaker: {stack.loudspeaker_reason})"
    )

    kills = kill_schedule(list(procs), config, rnd)
    restart_at: dict[str, float] = {}
    receipts = TopicTail(stack.settings.kafka, stack.settings.topic(Topic.RECEIPTS))
    settled: set[tuple[str, int, str, str]] = set()
    fanned_out: set[str] = set()  # uris the stream worker decided on (a fanout or policy receipt)
    events: list[tuple[str, int, int]] = []  # (uri, partition, offset) of every CMS event produced
    timings: dict[str, float] = {}
    client = PublishClient(stack.settings)

    def absorb(records: list[Any]) -> None:
        for rec in records:
            r = orjson.loads(rec.value)
            if r.get("stage") in ("fanout", "policy"):
                fanned_out.add(r["uri"])
            if r.get("stage") == "delivery" and r.get("outcome") in ("delivered", "failed"):
                settled.add((r["uri"], int(r.get("version") or 1), r["channel"], r["target"]))

    sent = 0
    t0 = time.monotonic()
    s3_state = "up"
    member_back: threading.Thread | None = None
    try:
        while True:
            now = time.monotonic() - t0
            # The supervisor: restart what was killed once its delay is over, and what died by itself.
            for name, p in procs.items():
                if name in restart_at:
                    if now >= restart_at[name]:
                        del restart_at[name]
                        p.restart()
                elif not p.alive():
                    log(
                        f"{config.name}: {name} exited by itself at {now:.0f}s (code {p.proc.returncode}); restarting"
                    )
                    p.supervise()
            # The CMS: articles at a steady pace, retried while the broker is away.
            while sent < len(docs) and now >= sent * config.publish_over_s / len(docs):
                try:
                    meta = client.publish(orjson.dumps(docs[sent]), timeout_s=5.0)
                    events.append((meta.uri, meta.partition, meta.offset))
                    sent += 1
                except KafkaError as exc:
                    log(f"{config.name}: publish retried ({type(exc).__name__})")
                    break
            # Faults.
            while kills and kills[0][0] <= now:
                _, name = kills[0]
                if not procs[name].alive():
                    break  # still down from the last kill: this one waits its turn
                kills.pop(0)
                procs[name].kill9()
                restart_at[name] = now + rnd.uniform(0.2, 2.0)
                log(
                    f"{config.name}: {now:.0f}s: kill -9 {name} (#{procs[name].kills}), restart at {restart_at[name]:.0f}s"
                )
            if s3_state == "up" and now >= config.s3_down_at_s:
                s3.pause(mode="stop")
                s3_state, timings["s3_down_at"] = "down", now
            elif s3_state == "down" and now >= config.s3_down_at_s + config.s3_down_s:
                s3.resume()
                s3_state, timings["s3_down_s"] = "back", time.monotonic() - t0 - timings["s3_down_at"]
            restart_at_s = config.broker_restart_at_s
            if restart_at_s is None:
                timings.setdefault("broker_restart_s", -1.0)
            elif config.cluster > 1:
                # One member killed (SIGKILL), back broker_down_s later; the other two keep the
                # quorum and min.insync.replicas, so acks=all writes go on meanwhile.
                if "broker_killed_at" not in timings and now >= restart_at_s:
                    victim = rnd.randrange(config.cluster)
                    broker.kill(victim)
                    timings["broker_killed_at"], timings["broker_victim"] = now, victim
                    log(f"{config.name}: {now:.0f}s: kill -9 broker node {victim + 1}")
                elif (
                    "broker_killed_at" in timings
                    and member_back is None
                    and now >= timings["broker_killed_at"] + config.broker_down_s
                ):
                    # In a thread: the member takes tens of seconds to rejoin, and the supervisor
                    # must go on restarting killed workers meanwhile.
                    member_back = threading.Thread(
                        target=broker.start_member,
                        args=(int(timings["broker_victim"]),),
                        name="broker-member-start",
                    )
                    member_back.start()
                elif (
                    member_back is not None
                    and not member_back.is_alive()
                    and "broker_restart_s" not in timings
                ):
                    timings["broker_restart_s"] = now - timings["broker_killed_at"]
                    log(
                        f"{config.name}: broker node {int(timings['broker_victim']) + 1} back {timings['broker_restart_s']:.1f}s "
                        f"after its kill"
                    )
            elif "broker_restart_s" not in timings and now >= restart_at_s:
                started = time.monotonic()
                broker.restart()
                timings["broker_restart_s"] = time.monotonic() - started
                log(f"{config.name}: broker restarted in {timings['broker_restart_s']:.1f}s at {now:.0f}s")
            if config.grow_at_s is not None and "grown_s" not in timings and now >= config.grow_at_s:
                started = time.monotonic()
                grown = _grow_every_channel(stack, procs, config.grow_by, log)
                timings["grown_s"] = time.monotonic() - started
                timings["grown_to"] = grown  # type: ignore[assignment]
                log(f"{config.name}: {now:.0f}s: channels grown to {grown} in {timings['grown_s']:.1f}s")
            absorb(receipts.poll())  # progress, from the receipts
            done = expected <= settled
            if done and not kills and not restart_at and s3_state == "back" and "broker_restart_s" in timings:
                break
            if now > config.deadline_s:
                log(f"{config.name}: deadline: {len(expected & settled)}/{len(expected)} settled")
                break
            if int(now) % 15 == 0 and int(now) != timings.get("_last_log"):
                timings["_last_log"] = int(now)
                log(
                    f"{config.name}: {now:.0f}s: {sent}/{len(docs)} published, {len(expected & settled)}/"
                    f"{len(expected)} settled, {sum(p.kills for p in procs.values())} kills, S3 {s3_state}"
                )
            time.sleep(0.1)
        timings["settled_s"] = time.monotonic() - t0
        time.sleep(3.0)  # effects of the last batch land, offsets are committed; then nothing moves
        absorb(receipts.poll())
        lag = _lag(broker.bootstrap, stack)  # while the workers are still members of their groups
        intake = _intake(broker.bootstrap, stack, events, fanned_out)
        stack.stop_workers()
    finally:
        client.close()
        receipts.close()
    dead = _dead_letters(broker.bootstrap, stack.settings.topic(Topic.DEADLETTER))
    effects = stack.effect_keys(uris)
    fired = {
        w: stack.emus.control(w, "GET", "/_control/stats").get("faults_fired", {}) for w in ("graph", "zalo")
    }
    counts = _count(expected, effects, dead, settled)
    counts.update(
        kills={n: p.kills for n, p in procs.items()},
        crashes={n: p.crashes for n, p in procs.items()},
        faults_fired=fired,
        broker_restart_s=round(timings.get("broker_restart_s", -1), 1),
        grown_to=timings.get("grown_to", {}),
        grow_s=round(timings.get("grown_s", -1), 1),
        s3_down_s=round(timings.get("s3_down_s", -1), 1),
        settled_after_s=round(timings["settled_s"], 1),
        lag_at_end=lag,
        intake=intake,
        channels=[c.value for c in stack.channels],
        config=asdict(config),
    )
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / f"{config.name}.json").write_text(json.dumps(counts, indent=2, ensure_ascii=False, default=str))
    return counts


def _grow_every_channel(stack: PipelineStack, procs: dict[str, Any], by: int, log: Any) -> dict[str, int]:
    """Grow each channel by ``by`` partitions the way README says to: stop its adapters, run the
    grow (retried while the group still lists a killed member, until its session times out),
    start them again with the new count in ``LANTOA_PARTITIONS``. Returns channel → new count."""
    from dataclasses import replace

    from infra.kafka.grow import GrowRefused, channel_topics, grow_channel
    from schemas.topics import Topic

    grown: dict[str, int] = {}
    overrides = dict(stack.settings.partition_overrides)
    for channel in stack.channels:
        n = stack.settings.partitions(Topic.commands(channel)) + by
        mine = [p for name, p in procs.items() if name.split("#")[0] == channel.value]
        for p in mine:
            if p.alive():
                p.proc.terminate()
                p.proc.wait(timeout=60)
        overrides.update({t.value: n for t in channel_topics(channel)})
        settings = replace(stack.settings, partition_overrides=dict(overrides))
        deadline = time.monotonic() + 60
        while True:
            try:
                report = grow_channel(settings, channel, n)
                break
            except GrowRefused as exc:
                if time.monotonic() > deadline:
                    raise
                log(f"grow {channel.value}: {exc}; again in 2 s")
                time.sleep(2.0)
        log(f"grow {channel.value} -> {n}: {report}")
        stack.settings = settings
        env_value = ",".join(f"{k}={v}" for k, v in overrides.items())
        stack.env["LANTOA_PARTITIONS"] = env_value
        for p in procs.values():
            p.env["LANTOA_PARTITIONS"] = env_value  # the worker too, so every process agrees
        for p in mine:
            p.restart()
        grown[channel.value] = n
    return grown


def _lag(bootstrap: str, stack: PipelineStack) -> dict[str, int]:
    """Records not yet committed per consumer group and input topic at the end: > 0 is a stuck
    partition (or unfinished work) that the counts alone would hide."""
    from kafka import TopicPartition

    from schemas.topics import Topic

    groups = {stack.settings.app_id: stack.settings.topic(Topic.CMS_ARTICLES)}
    for c in stack.channels:
        groups[f"{stack.settings.topic_prefix}lantoa-{c.value}"] = stack.settings.topic(Topic.commands(c))
    out: dict[str, int] = {}
    for group, topic in groups.items():
        consumer = clients.consumer(KafkaConnection(bootstrap), group_id=group, enable_auto_commit=False)
        try:
            tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            end = consumer.end_offsets(tps)
            stuck = {tp.partition: end[tp] - (consumer.committed(tp) or 0) for tp in tps}
            out[topic.removeprefix(stack.settings.topic_prefix)] = sum(stuck.values())
            if any(stuck.values()):
                name = topic.removeprefix(stack.settings.topic_prefix)
                out[name + " by partition"] = stuck  # type: ignore[assignment]
                out[name + " group"] = _group_members(bootstrap, group)  # type: ignore[assignment]
        finally:
            consumer.close()
    return out


def _intake(
    bootstrap: str, stack: PipelineStack, events: list[tuple[str, int, int]], fanned_out: set[str]
) -> dict[str, Any]:
    """What the stream worker did with each CMS event: decided on (a fanout/policy receipt for its
    uri), still waiting (offset not committed: a stuck partition), or **committed without a
    decision** (its offset is behind the group's commit but nothing was produced for it: lost)."""
    from kafka import TopicPartition

    from schemas.topics import Topic

    topic = stack.settings.topic(Topic.CMS_ARTICLES)
    consumer = clients.consumer(
        KafkaConnection(bootstrap), group_id=stack.settings.app_id, enable_auto_commit=False
    )
    try:
        committed = {p: consumer.committed(TopicPartition(topic, p)) or 0 for p in {p for _, p, _ in events}}
    finally:
        consumer.close()
    waiting = [(u, p, o) for u, p, o in events if u not in fanned_out and o >= committed[p]]
    skipped = [(u, p, o) for u, p, o in events if u not in fanned_out and o < committed[p]]
    return {
        "events": len(events),
        "decided": sum(1 for u, _, _ in events if u in fanned_out),
        "not_committed": len(waiting),
        "committed_without_decision": len(skipped),
        "committed_without_decision_examples": [f"{u} p{p}@{o}" for u, p, o in skipped[:6]],
    }


def _group_members(bootstrap: str, group: str) -> dict[str, Any]:
    """State and members (with what they were assigned) of a consumer group, for a stuck one."""
    admin = clients.admin(KafkaConnection(bootstrap), client_id="lantoa-drill-admin")
    try:
        described = admin.describe_groups([group])
    finally:
        admin.close()
    info = described.get(group, described) if isinstance(described, dict) else described
    if isinstance(info, list):
        info = info[0] if info else {}
    text = repr(info)
    return {
        "state": info.get("group_state", info.get("state")) if isinstance(info, dict) else None,
        "raw": text[:3000],
    }


def _dead_letters(bootstrap: str, topic: str) -> dict[tuple[str, int, str, str], str]:
    """(uri, version, channel, target) → reason, for every dead-lettered command."""
    from infra.kafka.tail import TopicTail

    tail = TopicTail(KafkaConnection(bootstrap), topic)
    try:
        records = tail.settle(1.0)
    finally:
        tail.close()
    out: dict[tuple[str, int, str, str], str] = {}
    for rec in records:
        headers = {k: (v or b"").decode("utf-8", "replace") for k, v in rec.headers or []}
        try:
            cmd = orjson.loads(rec.value)
            key = (str(cmd["uri"]), int(cmd["version"]), str(cmd["channel"]), str(cmd["target"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            key = (
                "?",
                0,
                headers.get("dlq_topic", "?"),
                f"{headers.get('dlq_partition')}@{headers.get('dlq_offset')}",
            )
        out[key] = headers.get("dlq_reason", "")
    return out


def _count(
    expected: set[tuple[str, int, str, str]],
    effects: collections.Counter[tuple[str, int, str, str]],
    dead: dict[tuple[str, int, str, str], str],
    settled: set[tuple[str, int, str, str]],
) -> dict[str, Any]:
    delivered = {k for k, n in effects.items() if n >= 1} & expected
    dead_keys = set(dead) & expected
    lost = expected - delivered - dead_keys
    per_channel: dict[str, dict[str, int]] = {}
    for ch in sorted({k[2] for k in expected}):
        exp = {k for k in expected if k[2] == ch}
        per_channel[ch] = {
            "expected": len(exp),
            "delivered": len(delivered & exp),
            "dead_lettered": len(dead_keys & exp),
            "duplicates": sum(effects[k] - 1 for k in exp if effects[k] > 1),
            "lost": len(lost & exp),
        }
    reasons = collections.Counter(reason.split(":")[0][:80] for k, reason in dead.items() if k in expected)
    return {
        "expected": len(expected),
        "delivered": len(delivered),
        "duplicates": sum(n - 1 for k, n in effects.items() if n > 1 and k in expected),
        "lost": len(lost),
        "dead_lettered": len(dead_keys),
        "delivered_and_dead_lettered": len(delivered & dead_keys),
        "dead_letters_without_reason": sum(1 for k, r in dead.items() if k in expected and not r.strip()),
        "unexpected_effects": sum(n for k, n in effects.items() if k not in expected),
        "not_settled_by_receipts": len(expected - settled),
        "per_channel": per_channel,
        "dead_letter_reasons": dict(reasons),
        "lost_examples": sorted(lost)[:5],
        "duplicate_examples": sorted(k for k, n in effects.items() if n > 1)[:5],
    }


def ok(counts: dict[str, Any]) -> bool:
    """The drill's verdict: nothing lost, nothing twice, every dead letter with its reason."""
    return bool(
        counts["lost"] == 0
        and counts["duplicates"] == 0
        and counts["dead_letters_without_reason"] == 0
        and counts["delivered_and_dead_lettered"] == 0
        and counts["unexpected_effects"] == 0
        and counts.get("intake", {}).get("committed_without_decision", 0) == 0
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.drill",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--short", action="store_true", help="the CI form: fewer deliveries and kills")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--cluster", action="store_true", help="three brokers (RF 3, min ISR 2), one killed mid-run"
    )
    parser.add_argument(
        "--adapters", type=int, default=None, help="adapter processes per channel (default 2)"
    )
    ns = parser.parse_args(argv)
    config = SHORT if ns.short else DrillConfig()
    changes: dict[str, Any] = {}
    if ns.seed is not None:
        changes["seed"] = ns.seed
    if ns.cluster:
        changes.update(cluster=3, name=config.name + "-cluster")
    if ns.adapters is not None:
        changes["adapter_processes"] = ns.adapters
    if changes:
        config = DrillConfig(**{**asdict(config), **changes})
    counts = run_drill(config, log=lambda m: print(m, file=sys.stderr, flush=True))
    summary = {k: counts[k] for k in ("expected", "delivered", "duplicates", "lost", "dead_lettered")}
    print(json.dumps(summary))
    print(
        json.dumps(
            {k: v for k, v in counts.items() if k not in summary and k != "config"}, ensure_ascii=False
        )
    )
    return 0 if ok(counts) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
