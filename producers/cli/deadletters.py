"""`lantoa deadletters list | show | replay`: inspect dead letters and send them back.

Replay treats each dead letter as if it were new, and decides per record (a dry run shows the
same decisions, nothing sent):

1. **Where:** only back to the topic it first failed on (``dlq_topic``, written by Lantoa), and only
   when that topic is on the allow-list built from settings (``replay_targets``): the physical
   names of cms.articles, alerts.cap, engagement.inbound, every distribution.<channel>.commands and
   distribution.emergency.commands. Never a retry tier, the dead-letter topic, a ledger, the state
   or receipts; a dead letter naming any other topic is refused, never sent where a header says.
2. **Whether:** the record is validated again as the first reader of that topic would: an article
   by the stream worker's intake (CloudEvents headers, the publish client's ninjs validation, the
   key), a CAP alert by the CAP parser, a command by the command contract and the channel of its
   topic, an emergency by its contract, an engagement event by its schema. Invalid → refused
   with the reason, not sent.
3. **With which headers:** an input record goes back with its outside headers only (internal ones
   stripped, as the intake would strip them anyway), so it starts a new count if it fails again;
   no header an outsider could forge is trusted to carry the count. A command goes back to its
   command topic, which only Lantoa writes, with its dlq_* headers (one more attempt is counted if
   it fails again) and the ``replay`` marker: the only replay marker trusted downstream (the
   runtime retries a command its ledger holds as failed only with it).

Sent records go through the normal, idempotent path: the stream app dedupes by version, the
adapters by their ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from kafka import TopicPartition
from kafka.errors import KafkaError

from infra.kafka import clients
from infra.kafka.payloads import PayloadRef
from producers.audit import AuditLog
from producers.cli.progress import progress as bar
from producers.cli.terminal import printable
from schemas import contracts
from schemas.access import check_actor
from schemas.audit import REPLAYER_HEADER, AuditAction, AuditRecord
from schemas.cap import parse_cap
from schemas.codec import decode, headers_to_dict
from schemas.errors import InvalidContent
from schemas.headers import DLQ_TOPIC, REPLAY, RETRY_PREFIX, strip_internal
from schemas.models import Command
from schemas.settings import Settings
from schemas.text import nfc
from schemas.topics import Channel, Topic
from streams.articles.intake import parse_article_event


@dataclass(frozen=True)
class DeadLetter:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]

    @property
    def meta(self) -> dict[str, str]:
        return headers_to_dict(self.headers)

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"


def read_all(settings: Settings, timeout_s: float = 10.0) -> list[DeadLetter]:
    """Every dead letter still retained on the topic, oldest first per partition."""
    topic = settings.topic(Topic.DEADLETTER)
    consumer = clients.consumer(settings.kafka, group_id=None, enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        end = consumer.end_offsets(tps)
        out: list[DeadLetter] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in tps) and time.monotonic() < deadline:
            for tp, recs in consumer.poll(timeout_ms=300, max_records=5000).items():
                for r in recs:
                    out.append(
                        DeadLetter(tp.partition, r.offset, r.timestamp, r.key, r.value, list(r.headers or []))
                    )
        return sorted(out, key=lambda d: (d.timestamp_ms, d.partition, d.offset))
    finally:
        consumer.close()


def select(
    letters: Iterable[DeadLetter],
    *,
    reason: str | None = None,
    channel: str | None = None,
    stage: str | None = None,
    refs: Iterable[str] = (),
) -> list[DeadLetter]:
    wanted = set(refs)
    out = []
    for d in letters:
        m = d.meta
        if wanted and d.ref not in wanted:
            continue
        if reason and nfc(reason).lower() not in nfc(m.get("dlq_reason", "")).lower():
            continue
        if channel and m.get("dlq_channel", "streams") != channel:
            continue
        if stage and m.get("dlq_stage") != stage:
            continue
        out.append(d)
    return out


def render_list(letters: list[DeadLetter]) -> str:
    """One line per dead letter. Header values are whatever a record carried (a forged one, or a
    reason quoting a hostile key): each is cut and printed with its controls escaped
    (producers/cli/terminal.py), never raw to the operator's terminal."""
    lines = [f"{'ref':>8}  {'first seen':20}  {'att':>3}  {'origin':34}  {'stage':9}  reason"]
    for d in letters:
        m = {k: printable(v) for k, v in d.meta.items()}
        origin = f"{m.get('dlq_topic', '?')}[{m.get('dlq_partition', '?')}]@{m.get('dlq_offset', '?')}"
        lines.append(
            f"{d.ref:>8}  {m.get('dlq_first_seen', '')[:19]:20}  {m.get('dlq_attempts', '1')[:3]:>3}  "
            f"{origin[:34]:34}  {m.get('dlq_stage', '')[:20]:9}  {m.get('dlq_reason', '')[:100]}"
        )
    lines.append(f"{len(letters)} dead letter(s)")
    return "\n".join(lines)


def render_one(d: DeadLetter) -> str:
    out = [f"dead letter {d.ref}", "headers:"]
    out += [f"  {printable(k)}: {printable(v)}" for k, v in d.meta.items()]
    out.append(f"key: {printable(d.key.decode('utf-8', 'replace')) if d.key else None}")
    value: Any
    try:
        value = orjson.dumps(orjson.loads(d.value or b""), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        raw = d.value or b""
        value = f"<{len(raw)} bytes, not JSON> {raw[:200]!r}"
    out.append(f"value:\n{printable(value[:20000], newlines=True)}")
    return "\n".join(out)


class Kind(StrEnum):
    """What a replayable topic carries, and so how a record bound for it is validated again."""

    ARTICLE = "article"
    ALERT = "alert"
    ENGAGEMENT = "engagement"
    COMMAND = "command"
    EMERGENCY = "emergency"


INPUT_KINDS = frozenset({Kind.ARTICLE, Kind.ALERT, Kind.ENGAGEMENT})


@dataclass(frozen=True)
class Destination:
    """A topic replay may send to (physical name), what it carries, and its channel for commands."""

    topic: str
    kind: Kind
    channel: Channel | None = None


def replay_targets(settings: Settings) -> dict[str, Destination]:
    """The allow-list: physical topic name → Destination, for every topic a replay may write."""
    dests = [
        Destination(settings.topic(Topic.CMS_ARTICLES), Kind.ARTICLE),
        Destination(settings.topic(Topic.ALERTS_CAP), Kind.ALERT),
        Destination(settings.topic(Topic.ENGAGEMENT_INBOUND), Kind.ENGAGEMENT),
        Destination(settings.topic(Topic.EMERGENCY_COMMANDS), Kind.EMERGENCY),
    ]
    dests += [Destination(settings.topic(Topic.commands(ch)), Kind.COMMAND, ch) for ch in Channel]
    return {d.topic: d for d in dests}


def revalidate(dest: Destination, letter: DeadLetter) -> None:
    """Validate a dead letter as the first reader of ``dest`` would. Raises InvalidContent with the reason."""
    if dest.kind is Kind.ARTICLE:
        parse_article_event(letter.key, letter.value, headers_to_dict(strip_internal(letter.headers)))
    elif dest.kind is Kind.ALERT:
        parse_cap(letter.value or b"")
    elif dest.kind is Kind.ENGAGEMENT:
        contracts.check("engagement", decode(letter.value))
    elif dest.kind is Kind.EMERGENCY:
        contracts.check("emergency", decode(letter.value))
    else:
        raw = decode(letter.value)
        contracts.check("command", raw)
        if "payload_ref" in raw and "payload" not in raw:
            # Its payload is stored once for many (infra/kafka/payloads.py): the adapter resolves
            # it and dead-letters it again, with the reason, if it has expired meanwhile.
            PayloadRef.from_dict(raw["payload_ref"])
            raw = {**raw, "payload": {}}
            del raw["payload_ref"]
        channel = Command.from_dict(raw).channel
        if channel is not dest.channel:
            raise InvalidContent(f"a {channel.value} command cannot go to {dest.topic}")


@dataclass(frozen=True)
class Decision:
    """What replay does with one dead letter: send ``headers`` to ``topic``, or refuse with ``reason``."""

    letter: DeadLetter
    topic: str | None
    reason: str | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    sent: bool = False

    def line(self, dry_run: bool = False) -> str:
        """One line for the operator: where it went (or would go), or why not."""
        if self.topic is None:
            return f"{self.letter.ref:>8}  refused: {printable(self.reason)}"
        if self.reason is not None:
            return f"{self.letter.ref:>8}  not sent to {self.topic}: {printable(self.reason)}"
        verb = "would send to" if dry_run else ("sent to" if self.sent else "not sent to")
        return f"{self.letter.ref:>8}  {verb} {self.topic}"

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.letter.ref, "topic": self.topic, "sent": self.sent, "reason": self.reason}


def decide(targets: dict[str, Destination], letter: DeadLetter) -> Decision:
    """Where one dead letter may go, after validating it again; refused (with the reason) when it may not.

    Invalid content is a refusal, not an error. Anything else a validator raises (a bug there)
    propagates: replay then stops before sending anything, since every decision is made first.
    """
    origin = letter.meta.get(DLQ_TOPIC, "")
    dest = targets.get(origin)
    if dest is None:
        shown = repr(origin[:100]) if origin else "none"
        return Decision(
            letter,
            None,
            f"origin topic {shown} is not one replay may write "
            "(only the input topics and the command topics)",
        )
    try:
        revalidate(dest, letter)
    except InvalidContent as exc:
        return Decision(letter, None, f"invalid for {dest.topic}: {exc.reason}")
    except (KeyError, TypeError, ValueError) as exc:  # a model rejecting what its contract let through
        return Decision(letter, None, f"invalid for {dest.topic}: {type(exc).__name__}: {exc}")
    if dest.kind in INPUT_KINDS:
        headers = strip_internal(letter.headers)  # as the intake would; a new count if it fails again
    else:
        headers = [(k, v) for k, v in letter.headers if not (k.startswith(RETRY_PREFIX) or k == REPLAY)]
        headers.append((REPLAY, letter.ref.encode()))
    return Decision(letter, dest.topic, headers=tuple(headers))


def replay(
    settings: Settings,
    letters: list[DeadLetter],
    dry_run: bool = False,
    progress: bool = True,
    actor: str | None = None,
) -> list[Decision]:
    """Decide for each dead letter (see the module docstring) and send those allowed; one Decision each.

    A dry run sends nothing and returns the same decisions. A record the broker does not
    acknowledge is reported as not sent with the Kafka error; the others are unaffected.
    Nothing is committed anywhere: the dead letters stay on their topic. With ``actor``, each
    record sent leaves an audit record (replay, subject: the record's key or its dead-letter ref).
    """
    targets = replay_targets(settings)
    decisions = [decide(targets, d) for d in letters]
    sending = [i for i, x in enumerate(decisions) if x.topic is not None]
    if dry_run or not sending:
        return decisions
    producer = clients.producer(
        settings.kafka,
        acks="all",
        enable_idempotence=True,
        max_request_size=4 * 1024 * 1024,
        client_id=f"{settings.client_id}-replay",
    )
    try:
        futures = []
        for n, i in enumerate(sending, start=1):
            x = decisions[i]
            headers = [(k, v) for k, v in x.headers if k != REPLAYER_HEADER]
            if actor is not None:
                headers.append((REPLAYER_HEADER, check_actor(actor).encode()))
            futures.append(producer.send(x.topic, key=x.letter.key, value=x.letter.value, headers=headers))
            if progress:
                bar("replay", n, len(sending))
        producer.flush()
        out = list(decisions)
        for i, f in zip(sending, futures, strict=True):
            x = decisions[i]
            try:
                f.get(timeout=30)
                out[i] = Decision(x.letter, x.topic, headers=x.headers, sent=True)
            except KafkaError as exc:  # reported on this record's line, and the CLI exits non-zero
                out[i] = Decision(x.letter, x.topic, reason=f"{type(exc).__name__}: {exc}", headers=x.headers)
        if actor is not None:
            AuditLog(settings, producer).write_all(
                [
                    AuditRecord(
                        actor,
                        AuditAction.REPLAY,
                        x.letter.key.decode("utf-8", "replace") if x.letter.key else x.letter.ref,
                        "cli",
                        {
                            "ref": x.letter.ref,
                            "topic": x.topic,
                            "reason": x.letter.meta.get("dlq_reason", "")[:500],
                        },
                    )
                    for x in out
                    if x.sent
                ]
            )
        return out
    finally:
        producer.close()
