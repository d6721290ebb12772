"""The ``lantoa`` command. Settings are read from the environment once, here, and passed down."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from consumers.bootstrap import run
from consumers.loudspeaker.lane import run as run_lane
from consumers.loudspeaker.timeline import PlatformTimeline
from infra.kafka.clients import KafkaAccessError
from infra.kafka.grow import GrowRefused, family, grow
from infra.kafka.reachable import EXIT_CONFIG
from infra.kafka.topics import GrowRequired, apply_topics
from producers.approvals import AlertDoor, ApprovalRefused, PendingStore, listing
from producers.audit import AuditLog
from producers.cap_http import cap_access, serve
from producers.cap_ingest import AlertProducer, check
from producers.cli import deadletters as dl
from producers.cli.audit import add_parser as add_audit
from producers.cli.progress import progress
from producers.cli.questions import add_parsers as add_engagement
from producers.cli.schedule import run as schedule
from producers.cli.status import add_arguments as status_arguments
from producers.cli.status import run as status
from producers.cli.terminal import MAX_SHOWN_CHARS, printable, printable_json
from producers.client import PublishClient, prepare
from producers.targets import configured_targets, load_targets, local_registry
from schemas.access import AccessError, AccessList, Role, add_identity, cli_actor
from schemas.cap import MAX_CAP_BYTES, parse_cap
from schemas.cap_signature import TrustFileError, TrustPolicy, load_trust, verify_signature
from schemas.errors import InvalidContent
from schemas.ninjs_validation import validate_bytes
from schemas.secrets import SecretFileError
from schemas.settings import Settings
from schemas.speech.normalize import normalize
from schemas.text import identifier
from schemas.topics import Channel, Topic, descriptors
from streams.alerts.plan import dry_run_json
from streams.app import run_worker
from streams.articles.intake import MAX_EVENT_BYTES
from streams.routing import RouteInput, route


def _settings() -> Settings:
    return Settings.from_env(os.environ)


def _print_json(value: Any) -> None:
    sys.stdout.write(printable_json(value) + "\n")  # valid JSON with no raw control character


CAP_SUFFIXES = (".cap", ".xml")


def _refusal(path: object, reason: str) -> str:
    """The one line that says why a file given on the command line was refused, safe to print."""
    return f"{printable(path, limit=200)}: {printable(reason, limit=MAX_SHOWN_CHARS)}"


def _read_input(path: Path, limit: int) -> bytes:
    """The bytes of an input file, never more than ``limit`` read (a huge file or /dev/zero is
    refused after limit + 1 bytes). Raises InvalidContent past the limit, OSError when unreadable."""
    with path.open("rb") as f:
        raw = f.read(limit + 1)
        if len(raw) > limit:
            size = os.fstat(f.fileno()).st_size  # 0 for a device or a pipe: its size is unknown
            raise InvalidContent(
                f"file too large: {size} bytes (limit {limit})"
                if size > limit
                else f"file too large: more than the limit of {limit} bytes"
            )
    return raw


def _read_reason(exc: OSError) -> str:
    return f"cannot read: {exc.strerror or exc}"


def _trust(command: str) -> TrustPolicy | None:
    """The CAP trust store (LANTOA_CAP_TRUST_FILE), or None with the reason printed when it is unusable."""
    try:
        return load_trust(_settings())
    except TrustFileError as exc:
        print(f"lantoa {command} cannot start: {printable(exc)}", file=sys.stderr)
        return None


def cmd_validate(args: argparse.Namespace) -> int:

    code = 0
    trust: TrustPolicy | None = None
    for path in (Path(p) for p in args.files):
        cap = path.suffix.lower() in CAP_SUFFIXES
        if cap and trust is None:  # read once, and only when there is a CAP file to check
            if (trust := _trust("validate")) is None:
                return EXIT_CONFIG
        try:
            raw = _read_input(path, MAX_CAP_BYTES if cap else MAX_EVENT_BYTES)
            if cap:
                assert trust is not None
                verify_signature(raw, parse_cap(raw).sender, trust)
            else:
                validate_bytes(raw, args.ninjs_version)
        except InvalidContent as exc:
            print(_refusal(path, exc.reason))
            code = 1
        except OSError as exc:
            print(_refusal(path, _read_reason(exc)))
            code = 1
    return code


def cmd_alert(args: argparse.Namespace) -> int:

    settings = _settings()
    if (trust := _trust("alert")) is None:
        return EXIT_CONFIG
    registry = local_registry(settings)
    checked = []
    for path in args.files:
        try:
            checked.append(check(_read_input(Path(path), MAX_CAP_BYTES), registry, trust))
        except InvalidContent as exc:
            print(_refusal(path, exc.reason), file=sys.stderr)
            return 1
        except OSError as exc:
            print(_refusal(path, _read_reason(exc)), file=sys.stderr)
            return 1
    if args.dry_run:
        plans = [dry_run_json(c.plan) for c in checked]
        if args.json:
            _print_json(plans[0] if len(plans) == 1 else plans)
        else:
            for p in plans:
                print(
                    f"{printable(p['identifier'], limit=MAX_SHOWN_CHARS)}: {p['status']} lane={p['lane']} exercise={p['exercise']} zones={len(p['zones'])}"
                )
        return 0
    if (actor := _actor("alert", settings)) is None:
        return EXIT_CONFIG
    door = _door(settings, registry, trust)
    code = 0
    try:
        for c in checked:
            try:
                result = door.take(c, actor, "cli", "urn:lantoa:cli")
            except ApprovalRefused as exc:
                print(_refusal(c.alert.identifier, exc.reason), file=sys.stderr)
                code = 1
                continue
            shown = printable(result["identifier"], limit=MAX_SHOWN_CHARS)
            for ref in result.get("withdrew", ()):
                print(f"{printable(ref, limit=MAX_SHOWN_CHARS)}: withdrawn from approval by {shown}")
            if result["pending"]:
                print(
                    f"{shown}: PENDING approval ({printable(result['reason'])}); a different person runs "
                    f"`lantoa approve {shown}` before {result['expires_at']}"
                )
            else:
                print(
                    f"{shown}: {result['lane']} lane, {result['zones']} zones, partition {result['partition']}"
                )
    finally:
        _close_door(door)
    return code


def _actor(command: str, settings: Settings) -> str | None:
    """Who this CLI user is in the audit trail (LANTOA_ACTOR or cli:<login>@<host>)."""
    try:
        return cli_actor(settings.actor)
    except ValueError as exc:
        print(f"lantoa {command}: LANTOA_ACTOR refused: {exc}", file=sys.stderr)
        return None


def _door(settings: Settings, registry: Any, trust: TrustPolicy) -> AlertDoor:
    return AlertDoor(
        settings, registry, AlertProducer(settings), PendingStore(settings), AuditLog(settings), trust
    )


def _close_door(door: AlertDoor) -> None:
    door.alerts.close()
    if isinstance(door.store, PendingStore):
        door.store.close()
    door.audit.close()


def cmd_approve(args: argparse.Namespace) -> int:
    """``lantoa approve ID``: send a pending alert, as a person other than its submitter."""
    settings = _settings()
    if (trust := _trust("approve")) is None or (actor := _actor("approve", settings)) is None:
        return EXIT_CONFIG
    door = _door(settings, local_registry(settings), trust)
    try:
        result = door.approve(args.identifier, actor, "cli", "urn:lantoa:cli")
    except ApprovalRefused as exc:
        print(f"lantoa approve: refused: {printable(exc.reason)}", file=sys.stderr)
        return 1
    finally:
        _close_door(door)
    print(
        f"{printable(result['identifier'], limit=MAX_SHOWN_CHARS)}: approved by {actor} "
        f"(submitted by {printable(result['submitted_by'])}): {result['lane']} lane, {result['zones']} zones"
    )
    return 0


def cmd_approvals(args: argparse.Namespace) -> int:
    """``lantoa approvals``: alerts waiting for, given or past their approval."""
    settings = _settings()
    store = PendingStore(settings)
    try:
        listed = listing(store, datetime.now(UTC))
    finally:
        store.close()
    if args.json:
        _print_json(listed)
        return 0
    for p in listed:
        by = f", approved by {p['approved_by']}" if p.get("approved_by") else ""
        print(
            printable(
                f"{p['identifier']}: {p['state']} ({p['zones']} zones; {p['reason']}) submitted by "
                f"{p['submitted_by']} at {p['submitted_at']}{by}; waits until {p['expires_at']}",
                limit=MAX_SHOWN_CHARS,
            )
        )
    return 0


def cmd_alert_server(args: argparse.Namespace) -> int:

    settings = _settings()
    if (trust := _trust("alert-server")) is None:  # a broken trust store stops it before anything
        return EXIT_CONFIG
    try:  # every token is read and checked before the server listens
        access = cap_access(settings, Path(args.token_file) if args.token_file else None)
    except SecretFileError as exc:
        print(f"lantoa alert-server cannot start: {printable(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    if access is not None and args.insecure_no_auth:
        print(
            "lantoa alert-server cannot start: --insecure-no-auth given with sender tokens configured; choose one",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    if access is None and not args.insecure_no_auth:
        print(
            "lantoa alert-server refuses to start without authentication: anyone reaching the port "
            "could pre-empt the loudspeakers. Give sender tokens (--token-file, LANTOA_CAP_TOKEN_FILE, "
            "LANTOA_CAP_TOKEN, or identities with the sender role in LANTOA_ACCESS_FILE: "
            "lantoa access add NAME --role sender), or --insecure-no-auth on a closed test network",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    try:  # the producer checks a secured connection first: a refused configuration stops here
        alerts = AlertProducer(settings)
    except KafkaAccessError as exc:
        print(f"lantoa alert-server cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    door = AlertDoor(
        settings, local_registry(settings), alerts, PendingStore(settings), AuditLog(settings), trust
    )
    try:
        serve(door, args.host, args.port, access, insecure=args.insecure_no_auth)
    finally:
        _close_door(door)
    return 0


def cmd_access(args: argparse.Namespace) -> int:
    """``lantoa access add NAME --role R``: a new token for NAME (shown once); ``list``: who is known."""
    settings = _settings()
    path = Path(args.file) if args.file else settings.access_file
    if path is None:
        print("lantoa access: give --file or LANTOA_ACCESS_FILE", file=sys.stderr)
        return EXIT_CONFIG
    try:
        if args.action == "list":
            known = AccessList.load(path).identities if path.exists() else ()
            for ident in known:
                senders = f" cap_senders={','.join(sorted(ident.cap_senders))}" if ident.cap_senders else ""
                print(f"{ident.name}: {','.join(sorted(ident.roles))}{senders}")
            return 0
        if not args.name or not args.role:
            print("lantoa access add: NAME and at least one --role are needed", file=sys.stderr)
            return 2
        token = add_identity(path, args.name, [Role(r) for r in args.role], args.cap_sender or None)
    except AccessError as exc:
        print(f"lantoa access: {printable(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    if args.token_out:  # for scripts: the token in a new 0600 file, never on the terminal
        out = Path(args.token_out)
        try:
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as exc:  # the identity is saved: its token must reach the user another way
            print(f"lantoa access: cannot create {out} ({exc.strerror}); the new token is:", file=sys.stderr)
            print(token)
            return 1
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        print(f"{args.name}: token written to {out} (mode 0600)")
    else:
        print(token)
        print(
            f"{args.name}: the token above is shown once; only its SHA-256 is kept in {path}", file=sys.stderr
        )
    return 0


def routing_plan(prepared: Any, settings: Settings) -> dict[str, Any]:

    art = prepared.article
    plan = route(RouteInput(art.places, art.subjects), local_registry(settings))
    return {
        "uri": art.uri,
        "version": art.version,
        "action": "retract" if art.retracting else "publish",
        "embargoed_until": art.embargoed_until.isoformat() if art.embargoed_until else None,
        "channels": {
            ch.value: {"count": len(targets), "targets": [t.id for t in targets]}
            for ch, targets in plan.items()
        },
    }


def cmd_publish(args: argparse.Namespace) -> int:

    settings = _settings()
    prepared = []
    failed = False
    for path in args.files:
        try:
            raw = _read_input(Path(path), MAX_EVENT_BYTES)
            p = prepare(raw, args.ninjs_version, settings.source)
            if args.dry_run:
                routing_plan(p, settings)  # unknown places are refused here too, before any send
            prepared.append((path, raw, p))
        except InvalidContent as exc:
            print(_refusal(path, exc.reason), file=sys.stderr)
            failed = True
        except OSError as exc:
            print(_refusal(path, _read_reason(exc)), file=sys.stderr)
            failed = True
    if failed:
        print("nothing sent: fix the files above", file=sys.stderr)
        return 1
    if args.dry_run:
        plans = [dict(file=str(path), **routing_plan(p, settings)) for path, _, p in prepared]
        if args.json:
            _print_json(plans if len(plans) != 1 else plans[0])
        else:
            for plan in plans:
                counts = ", ".join(f"{ch} {v['count']}" for ch, v in plan["channels"].items())
                print(
                    f"{printable(plan['file'], limit=200)}: {printable(plan['uri'], limit=MAX_SHOWN_CHARS)} v{plan['version']} {plan['action']} -> {counts}"
                )
        return 0
    if (actor := _actor("publish", settings)) is None:
        return EXIT_CONFIG
    with PublishClient(settings, actor=actor) as client:
        results = []
        bulk = len(prepared) > 20  # a bulk publish: a progress bar instead of a line per file
        for i, (path, raw, _) in enumerate(prepared, start=1):
            sent = client.publish(raw, args.ninjs_version)
            results.append(
                {
                    "file": str(path),
                    "uri": sent.uri,
                    "version": sent.version,
                    "ce_id": sent.ce_id,
                    "ce_type": sent.ce_type,
                    "partition": sent.partition,
                    "offset": sent.offset,
                }
            )
            if bulk:
                progress("publish", i, len(prepared))
            elif not args.json:
                print(
                    f"{printable(path, limit=200)}: sent {printable(sent.uri, limit=MAX_SHOWN_CHARS)} v{sent.version} ({sent.ce_type}) to partition {sent.partition} offset {sent.offset}"
                )
        if bulk and not args.json:
            print(f"sent {len(results)} articles")
    if args.json:
        _print_json(results)
    return 0


def cmd_retract(args: argparse.Namespace) -> int:

    settings = _settings()
    if (actor := _actor("retract", settings)) is None:
        return EXIT_CONFIG
    try:
        with PublishClient(settings, actor=actor) as client:
            sent = client.retract(args.uri, args.reason, args.version)
    except InvalidContent as exc:
        print(f"{printable(args.uri)}: {printable(exc.reason)}", file=sys.stderr)
        return 1
    print(f"retraction of {printable(sent.uri)} sent to partition {sent.partition} offset {sent.offset}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:

    return status(args, _settings())


def cmd_topics(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.action == "list":
        for topic, desc in descriptors().items():
            print(
                f"{settings.topic(topic):40} {settings.partitions(topic):3} partitions  {desc.cleanup_policy:8} key: {desc.key}"
            )
        return 0
    if args.action == "grow":
        return _grow(settings, args)

    try:
        changes = apply_topics(settings, dry_run=args.dry_run)
    except GrowRequired as exc:
        print(f"topics apply refused: {exc}", file=sys.stderr)
        return 1
    for change in changes:
        print(("would " if args.dry_run else "") + str(change))
    if not changes:
        print("topics up to date")
    return 0


def _grow(settings: Settings, args: argparse.Namespace) -> int:

    if args.channel is None or args.count is None or args.dry_run:
        print(
            "usage: lantoa topics grow CHANNEL|streams N (no --dry-run: it refuses before changing anything "
            "when it cannot finish)",
            file=sys.stderr,
        )
        return 2
    try:
        report = grow(settings, family(args.channel), args.count)
    except GrowRefused as exc:
        print(f"topics grow refused: {exc}", file=sys.stderr)
        return 1
    for name, (before, after) in sorted(report.raised.items()):
        print(f"{name}: partitions {before} -> {after}")
    what = "article states" if args.channel == "streams" else "ledger entries"
    print(
        f"{args.channel}: {report.moved} {what} moved, {report.kept} already in place"
        + (f", {report.unplaceable} unreadable left in place (see the log)" if report.unplaceable else "")
    )
    return 0


def cmd_targets(args: argparse.Namespace) -> int:
    settings = _settings()
    if args.action == "list":
        from collections import Counter

        counts = Counter((t.channel.value, t.test) for t in configured_targets(settings))
        for (channel, test), n in sorted(counts.items()):
            print(f"{channel:12} {'test' if test else 'public':6} {n}")
        return 0

    n = load_targets(settings, remove=[identifier(t) for t in args.remove])  # NFC, as the registry keeps ids
    print(f"{n} targets written to {settings.topic(Topic.TARGETS)}")
    return 0


def cmd_worker(args: argparse.Namespace) -> int:

    settings = _settings()
    if args.apply_topics:
        apply_topics(settings)
    # The status web's timeline page reads the loudspeaker platform through the adapter's client.
    run_worker(settings, args.loglevel, timeline=PlatformTimeline(settings))
    return 0


def cmd_adapter(args: argparse.Namespace) -> int:
    logging.getLogger().setLevel(args.loglevel.upper())
    if args.channel == "emergency":
        run_lane(_settings())
        return 0

    run(_settings(), Channel(args.channel))
    return 0


def cmd_deadletters(args: argparse.Namespace) -> int:

    settings = _settings()
    letters = dl.read_all(settings)
    if args.action == "list":
        chosen = dl.select(letters, reason=args.reason, channel=args.channel, stage=args.stage)
        if args.json:
            _print_json([{"ref": d.ref, **d.meta} for d in chosen])
        else:
            print(dl.render_list(chosen))
        return 0
    if args.action == "show":
        chosen = dl.select(letters, refs=args.refs)
        if not chosen:
            print(f"no dead letter {' '.join(args.refs)}", file=sys.stderr)
            return 1
        print("\n\n".join(dl.render_one(d) for d in chosen))
        return 0
    if not (args.all or args.reason or args.channel or args.stage or args.refs):
        print(
            "replay needs a mode: --all, --reason TEXT, --channel CH, --stage S or refs P:O", file=sys.stderr
        )
        return 2
    chosen = dl.select(letters, reason=args.reason, channel=args.channel, stage=args.stage, refs=args.refs)
    if (actor := _actor("deadletters replay", settings)) is None:
        return EXIT_CONFIG
    decisions = dl.replay(settings, chosen, dry_run=args.dry_run, actor=actor)
    if args.json:
        _print_json([x.to_dict() for x in decisions])
    else:
        print("\n".join(x.line(args.dry_run) for x in decisions))
    ok = sum(x.topic is not None and x.reason is None for x in decisions)
    if not args.json:
        print(f"{'would replay' if args.dry_run else 'replayed'} {ok} of {len(decisions)} dead letter(s)")
    return 0 if ok == len(decisions) else 1


def cmd_normalize(args: argparse.Namespace) -> int:

    text = " ".join(args.text) if args.text else sys.stdin.read()
    print(normalize(text))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:

    return schedule(_settings(), args.zone, args.date, args.format)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lantoa",
        description="Lantoa: articles and alerts to loudspeakers, fanpages, Zalo and the archive, through Kafka.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate ninjs files (exit 1 if any is invalid)")
    p.add_argument("--ninjs-version", choices=["2.0", "2.1", "2.2", "3.0", "3.1"], default=None)
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("alert", help="send CAP alerts to alerts.cap (checked and planned first)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; no broker needed")
    p.add_argument("--json", action="store_true")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_alert)

    p = sub.add_parser("alert-server", help="HTTP endpoint receiving CAP XML (POST /cap)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8088)
    p.add_argument(
        "--token-file", help="one sender token (identity cap-token), 'Authorization: Bearer <token>'"
    )
    p.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="take alerts from anyone who reaches the port (closed test networks only; logged on every request)",
    )
    p.set_defaults(func=cmd_alert_server)

    add_audit(sub, _settings)

    p = sub.add_parser("approve", help="approve an alert waiting for a second person (two-person rule)")
    p.add_argument("identifier", help="the CAP identifier `lantoa approvals` shows")
    p.set_defaults(func=cmd_approve)

    p = sub.add_parser("approvals", help="alerts waiting for approval, approved or expired")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_approvals)

    p = sub.add_parser(
        "access", help="identities for the CAP endpoint and the status web (LANTOA_ACCESS_FILE)"
    )
    p.add_argument("action", choices=["add", "list"])
    p.add_argument("name", nargs="?")
    p.add_argument("--role", action="append", choices=[r.value for r in Role])
    p.add_argument("--cap-sender", action="append", help="a CAP <sender> this identity may use (repeatable)")
    p.add_argument("--file", help="the identities file (default LANTOA_ACCESS_FILE)")
    p.add_argument("--token-out", help="write the new token to this new file (0600) instead of stdout")
    p.set_defaults(func=cmd_access)

    p = sub.add_parser("publish", help="publish ninjs files to cms.articles")
    p.add_argument("--ninjs-version", choices=["2.0", "2.1", "2.2", "3.0", "3.1"], default=None)
    p.add_argument("--dry-run", action="store_true", help="print the routing plan; no broker needed")
    p.add_argument("--json", action="store_true")
    p.add_argument("files", nargs="+")
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("retract", help="retract an article everywhere it went")
    p.add_argument("uri")
    p.add_argument("--reason")
    p.add_argument("--version", type=int)
    p.set_defaults(func=cmd_retract)

    p = sub.add_parser("status", help="where an article went: per channel and target, as a table")
    status_arguments(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("topics", help="topic descriptors → the cluster")
    p.add_argument(
        "action",
        choices=["apply", "list", "grow"],
        help="grow CHANNEL N: the channel's command, retry and ledger topics to N, ledger moved; "
        "grow streams N: cms.articles, embargo releases and article state to N, states moved",
    )
    p.add_argument("channel", nargs="?", choices=[*(c.value for c in Channel), "streams"])
    p.add_argument("count", nargs="?", type=int)
    p.add_argument("--dry-run", action="store_true")
    p.set_defaults(func=cmd_topics)

    p = sub.add_parser("targets", help="the targets registry")
    p.add_argument("action", choices=["load", "list"])
    p.add_argument(
        "--remove", action="append", default=[], metavar="TARGET_ID", help="write a tombstone for this id"
    )
    p.set_defaults(func=cmd_targets)

    p = sub.add_parser("normalize", help="print the spoken Vietnamese form of a text (stdin when no TEXT)")
    p.add_argument("text", nargs="*")
    p.set_defaults(func=cmd_normalize)

    p = sub.add_parser("deadletters", help="list, show and replay dead letters")
    p.add_argument("action", choices=["list", "show", "replay"])
    p.add_argument("refs", nargs="*", metavar="PARTITION:OFFSET")
    p.add_argument("--all", action="store_true", help="replay: every dead letter")
    p.add_argument("--reason", help="only those whose reason contains this text")
    p.add_argument("--channel", help="only those of this channel (streams = the stream app)")
    p.add_argument("--stage", help="only those refused at this stage (decode, validate, route, deliver)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_deadletters)

    p = sub.add_parser(
        "schedule", help="a zone's broadcast schedule for one day, as the loudspeaker platform has it"
    )
    p.add_argument("zone", help="zone id (zone:18073), ward code (18073) or test zone id")
    p.add_argument("--date", help="YYYY-MM-DD (default: today in the zone's time zone)")
    p.add_argument("--format", choices=["json", "ics", "m3u"], default="json")
    p.set_defaults(func=cmd_schedule)

    p = sub.add_parser("adapter", help="run one channel adapter (delivery runtime)")
    p.add_argument("channel", choices=["loudspeaker", "fanpage", "zalo", "archive", "emergency"])
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=cmd_adapter)

    p = sub.add_parser("worker", help="run the stream app")
    p.add_argument("--apply-topics", action="store_true")
    p.add_argument("--loglevel", default="info")
    p.set_defaults(func=cmd_worker)

    add_engagement(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # a clear line for the user; the traceback only with LANTOA_DEBUG
        if os.environ.get("LANTOA_DEBUG"):
            raise
        print(f"lantoa {args.command}: {type(exc).__name__}: {printable(exc)}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
