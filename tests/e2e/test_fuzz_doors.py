"""Fuzz the doors: every hostile file given to ``lantoa validate``, ``lantoa publish --dry-run`` and
``lantoa alert --dry-run`` is refused with exit 1 and one line naming it, never a traceback or exit 2,
and nothing a terminal would act on is printed; every hostile or mutated alert uploaded chunked to
``lantoa alert-server`` is answered with a 4xx and its reason (or a 202 when still valid), never a 5xx.

The corpus is tests/e2e/fuzz_corpus.py: ``hostile_files()`` (not UTF-8, not JSON/XML, nesting thousands
deep, XML bombs, DTDs and external entities, 8 MB files, years 1 and 9999 with extreme offsets, a
directory, a missing path, empty and binary files, escapes in names and values) plus the mutated
ninjs and CAP the topic fuzz sends (``article_records``, ``alert_records``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fuzz_corpus import Hostile, alert_records, article_records, chunk_sizes, hostile_files
from helpers import AlertServer

from producers.cli.main import main
from producers.cli.terminal import MAX_SHOWN_CHARS

ROOT = Path(__file__).resolve().parents[2]
COMMANDS = {"validate": ["validate"], "publish": ["publish", "--dry-run"], "alert": ["alert", "--dry-run"]}
# What no line may carry: C0 controls but tab, DEL, C1 controls, bidi and zero-width format characters
# (the joiners ZWNJ/ZWJ may stay: no terminal acts on them).
UNSAFE = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u200b\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]")
LONGEST_LINE = 200 + 2 + MAX_SHOWN_CHARS + 40  # path, ": ", reason, the "… (N more characters)" marker


@pytest.fixture(scope="module")
def hostile_dir(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[Hostile, Path]]]:
    where = tmp_path_factory.mktemp("hostile")
    return where, [(h, h.write(where)) for h in hostile_files()]


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def refusal_lines(command: str, out: str, err: str) -> list[str]:
    """The lines that answer for files: validate reports on stdout, the others on stderr."""
    text = out if command == "validate" else err
    return [ln for ln in text.splitlines() if ln != "nothing sent: fix the files above"]


def check_safe(lines: list[str], where: str) -> None:
    for line in lines:
        assert not UNSAFE.search(line), f"{where}: unescaped control in {line!r}"
        assert len(line) <= LONGEST_LINE, f"{where}: {len(line)} characters"
        assert "Traceback" not in line, where


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_hostile_file_is_refused_with_one_line(
    command: str,
    hostile_dir: tuple[Path, list[tuple[Hostile, Path]]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LANTOA_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # a dry run must not need (or reach) a broker
    failures = []
    for hostile, path in hostile_dir[1]:
        if hostile.ninjs_valid and command == "validate":
            continue
        code, out, err = run(capsys, [*COMMANDS[command], str(path)])
        lines = refusal_lines(command, out, err)
        if code != 1 or len(lines) != 1 or not lines[0].startswith(str(hostile_dir[0])):
            failures.append(f"{hostile.label}: exit {code}, {lines!r}"[:300])
            continue
        check_safe(lines, hostile.label)
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("command", ["validate", "publish"])
def test_the_real_command_answers_many_hostile_files_one_line_each(
    command: str, hostile_dir: tuple[Path, list[tuple[Hostile, Path]]]
) -> None:
    paths = [str(p) for h, p in hostile_dir[1] if not (h.ninjs_valid and command == "validate")]
    env = {**os.environ, "LANTOA_KAFKA_BOOTSTRAP": "127.0.0.1:1"}
    env.pop("LANTOA_DEBUG", None)
    proc = subprocess.run(
        [sys.executable, "-m", "producers.cli", *COMMANDS[command], *paths],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=300,
    )
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # strict: nothing undecodable printed
    lines = refusal_lines(command, out, err)
    assert proc.returncode == 1, (proc.returncode, err[-2000:])
    assert "Traceback" not in out + err
    assert len(lines) == len(paths), lines
    check_safe(lines, command)
    hostile_name = next(p for p in paths if "\x1b" in p)
    assert hostile_name.replace("\x1b", "\\x1b").replace("\u202e", "\\u202e") in out + err


def test_the_mutated_corpus_never_makes_the_cli_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANTOA_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    seen: Counter[str] = Counter()
    failures = []
    corpus = [(r, ".json", ("publish", "validate")) for r in article_records("fuzz")]
    corpus += [(r, ".cap", ("alert", "validate")) for r in alert_records("fuzz")]
    for n, (record, suffix, commands) in enumerate(corpus):
        path = tmp_path / f"{n}{suffix}"
        path.write_bytes(record.value)
        for command in commands:
            code, out, err = run(capsys, [*COMMANDS[command], str(path)])
            seen[f"{command} exit {code}"] += 1
            lines = refusal_lines(command, out, err) if code else []
            # A record refused for its key or its headers (a ce_id) is a good file; lantoa validate checks ninjs
            # only, not Lantoa's rules (field bounds, versions): the publish and alert doors must refuse the rest.
            hopeless = (
                record.hopeless
                and command != "validate"
                and not any(mark in record.label for mark in ("wrong key", "ce_id", "headers:"))
            )
            if code not in (0, 1) or (code == 1 and len(lines) != 1) or (hopeless and code != 1):
                failures.append(f"{record.label}: {command} exit {code}: {(out + err)[:200]!r}")
            check_safe(lines, record.label)
    print("cli fuzz:", dict(seen))
    assert not failures, "\n".join(failures[:20])
    assert seen["publish exit 1"] > 20 and seen["alert exit 1"] > 20  # the corpus does hit the refusals


# ------------------------------------------------------------------------------------------------
# Chunked CAP uploads to a running alert-server
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alert_server(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AlertServer]:
    server = AlertServer(kafka_bootstrap, tmp_path_factory.mktemp("alert-server"))
    try:
        yield server
    finally:
        server.close()


@pytest.mark.timeout(400)
def test_chunked_uploads_of_hostile_and_mutated_alerts_get_a_4xx_with_a_reason(
    alert_server: AlertServer,
) -> None:
    bodies = [(h.label, h.content, True) for h in hostile_files() if h.cap and h.content is not None]
    bodies += [(r.label, r.value, r.hopeless) for r in alert_records("fuzz")]
    seen: Counter[int] = Counter()
    failures = []
    for n, (label, body, hopeless) in enumerate(bodies):
        status, reply = alert_server.request("POST", "/cap", body, chunks=chunk_sizes(n))
        seen[status] += 1
        if status >= 500 or (hopeless and status == 202) or status not in (202, 400, 413, 422):
            failures.append(f"{label}: {status} {reply}")
        elif status != 202 and not str(reply.get("reason", "")).strip():
            failures.append(f"{label}: {status} without a reason")
    print("chunked CAP uploads:", dict(seen))
    assert alert_server.alive(), f"the alert-server died: {alert_server.log_tail()}"
    assert not failures, "\n".join(failures[:20])
    assert seen[400] > 20 and seen[413] >= 1 and seen[202] >= 1
