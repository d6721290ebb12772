"""``lantoa status URI``: where an article (or a CAP alert) went, as a table.

By default it asks the stream worker's status view (GET /articles/{uri}/status on
LANTOA_WEB_HOST:LANTOA_WEB_PORT, or ``--url``). With ``--kafka`` it reads the topics itself and
folds them with the same code (streams/status/model.py): slower, but it needs no running worker.

Exit status: 0 found, 1 unknown article, 2 the status could not be read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from typing import Any

import orjson

from infra.kafka import clients
from producers.cli.terminal import escape_json_text, printable
from schemas.emergency import ALERT_URI_PREFIX
from schemas.errors import InvalidContent
from schemas.settings import Settings
from schemas.text import identifier
from schemas.topics import Channel, Topic
from streams.status.model import SETTLED, STATES, StatusFold


class StatusUnavailable(Exception):
    """The status could not be read (worker down, Kafka unreachable); the message says what to try."""


def fetch_http(
    base_url: str, uri: str, channel: str | None = None, state: str | None = None, timeout_s: float = 15.0
) -> dict[str, Any] | None:
    """The status view's answer, or None for an unknown article."""
    query = urllib.parse.urlencode({k: v for k, v in (("channel", channel), ("state", state)) if v})
    url = f"{base_url.rstrip('/')}/articles/{urllib.parse.quote(uri, safe='')}/status" + (
        f"?{query}" if query else ""
    )
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            body: dict[str, Any] = orjson.loads(resp.read())
            return body
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise StatusUnavailable(
            f"{url}: HTTP {exc.code}: {exc.read()[:300].decode(errors='replace')}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise StatusUnavailable(
            f"no status view at {base_url} ({exc}); is the stream worker running with "
            "LANTOA_WEB_PORT set? --kafka reads the topics instead"
        ) from exc


def fetch_kafka(
    settings: Settings,
    uri: str,
    channel: str | None = None,
    state: str | None = None,
    timeout_s: float = 120.0,
) -> dict[str, Any] | None:
    """Read receipts, commands and emergency records up to their current end and fold this uri."""
    from kafka import TopicPartition
    from kafka.errors import KafkaError

    needle = uri.encode()
    identifier = uri[len(ALERT_URI_PREFIX) :].encode() if uri.startswith(ALERT_URI_PREFIX) else None
    kinds = {settings.topic(Topic.RECEIPTS): "receipt", settings.topic(Topic.EMERGENCY_COMMANDS): "emergency"}
    kinds.update({settings.topic(Topic.commands(c)): "command" for c in Channel})
    fold = StatusFold()
    try:
        consumer = clients.consumer(
            settings.kafka,
            group_id=None,
            enable_auto_commit=False,
            client_id=f"{settings.client_id}-status-cli",
        )
    except KafkaError as exc:
        raise StatusUnavailable(f"Kafka at {settings.kafka.bootstrap}: {exc}") from exc
    try:
        tps = [TopicPartition(t, p) for t in kinds for p in sorted(consumer.partitions_for_topic(t) or ())]
        if not tps:
            raise StatusUnavailable(f"none of the status topics exist at {settings.kafka.bootstrap}")
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = {tp: off for tp, off in consumer.end_offsets(tps).items() if off}
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise StatusUnavailable(f"could not read the status topics within {timeout_s:.0f}s")
            for tp, records in consumer.poll(timeout_ms=500, max_records=20000).items():
                kind = kinds[tp.topic]
                for rec in records:
                    if kind == "receipt" and rec.key != needle:
                        continue
                    if kind == "command" and needle not in (rec.value or b""):
                        continue
                    if kind == "emergency" and (identifier is None or rec.key != identifier):
                        continue
                    try:
                        raw = orjson.loads(rec.value or b"")
                        if kind == "receipt":
                            fold.add_receipt(raw)
                        elif kind == "emergency":
                            fold.add_emergency(raw)
                        elif raw.get("uri") == uri:
                            fold.add_command(raw)
                    except (orjson.JSONDecodeError, InvalidContent, AttributeError):
                        continue  # the worker's view skips these too (and counts them)
    except KafkaError as exc:
        raise StatusUnavailable(f"Kafka at {settings.kafka.bootstrap}: {exc}") from exc
    finally:
        consumer.close()
    return fold.article(uri, channel=channel, state=state)


def _time(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return iso


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]


def render(view: dict[str, Any], max_rows: int = 50) -> str:
    """The status as text: article line, events, per-channel counts, then one row per target.

    A channel with more than ``max_rows`` targets lists only those not settled (up to
    ``max_rows``) and says how many rows it left out. Every value from the records (uri, title,
    reasons, targets, external ids) is printed with its controls escaped (producers/cli/terminal.py).
    """
    offset = datetime.now().astimezone().strftime("%z")
    p = printable
    lines = [f"{p(view['uri'])}  v{view.get('version') or '?'}  {p(view.get('state') or 'unknown')}"]
    if view.get("title"):
        lines.append(f"  {p(view['title'])}")
    for ev in view.get("events", []):
        why = f" ({p(ev['reason'])})" if ev.get("reason") else ""
        lines.append(
            f"  {p(_time(ev['at']))}  {p(ev['stage'])}: {p(ev['outcome'])} v{ev.get('version') or '?'}{why}"
        )
    channels: dict[str, Any] = view.get("channels", {})
    if not channels:
        lines.append("no channel commands seen")
        return "\n".join(lines)
    lines.append("")
    summary = [["CHANNEL", "TARGETS", *[s.upper() for s in STATES]]]
    for ch, entry in channels.items():
        states = entry.get("states", {})
        total = sum(states.values())
        expected = entry.get("expected")
        summary.append(
            [
                p(ch),
                f"{total}" + (f"/{expected}" if expected is not None and expected != total else ""),
                *[str(states.get(s, 0) or "") for s in STATES],
            ]
        )
    lines += _table(summary)
    rows = [["CHANNEL", "TARGET", "STATE", "VER", "ACTION", f"UPDATED ({offset})", "EXTERNAL ID", "REASON"]]
    notes: list[str] = []
    for ch, entry in channels.items():
        targets = entry.get("targets", [])
        shown = targets
        if len(targets) > max_rows:
            shown = [t for t in targets if t["state"] not in SETTLED][:max_rows]
            notes.append(
                f"{ch}: {len(targets) - len(shown)} of {len(targets)} rows not shown "
                f"(only the unsettled are listed; --all lists every row, --state narrows)"
            )
        for t in shown:
            rows.append(
                [
                    p(ch),
                    p(t["target"]),
                    p(t["state"]),
                    str(t.get("version") or ""),
                    p(t.get("action") or ""),
                    p(_time(t.get("updated_at"))),
                    p(t.get("external_id") or ""),
                    p((t.get("reason") or "")[:80]),
                ]
            )
    lines.append("")
    lines += _table(rows) if len(rows) > 1 else ["no targets match"]
    lines += notes
    return "\n".join(lines)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """The ``lantoa status`` command (arguments from ``add_arguments``)."""
    uri = identifier(args.uri)  # articles are kept under the NFC uri: an NFD argument names the same one
    try:
        if args.kafka:
            view = fetch_kafka(settings, uri, args.channel, args.state)
        else:
            url = args.url or f"http://{settings.web_host}:{settings.web_port}"
            view = fetch_http(url, uri, args.channel, args.state)
    except StatusUnavailable as exc:
        print(f"lantoa status: {printable(exc)}", file=sys.stderr)
        return 2
    if view is None:
        print(f"{printable(uri)}: unknown article", file=sys.stderr)
        return 1
    if args.json:
        sys.stdout.write(escape_json_text(json.dumps(view, ensure_ascii=False, indent=2)) + "\n")
    else:
        print(render(view, max_rows=10**9 if args.all else args.max_rows))
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", help="article uri (or urn:lantoa:cap:<identifier> for a CAP alert)")
    parser.add_argument(
        "--url", help="the stream worker's status view (default http://LANTOA_WEB_HOST:LANTOA_WEB_PORT)"
    )
    parser.add_argument("--kafka", action="store_true", help="read the topics instead of asking the worker")
    parser.add_argument("--channel", choices=[c.value for c in Channel] + ["emergency"])
    parser.add_argument("--state", choices=STATES)
    parser.add_argument("--all", action="store_true", help="every target row, however many")
    parser.add_argument(
        "--max-rows", type=int, default=50, help="rows per channel before settled ones are left out"
    )
    parser.add_argument("--json", action="store_true")
