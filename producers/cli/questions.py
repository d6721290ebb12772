"""The engagement commands of ``lantoa``: citizens' questions and the editors' answers.

    lantoa webhooks [--host H] [--port N] [--state-file F]     run the webhook receivers
    lantoa triage                                              run the triage process
    lantoa questions [--open | --all] [--article URI] [--json] list the engagement table
    lantoa answer ID TEXT [--follow-up] [--wait S] [--json]    answer through the delivery path
    lantoa dismiss ID [--reason TEXT] [--by NAME]              close without an answer

``questions`` lists questions (open, answered, dismissed, withdrawn) oldest first; ``--open``
only those waiting, ``--all`` also plain comments (which may be answered too). An ID may be
shortened to any unique prefix.

``answer`` reads the question from engagement.questions, renders the reply (Graph: a reply to the
comment; Zalo: a message to the group or the follower quoting the question) and produces one
command with action ``reply`` to the channel's command topic, key = the target. Its idempotency key
is (urn:lantoa:question:<id>, answer number, channel, target, reply): running the same command
again, or a second editor answering the same question at the same moment, is the same command
and the adapter's ledger lets only one reply out. A question already answered is not answered
again (exit 0, nothing sent) unless ``--follow-up`` asks for a further reply; after a failed
answer the next one gets the next number. The command waits (``--wait``, 30 s) for the delivery
receipt on distribution.receipts and prints it: exit 0 delivered, 1 failed or refused, 3 no
receipt yet (the reply is on its way; ``lantoa questions`` shows it answered once it is out).
The question closes when the triage process sees the reply in the adapter's ledger.

``dismiss`` writes a ``dismissed`` event to engagement.inbound, keyed like the comment, so the
triage process (the only writer of the table) closes it in order with the citizen's own events.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from infra.kafka import clients
from infra.kafka.clients import KafkaAccessError
from infra.kafka.reachable import EXIT_CONFIG, ensure_kafka
from producers.audit import AuditLog
from producers.cli.terminal import printable, printable_json
from producers.webhook_seen import SeenStoreBusy
from producers.webhooks import WebhookSecrets, serve
from schemas import contracts
from schemas.access import cli_actor
from schemas.audit import AuditAction, AuditRecord
from schemas.codec import encode
from schemas.models import utc_now_iso
from schemas.secrets import SecretFileError
from schemas.settings import Settings
from schemas.text import identifier
from schemas.topics import Topic, command_key
from streams.engagement.store import read_table, run_triage
from streams.engagement.triage import (
    NotAnswerable,
    inbound_key,
    next_answer_version,
    parse_iso,
    reply_command,
)

TERMINAL = {"delivered", "updated", "deleted", "skipped", "failed"}
EXIT_PENDING = 3


def _settings() -> Settings:
    import os

    return Settings.from_env(os.environ)


def _print_json(value: Any) -> None:
    sys.stdout.write(printable_json(value) + "\n")  # valid JSON with no raw control character


def _age(asked_at: str, now: datetime) -> str:

    seconds = max(0, int((now - parse_iso(asked_at)).total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    if days:
        return f"{days}d{hours}h"
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m"


def find(table: dict[str, dict[str, Any]], wanted: str) -> dict[str, Any]:
    """The record with this id or unique id prefix ("q-" may be left out)."""
    wanted = identifier(wanted).lower()
    wanted = wanted if wanted.startswith("q-") else f"q-{wanted}"
    if wanted in table:
        return table[wanted]
    hits = [r for qid, r in table.items() if qid.startswith(wanted)]
    if len(hits) == 1:
        return hits[0]
    raise LookupError(
        f"no question {wanted}" if not hits else f"{wanted} is ambiguous: {len(hits)} questions"
    )


def select(
    table: dict[str, dict[str, Any]],
    *,
    only_open: bool = False,
    everything: bool = False,
    article: str | None = None,
) -> list[dict[str, Any]]:
    chosen = [
        r
        for r in table.values()
        if (r["state"] == "open" if only_open else everything or r["question"] or r["state"] != "comment")
        and (article is None or r.get("article_uri") == identifier(article))
    ]
    return sorted(chosen, key=lambda r: (r["asked_at"], r["id"]))


def render(records: list[dict[str, Any]], now: datetime) -> str:
    """One line per question; citizens' texts and every other value are printed with their
    controls escaped (producers/cli/terminal.py), never raw to the editor's terminal."""
    if not records:
        return "no questions"
    p = printable
    lines = [f"{'ID':13} {'STATE':9} {'PLATFORM':8} {'AGE':6} {'TARGET':28} {'ARTICLE':36} TEXT"]
    for r in records:
        text = " ".join(str(r["text"]).split())
        text = p(text if len(text) <= 70 else text[:69] + "…")
        article = r.get("article_uri") or "-"
        article = p(article if len(article) <= 36 else "…" + article[-35:])
        lines.append(
            f"{p(r['id']):13} {p(r['state']):9} {p(r['platform']):8} {_age(r['asked_at'], now):6} "
            f"{p(r.get('target') or '-'):28} {article:36} {text}"
        )
    open_ = [r for r in records if r["state"] == "open"]
    if open_:
        lines.append(f"{len(open_)} open; the oldest asked {_age(open_[0]['asked_at'], now)} ago")
    return "\n".join(lines)


def cmd_questions(args: argparse.Namespace) -> int:

    records = select(read_table(_settings()), only_open=args.open, everything=args.all, article=args.article)
    if args.json:
        _print_json(records)
    else:
        print(render(records, datetime.now(UTC)))
    return 0


def _receipt_tail(settings: Settings) -> Any:
    from kafka import TopicPartition

    topic = settings.topic(Topic.RECEIPTS)
    consumer = clients.consumer(
        settings.kafka, group_id=None, enable_auto_commit=False, client_id=f"{settings.client_id}-answer"
    )
    tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
    consumer.assign(tps)
    consumer.seek_to_end(*tps)
    for tp in tps:
        consumer.position(tp)  # resolve "end" now, before the command leaves
    return consumer


def wait_receipt(consumer: Any, command_id: str, wait_s: float) -> dict[str, Any] | None:
    """The first final receipt of ``command_id`` (intermediate ones are printed), or None."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for recs in consumer.poll(timeout_ms=300).values():
            for rec in recs:
                receipt = orjson.loads(rec.value)
                if receipt.get("command_id") != command_id:
                    continue
                if receipt.get("outcome") in TERMINAL:
                    return dict(receipt)
                print(
                    f"  {printable(receipt.get('outcome'))}: {printable(receipt.get('reason') or '')}",
                    file=sys.stderr,
                )
    return None


def cmd_answer(args: argparse.Namespace) -> int:

    settings = _settings()
    try:
        record = find(read_table(settings), args.id)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    qid = record["id"]
    if record["state"] == "answered" and not args.follow_up:
        result = {
            "question_id": qid,
            "state": "answered",
            "version": record.get("answer_version"),
            "reply_id": record.get("answer_id"),
            "answered_at": record.get("answered_at"),
            "answer": record.get("answer_text"),
            "sent": False,
        }
        if args.json:
            _print_json(result)
        else:
            print(
                printable(
                    f"{qid} was already answered at {record.get('answered_at')} (reply {record.get('answer_id')}); "
                    "nothing sent. --follow-up sends another reply."
                )
            )
        return 0
    try:
        actor = cli_actor(settings.actor)
    except ValueError as exc:
        print(f"lantoa answer: LANTOA_ACTOR refused: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        version = next_answer_version(record, args.follow_up)
        command = replace(reply_command(record, args.text, version, utc_now_iso()), actor=actor)
    except NotAnswerable as exc:
        print(str(exc), file=sys.stderr)
        return 1
    command_id = command.key.command_id()
    tail = _receipt_tail(settings)
    try:
        producer = clients.producer(
            settings.kafka, acks="all", enable_idempotence=True, client_id=f"{settings.client_id}-answer"
        )
        try:
            producer.send(
                settings.topic(Topic.commands(command.channel)),
                key=command_key(command.channel, command.target),
                value=encode(command.to_dict()),
            ).get(timeout=30)
            AuditLog(settings, producer).write(
                AuditRecord(
                    actor,
                    AuditAction.ANSWER,
                    qid,
                    "cli",
                    {"target": command.target, "command_id": command_id, "version": version},
                )
            )
        finally:
            producer.close()
        if not args.json:
            print(f"{qid}: answer {version} sent to {command.target} (command {command_id[:12]})")
        receipt = wait_receipt(tail, command_id, args.wait) if args.wait > 0 else None
    finally:
        tail.close()
    result = {
        "question_id": qid,
        "version": version,
        "target": command.target,
        "command_id": command_id,
        "sent": True,
        "outcome": receipt.get("outcome") if receipt else "pending",
        "reply_id": receipt.get("external_id") if receipt else None,
        "at": receipt.get("at") if receipt else None,
        "reason": receipt.get("reason") if receipt else None,
    }
    if args.json:
        _print_json(result)
    elif receipt is None:
        print(f"{qid}: no receipt within {args.wait:.0f}s; the reply is on its way (see `lantoa questions`)")
    else:
        detail = f"reply {result['reply_id']}" if result["reply_id"] else (result["reason"] or "")
        print(printable(f"{qid}: {result['outcome']} at {result['at']} ({detail})"))
    if receipt is None:
        return EXIT_PENDING
    return 1 if receipt.get("outcome") == "failed" else 0


def cmd_dismiss(args: argparse.Namespace) -> int:

    settings = _settings()
    try:
        record = find(read_table(settings), args.id)
    except LookupError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if record["state"] not in ("open", "comment"):
        print(f"{record['id']} is {record['state']}: nothing to dismiss", file=sys.stderr)
        return 1
    try:
        actor = cli_actor(settings.actor)
    except ValueError as exc:
        print(f"lantoa dismiss: LANTOA_ACTOR refused: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    event = {
        "schema_version": 1,
        "platform": record["platform"],
        "kind": "dismissed",
        "event": "lantoa.dismiss",
        "message_id": record["comment_id"],
        "text": args.reason or "",
        "by": args.by or actor,
        "received_at": utc_now_iso(),
    }
    contracts.check("engagement", event)
    producer = clients.producer(
        settings.kafka, acks="all", enable_idempotence=True, client_id=f"{settings.client_id}-dismiss"
    )
    try:
        producer.send(
            settings.topic(Topic.ENGAGEMENT_INBOUND),
            key=inbound_key(record["platform"], record["comment_id"]).encode(),
            value=encode(event),
        ).get(timeout=30)
        AuditLog(settings, producer).write(
            AuditRecord(
                actor,
                AuditAction.DISMISS,
                record["id"],
                "cli",
                {"reason": (args.reason or "")[:500], "by": args.by},
            )
        )
    finally:
        producer.close()
    print(f"{record['id']}: dismissed")
    return 0


def cmd_webhooks(args: argparse.Namespace) -> int:

    settings = _settings()
    graph = Path(args.graph_secrets) if args.graph_secrets else settings.fanpage_app_secret_file
    zalo = Path(args.zalo_secrets) if args.zalo_secrets else settings.zalo_secret_file
    try:
        secrets = WebhookSecrets.from_files(graph, zalo, settings.zalo_app_id)
    except (SecretFileError, FileNotFoundError) as exc:
        print(f"lantoa webhooks cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if not (secrets.graph_app_secret or secrets.zalo_oa_secret):
        print(
            "no webhook secrets: give --graph-secrets {app_secret, verify_token} and/or "
            "--zalo-secrets {oa_secret_key} (with LANTOA_ZALO_APP_ID)",
            file=sys.stderr,
        )
        return 2
    try:  # waits while Kafka is unreachable; a refused configuration stops here (nothing consumed)
        ensure_kafka(settings.kafka, client_id=f"{settings.client_id}-probe")
    except KafkaAccessError as exc:
        print(f"lantoa webhooks cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        serve(settings, secrets, args.host, args.port, Path(args.state_file) if args.state_file else None)
    except SeenStoreBusy as exc:  # two receivers on one data directory would lose each other's replay ids
        print(f"lantoa webhooks cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_triage(args: argparse.Namespace) -> int:
    import logging

    logging.getLogger().setLevel(args.loglevel.upper())
    settings = _settings()
    try:  # waits while Kafka is unreachable; a refused configuration stops here (nothing consumed)
        ensure_kafka(settings.kafka, client_id=f"{settings.client_id}-probe")
    except KafkaAccessError as exc:
        print(f"lantoa triage cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    run_triage(settings)
    return 0


def add_parsers(sub: Any) -> None:
    """Register the engagement subcommands on the ``lantoa`` parser."""
    p = sub.add_parser(
        "webhooks", help="receive citizens' comments (Graph) and messages (Zalo) into engagement.inbound"
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090, help="0 = a free port")
    p.add_argument("--state-file", help='write {"url", "pid"} here once listening')
    p.add_argument(
        "--graph-secrets", help='JSON {"app_secret", "verify_token"} (default LANTOA_FANPAGE_APP_SECRET_FILE)'
    )
    p.add_argument("--zalo-secrets", help='JSON {"oa_secret_key"} (default LANTOA_ZALO_SECRET_FILE)')
    p.set_defaults(func=cmd_webhooks)

    p = sub.add_parser("triage", help="link citizens' comments to articles, keep the questions table")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=cmd_triage)

    p = sub.add_parser("questions", help="list citizens' questions (engagement.questions)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--open", action="store_true", help="only those waiting for an answer")
    which.add_argument("--all", action="store_true", help="also comments that ask nothing")
    p.add_argument("--article", metavar="URI", help="only those about this article")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_questions)

    p = sub.add_parser("answer", help="answer a question through the fanpage or Zalo adapter")
    p.add_argument("id", help="question id (or a unique prefix)")
    p.add_argument("text")
    p.add_argument("--follow-up", action="store_true", help="send a further reply to an answered question")
    p.add_argument(
        "--wait", type=float, default=30.0, help="seconds to wait for the delivery receipt (0: don't)"
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_answer)

    p = sub.add_parser("dismiss", help="close a question or comment without answering it")
    p.add_argument("id")
    p.add_argument("--reason", help="why (kept with the question)")
    p.add_argument("--by", help="who (default: the login name)")
    p.set_defaults(func=cmd_dismiss)
