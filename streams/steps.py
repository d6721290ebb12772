"""What the stream worker does with one input record: the records to produce, nothing sent here.

Each handler takes a consumed record and returns a ``Step``: the records to produce first
(commands, receipts, dead letters, release ticks) and the article-state changes to write once
those are acknowledged. The article state of the record's partition is read and updated in the
``CompactedView`` at once, so later records of the same batch see it; the loop in
streams/processor.py makes both durable, in that order, before it commits the input offsets.
Only ``InvalidContent`` is handled here (dead letter); anything else propagates and stops the
worker without a commit, so the record is replayed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from infra.kafka.compacted import CompactedView
from infra.kafka.loop import InRecord
from infra.kafka.outbox import OutRecord
from infra.kafka.partitioning import partition_for
from schemas import metrics
from schemas.audit import actor_from_headers
from schemas.cap import parse_cap
from schemas.codec import decode, encode, headers_to_dict
from schemas.deadletter import dead_letter_headers
from schemas.errors import InvalidContent
from schemas.headers import strip_internal
from schemas.models import Command, Outcome, Receipt, Stage, utc_now_iso
from schemas.registry import Registry
from schemas.settings import Settings
from schemas.text import bounded, nfc
from schemas.topics import Topic
from streams.alerts.lane import plan_records
from streams.alerts.plan import plan_alert
from streams.articles.fanout import plan, receipt_record
from streams.articles.intake import CE_TYPES, ArticleEvent, parse_article_event
from streams.articles.policy import Decision, decide, due_for_release, publish_now

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

# The uri a dead-letter receipt is filed under is the record's key, which may be anything: no real
# uri is longer (the archive's public URLs stop at 2 kB too), and a key of 800 kB must not make an
# 800 kB receipt (and receipt key). The dead letter itself keeps the key byte for byte.
MAX_RECEIPT_KEY_CHARS = 2048


def key_partition_bytes(key: bytes) -> bytes:
    """The bytes an article key hashes by: its NFC form when it is UTF-8 (articles live under the
    NFC uri: an NFD key names the same article), else the bytes as they are."""
    try:
        return nfc(key.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        return key


@dataclass
class Step:
    """Commands and other records to produce, then the state changes to write after them;
    ``fanned_out`` counts the events that produced commands (their fan-out time is observed once
    they are acked). The commands are encoded by the processor (streams/processor.py), which
    stores a payload many of them share once first (infra/kafka/payloads.py)."""

    out: list[OutRecord] = field(default_factory=list)
    state: list[OutRecord] = field(default_factory=list)
    fanned_out: int = 0
    commands: list[Command] = field(default_factory=list)

    def extend(self, other: Step) -> None:
        self.out.extend(other.out)
        self.state.extend(other.state)
        self.fanned_out += other.fanned_out
        self.commands.extend(other.commands)


def raw_headers(record: InRecord) -> list[tuple[str, bytes]]:
    """The record's headers as (name, bytes) pairs; tolerant of the shapes tools and tests hand in
    (a dict, str values)."""
    headers: Any = record.headers or []
    items = headers.items() if isinstance(headers, dict) else headers
    return [(str(k), v if isinstance(v, bytes) else str(v).encode()) for k, v in items]


class StreamSteps:
    """The per-record logic of the stream worker over one article-state view and one registry."""

    def __init__(
        self, settings: Settings, state: CompactedView, registry: Callable[[], Registry], clock: Clock
    ) -> None:
        self.settings, self.state, self.registry, self.clock = settings, state, registry, clock
        self.deadletter_topic = settings.topic(Topic.DEADLETTER)
        self.releases_topic = settings.topic(Topic.EMBARGO_RELEASES)
        # cms.articles, releases and state share this count (checked at start: StreamWorker.check_partitions).
        self.partitions = settings.partitions(Topic.CMS_ARTICLES)
        self._ticked: dict[tuple[str, int], float] = {}

    # -- shared ----------------------------------------------------------------------------------

    def dead_letter(
        self, rec: Any, reason: str, stage: str, key_text: str | None, now_iso: str
    ) -> list[OutRecord]:
        headers = dead_letter_headers(
            strip_internal(raw_headers(rec)),
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            reason=reason,
            stage=stage,
            now_iso=now_iso,
        )
        out = [OutRecord(self.deadletter_topic, rec.key or b"", rec.value or b"", tuple(headers))]
        if key_text:
            receipt = Receipt(
                uri=bounded(key_text, MAX_RECEIPT_KEY_CHARS),
                stage=Stage.INTAKE,
                outcome=Outcome.DEAD_LETTERED,
                at=now_iso,
                reason=reason,
            )
            out.append(receipt_record(receipt, self.settings))
        metrics.DEAD_LETTERS.labels(stage, metrics.reason_class(reason)).inc()
        return out

    def carry_out(self, partition: int, ev: ArticleEvent, now: datetime, decision: Decision) -> Step:
        now_iso = utc_now_iso(now)
        commands, receipt, refused = plan(decision, ev, self.registry(), self.settings, now_iso)
        step = Step(commands=commands, out=[receipt_record(receipt, self.settings)])
        step.out.extend(receipt_record(r, self.settings) for r in refused)
        for r in refused[:1]:
            log.warning(
                "%s v%s: %d targets refused at fan-out, first %s %s: %s",
                ev.uri,
                ev.version,
                len(refused),
                r.channel,
                r.target,
                r.reason,
            )
        if decision.new_state is not None:
            step.state.append(self.state.record(partition, ev.uri, decision.new_state))
        for cmd in commands:
            metrics.COMMANDS.labels(cmd.channel.value, cmd.key.action.value).inc()
        metrics.EVENTS.labels(ev.ce.type, receipt.outcome).inc()
        if commands:
            step.fanned_out = 1
            log.info(
                "%s v%s: %s, %d commands %s",
                ev.uri,
                ev.version,
                receipt.outcome,
                len(commands),
                receipt.counts,
            )
        else:
            log.info("%s v%s: %s (%s)", ev.uri, ev.version, receipt.outcome, decision.reason)
        return step

    # -- cms.articles --------------------------------------------------------------------------

    def misplaced(self, rec: InRecord) -> OutRecord | None:
        """The record that forwards a revision sitting in the wrong partition to the one its key
        hashes to now (where ``lantoa topics grow streams`` moved the article's state), or None
        when it is in place. Such a revision was queued before a grow, or produced with stale
        metadata; its state is not in this partition, so handling it here would take it for a
        new article. An NFD key is placed by its NFC form, where the article it names lives (a
        retraction typed in NFD would otherwise find no state and retract nothing)."""
        if not rec.key:
            return None
        right = partition_for(key_partition_bytes(rec.key), self.partitions)
        if right == rec.partition:
            return None
        return OutRecord(rec.topic, rec.key, rec.value, tuple(raw_headers(rec)), partition=right)

    def article(self, rec: InRecord) -> Step:
        forward = self.misplaced(rec)
        if forward is not None:
            log.info(
                "%s[%d]@%d forwarded to partition %d (queued before a grow, or keyed in NFD)",
                rec.topic,
                rec.partition,
                rec.offset,
                forward.partition,
            )
            return Step(out=[forward])
        now = self.clock()
        headers = headers_to_dict(strip_internal(raw_headers(rec)))  # only Lantoa sets dlq_*, retry_*, replay
        key_text = nfc(rec.key.decode("utf-8", "replace")) if rec.key else None
        try:
            ev = parse_article_event(rec.key, rec.value, headers)
            st = self.state.get(rec.partition, ev.uri)
            held_json = {"key": ev.uri, "value": (rec.value or b"").decode("utf-8"), "headers": headers}
            return self.carry_out(rec.partition, ev, now, decide(st, ev, now, held_json))
        except InvalidContent as exc:
            stage = "route" if "place" in exc.reason else "validate"
            log.warning("dead letter %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, exc.reason)
            ce_type = headers.get("ce_type", "")
            metrics.EVENTS.labels(ce_type if ce_type in CE_TYPES else "unknown", "dead_lettered").inc()
            return Step(out=self.dead_letter(rec, exc.reason, stage, key_text, utc_now_iso(now)))

    # -- streams.embargo.releases --------------------------------------------------------------

    def release(self, rec: InRecord) -> Step:
        now = self.clock()
        try:
            tick = decode(rec.value)
            uri, version = str(tick["uri"]), int(tick["version"])
        except (InvalidContent, KeyError, TypeError, ValueError) as exc:
            reason = exc.reason if isinstance(exc, InvalidContent) else f"bad release tick: {exc!r}"
            return Step(out=self.dead_letter(rec, reason, "release", None, utc_now_iso(now)))
        st = self.state.get(rec.partition, uri)
        if due_for_release(st, now) != version:
            return Step()  # already released, cancelled or superseded: ticks are idempotent
        assert st is not None
        held = st["held"]["event"]
        ev = parse_article_event(held["key"].encode(), held["value"].encode(), held["headers"])
        released = receipt_record(
            Receipt(
                uri=uri,
                stage=Stage.POLICY,
                outcome=Outcome.RELEASED,
                at=utc_now_iso(now),
                version=version,
                event_id=ev.ce.id,
                actor=ev.ce.actor,
            ),
            self.settings,
        )
        step = self.carry_out(rec.partition, ev, now, publish_now(st, ev))
        step.out.insert(0, released)
        return step

    def embargo_ticks(self) -> list[OutRecord]:
        """Release ticks for held versions whose time has come (each again after 30 s at most)."""
        now, mono = self.clock(), time.monotonic()
        due: list[OutRecord] = []
        for partition in sorted(self.state.owned()):
            for uri, st in self.state.items(partition):
                version = due_for_release(st, now)
                if version is None or mono - self._ticked.get((uri, version), -1e9) < 30.0:
                    continue
                self._ticked[(uri, version)] = mono
                due.append(
                    OutRecord(
                        self.releases_topic,
                        uri.encode(),
                        encode({"uri": uri, "version": version}),
                        partition=partition,
                    )
                )
        if len(self._ticked) > 10000:
            self._ticked = {k: v for k, v in self._ticked.items() if mono - v < 30.0}
        return due

    # -- alerts.cap ----------------------------------------------------------------------------

    def alert(self, rec: InRecord) -> Step:

        now = self.clock()
        headers = headers_to_dict(strip_internal(raw_headers(rec)))  # only Lantoa sets dlq_*, retry_*, replay
        key_text = rec.key.decode("utf-8", "replace") if rec.key else None
        try:
            actor = alert_actor(raw_headers(rec))
            alert = parse_cap(rec.value or b"")
            alert_plan = plan_alert(alert, self.registry())
            records, commands, receipt = plan_records(
                alert,
                alert_plan,
                self.settings,
                now,
                headers.get("ce_time"),
                headers.get("ce_id"),
                actor,
                cap_text(rec.value or b""),
            )
        except InvalidContent as exc:
            log.warning("alert dead-lettered %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, exc.reason)
            return Step(out=self.dead_letter(rec, exc.reason, "alert", key_text, utc_now_iso(now)))
        metrics.EVENTS.labels(f"alert.{alert_plan.lane}", "routed").inc()
        log.info(
            "CAP %s (%s, %s): %s lane, %d zones",
            alert_plan.identifier,
            alert_plan.status.value,
            alert_plan.msg_type.value,
            alert_plan.lane,
            len(alert_plan.zones),
        )
        return Step(out=[*records, receipt_record(receipt, self.settings)], commands=commands)


def cap_text(raw: bytes) -> str | None:
    """The CAP XML as received, for the archive (None when it is not UTF-8: the parser accepted
    another encoding, and the archived document still keeps every field)."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def alert_actor(headers: Any) -> str:
    """Who sent an alert (its ce_actor; unattributed without one); a forged or broken header is
    refused like the alert's own content: InvalidContent, a dead letter with the reason."""
    try:
        return actor_from_headers(headers)
    except ValueError as exc:
        raise InvalidContent(str(exc)) from None
