"""What the CLI prints of strings it did not write: controls escaped, never raw to the terminal;
identifiers typed in NFD name the same article, question, target or zone."""

from __future__ import annotations

import argparse
import json
import unicodedata
from datetime import UTC, datetime, timezone
from typing import Any

import orjson
import pytest

from producers.cli import deadletters as dl
from producers.cli import questions as questions_cli
from producers.cli import status as status_cli
from producers.cli.terminal import escape_json_text, printable, printable_json
from schemas.deadletter import dead_letter_headers
from schemas.text import INVISIBLE

ESC = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J"  # write the clipboard, clear the screen
HOSTILE = f"bad{ESC}\u202eevil\u2066\r\nfake line\x9b31m\u200b"
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\u2066", "\r", "\u200b")


def raw_controls(text: str) -> list[str]:
    return [c for c in RAW if c in text] + [c for c in INVISIBLE.findall(text) if c != "\n"]


def test_printable_escapes_each_control_as_python_writes_it() -> None:
    out = printable(HOSTILE)
    assert (
        out == "bad\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2J\\u202eevil\\u2066\\x0d\\x0afake line\\x9b31m\\u200b"
    )
    assert printable("a\nb", newlines=True) == "a\nb"
    assert printable("Phường Hà Đông 👨\u200d👩\u200d👧") == "Phường Hà Đông 👨\u200d👩\u200d👧"
    assert printable("\U000e0041") == "\\U000e0041"


def test_printable_json_is_the_same_value_with_no_raw_control() -> None:
    value = {"reason": HOSTILE, "n": 1, "list": ["\u2028x", "ổn"]}
    text = printable_json(value)
    assert not raw_controls(text.replace("\n", "")) and "\u2028" not in text
    assert json.loads(text) == orjson.loads(text) == value
    plain = json.dumps(value, ensure_ascii=False, indent=2)
    assert json.loads(escape_json_text(plain)) == value and "\u202e" not in escape_json_text(plain)


def letter(headers: list[tuple[str, bytes]], key: bytes = b"k") -> dl.DeadLetter:
    dlh = dead_letter_headers(
        headers,
        topic="cms.articles",
        partition=1,
        offset=5,
        reason=f"refused: {HOSTILE}",
        stage="validate",
        now_iso="2026-11-26T01:00:00.000Z",
    )
    return dl.DeadLetter(0, 5, 0, key, orjson.dumps({"uri": HOSTILE}), dlh)


def test_deadletters_list_and_show_escape_header_values_keys_and_values() -> None:
    d = letter([("ce_source", HOSTILE.encode()), (f"x{ESC}", b"v")], key=HOSTILE.encode())
    listing = dl.render_list([d])
    shown = dl.render_one(d)
    assert not raw_controls(listing) and "\\x1b" in listing
    assert not raw_controls(shown.replace("\n", "")) and "fake line" in shown
    assert all(not line.startswith("fake line") for line in shown.splitlines())  # no line forged by a header
    refused = dl.Decision(d, None, f"invalid: {HOSTILE}")
    assert not raw_controls(refused.line()) and "\n" not in refused.line()


def test_deadletters_reason_filter_matches_either_normal_form() -> None:
    d = dl.DeadLetter(
        0,
        1,
        0,
        b"k",
        b"{}",
        dead_letter_headers(
            [],
            topic="t",
            partition=0,
            offset=1,
            reason="thiếu tiêu đề",
            stage="validate",
            now_iso="2026-11-26T01:00:00.000Z",
        ),
    )
    assert dl.select([d], reason=unicodedata.normalize("NFD", "thiếu")) == [d]


def status_view() -> dict[str, Any]:
    return {
        "uri": f"urn:a{ESC}",
        "version": 1,
        "state": "live",
        "title": HOSTILE,
        "events": [
            {
                "at": "2026-11-26T01:00:00Z",
                "stage": "fanout",
                "outcome": "routed",
                "version": 1,
                "reason": HOSTILE,
            }
        ],
        "channels": {
            "fanpage": {
                "states": {"failed": 1},
                "expected": 1,
                "targets": [
                    {
                        "target": f"fanpage:{ESC}",
                        "state": "failed",
                        "version": 1,
                        "action": "publish",
                        "updated_at": "2026-11-26T01:00:00Z",
                        "external_id": HOSTILE,
                        "reason": HOSTILE,
                    }
                ],
            }
        },
    }


def test_status_escapes_every_value_from_the_records() -> None:
    text = status_cli.render(status_view())
    assert not raw_controls(text.replace("\n", "")) and "\\x1b" in text
    assert all(not line.startswith("fake line") for line in text.splitlines())


def test_status_reads_an_nfd_uri_as_nfc(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[str] = []

    def fetch(url: str, uri: str, channel: str | None, state: str | None) -> dict[str, Any]:
        asked.append(uri)
        return status_view()

    monkeypatch.setattr(status_cli, "fetch_http", fetch)
    args = argparse.Namespace(
        uri=unicodedata.normalize("NFD", "urn:lantoa:article:tin-hà-nội"),
        kafka=False,
        url="http://x",
        channel=None,
        state=None,
        json=True,
        all=False,
        max_rows=50,
    )
    from schemas.settings import Settings

    assert status_cli.run(args, Settings.from_env({})) == 0
    assert asked == ["urn:lantoa:article:tin-hà-nội"]
    out = capsys.readouterr().out
    assert json.loads(out) == status_view() and not raw_controls(out.replace("\n", ""))


def question(**extra: Any) -> dict[str, Any]:
    return {
        "id": "q-abc",
        "state": "open",
        "platform": "zalo",
        "asked_at": "2026-11-26T01:00:00Z",
        "target": f"zalo:{ESC}",
        "article_uri": "urn:lantoa:article:tin-hà-nội",
        "text": HOSTILE,
        "question": True,
        **extra,
    }


def test_questions_escape_citizens_texts() -> None:
    text = questions_cli.render([question()], datetime(2026, 11, 26, 2, tzinfo=UTC))
    assert not raw_controls(text.replace("\n", "")) and "\\x1b" in text


def test_questions_and_answers_name_articles_and_ids_in_either_normal_form() -> None:
    table = {"q-hà1": question(id="q-hà1")}
    assert questions_cli.find(table, unicodedata.normalize("NFD", "hà1"))["id"] == "q-hà1"
    chosen = questions_cli.select(
        table, article=unicodedata.normalize("NFD", "urn:lantoa:article:tin-hà-nội")
    )
    assert [r["id"] for r in chosen] == ["q-hà1"]
