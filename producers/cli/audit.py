"""``lantoa audit [--uri U] [--actor A] [--since T] [--json]``: who did what, from audit.actions.

Every door writes one record per action (schemas/audit.py): publish, retract, alert, submit,
approve, refuse, replay, answer, dismiss. This reads the topic from the beginning (what its
retention keeps), oldest first, and prints the records that match every filter given: ``--uri``
the subject (an article's uri, a CAP identifier, a question id), ``--actor`` the identity,
``--since`` an RFC 3339 time or an age such as ``90m``, ``6h``, ``7d``.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from infra.kafka import clients
from producers.cli.terminal import MAX_SHOWN_CHARS, printable, printable_json
from schemas.audit import AuditRecord
from schemas.settings import Settings
from schemas.text import identifier
from schemas.topics import Topic

_AGE = re.compile(r"(\d{1,6})([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def since_time(text: str, now: datetime) -> datetime:
    """``--since``: an age (``6h``) before ``now`` or an RFC 3339 time; ValueError saying why not."""
    if m := _AGE.fullmatch(text.strip()):
        try:
            return now - timedelta(seconds=int(m.group(1)) * _UNIT[m.group(2)])
        except OverflowError:  # 999999d: before year 1
            raise ValueError(f"--since {text[:40]!r} reaches back before year 1") from None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"--since {text[:40]!r}: give an age (90m, 6h, 7d) or an RFC 3339 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_records(settings: Settings) -> list[AuditRecord]:
    out = []
    for rec in clients.read_topic(
        settings.kafka,
        settings.topic(Topic.AUDIT),
        client_id=f"{settings.client_id}-audit-read",
        timeout_s=30,
    ):
        try:
            out.append(AuditRecord.from_dict(orjson.loads(rec.value or b"")))
        except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
            continue  # not an audit record: nothing to show
    return sorted(out, key=lambda r: r.time)


def select(
    records: list[AuditRecord], uri: str | None, actor: str | None, since: datetime | None
) -> list[AuditRecord]:
    wanted = identifier(uri) if uri else None
    out = []
    for r in records:
        if wanted is not None and identifier(r.subject) != wanted:
            continue
        if actor is not None and r.actor != actor:
            continue
        if since is not None:
            try:
                at = datetime.fromisoformat(r.time.replace("Z", "+00:00"))
            except ValueError:
                continue
            if (at if at.tzinfo else at.replace(tzinfo=UTC)) < since:
                continue
        out.append(r)
    return out


def _line(r: AuditRecord) -> str:
    detail = " ".join(f"{k}={v}" for k, v in sorted(r.detail.items()) if v not in (None, ""))
    return printable(
        f"{r.time}  {r.actor}  {r.action.value}  {r.subject}  ({r.door}) {detail}".rstrip(),
        limit=MAX_SHOWN_CHARS,
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = since_time(args.since, datetime.now(UTC)) if args.since else None
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    chosen = select(read_records(settings), args.uri, args.actor, since)
    if args.json:
        sys.stdout.write(printable_json([r.to_dict() for r in chosen]) + "\n")
        return 0
    for r in chosen:
        print(_line(r))
    if not chosen:
        print("no audit record matches", file=sys.stderr)
    return 0


def add_parser(sub: Any, settings: Callable[[], Settings]) -> None:
    p = sub.add_parser("audit", help="who did what (audit.actions): publish, retract, alert, approve, ...")
    p.add_argument("--uri", help="the subject: an article uri, a CAP identifier, a question id")
    p.add_argument("--actor", help="only this identity")
    p.add_argument("--since", help="an age (90m, 6h, 7d) or an RFC 3339 time")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args: run(args, settings()))
