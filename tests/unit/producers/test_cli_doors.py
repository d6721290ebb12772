"""The CLI's doors at their bounds: files read up to the limit and not a byte more, the same limit as
the stream worker's; the CAP checks are those of parse_cap."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from helpers import SHARED, every_ward_alert, sample_paths

from producers.cli.main import main
from producers.client import prepare
from schemas.cap import MAX_CAP_BYTES
from schemas.errors import InvalidContent
from streams.articles.intake import MAX_EVENT_BYTES

TYPHOON = SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap"


def padded_ninjs(size: int) -> bytes:
    raw = sample_paths()[0].read_bytes().rstrip()
    assert raw.endswith(b"}")
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


def padded_cap(size: int) -> bytes:
    raw = TYPHOON.read_bytes()
    return raw + b" " * (size - len(raw))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("command", [("validate",), ("publish", "--dry-run")])
def test_ninjs_files_up_to_the_stream_limit_and_not_a_byte_more(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at, past = tmp_path / "at.json", tmp_path / "past.json"
    at.write_bytes(padded_ninjs(MAX_EVENT_BYTES))
    past.write_bytes(padded_ninjs(MAX_EVENT_BYTES + 1))
    assert run(capsys, *command, str(at))[0] == 0
    code, out, err = run(capsys, *command, str(past))
    assert (
        code == 1
        and f"{past}: file too large: {MAX_EVENT_BYTES + 1} bytes (limit {MAX_EVENT_BYTES})" in out + err
    )


@pytest.mark.parametrize("command", [("validate",), ("alert", "--dry-run")])
def test_cap_files_up_to_the_cap_limit_and_not_a_byte_more(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at, past = tmp_path / "at.cap", tmp_path / "past.cap"
    at.write_bytes(padded_cap(MAX_CAP_BYTES))
    past.write_bytes(padded_cap(MAX_CAP_BYTES + 1))
    assert run(capsys, *command, str(at))[0] == 0
    code, out, err = run(capsys, *command, str(past))
    assert (
        code == 1
        and f"{past}: file too large: {MAX_CAP_BYTES + 1} bytes (limit {MAX_CAP_BYTES})" in out + err
    )


def test_an_endless_file_is_refused_after_the_limit(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "alert", "--dry-run", "/dev/zero")
    assert code == 1 and err == f"/dev/zero: file too large: more than the limit of {MAX_CAP_BYTES} bytes\n"


def test_a_national_alert_dry_run_names_every_ward(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "national.cap"
    path.write_bytes(every_ward_alert())
    code, out, _ = run(capsys, "alert", "--dry-run", "--json", str(path))
    assert code == 0 and len(orjson.loads(out)["zones"]) == 3321


def test_the_publish_client_refuses_what_the_worker_would_dead_letter() -> None:
    with pytest.raises(InvalidContent) as caught:
        prepare(padded_ninjs(MAX_EVENT_BYTES + 1))
    assert (
        caught.value.reason
        == f"document of {MAX_EVENT_BYTES + 1} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"
    )
    assert prepare(padded_ninjs(MAX_EVENT_BYTES)).article.version >= 1


def test_untrusted_values_in_a_dry_run_plan_are_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = orjson.loads(sample_paths()[0].read_bytes())
    doc["uri"] = "urn:lantoa:x:\x1b[31m"
    path = tmp_path / "a\x1b]0;t\x07\u202e.json"
    path.write_bytes(orjson.dumps(doc))
    code, out, err = run(capsys, "publish", "--dry-run", str(path))
    # A uri holding controls is refused (schemas/text.py); the refusal line shows it escaped.
    assert code == 1 and not any(c in out + err for c in "\x1b\u202e\x07")
    assert "a\\x1b]0;t\\x07\\u202e.json: uri contains the invisibl" in err
    doc["uri"] = "urn:lantoa:x:plain"
    path.write_bytes(orjson.dumps(doc))
    code, out, _ = run(capsys, "publish", "--dry-run", str(path))
    assert code == 0 and "a\\x1b]0;t\\x07\\u202e.json: urn:lantoa:x:plain v1 publish" in out


def test_an_undecodable_file_name_is_printed_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = (tmp_path / "bad").as_posix() + "\udcff.json"  # as Python gives a non-UTF-8 name from argv
    code, out, _ = run(capsys, "validate", name)
    assert code == 1 and out.startswith(f"{tmp_path}/bad\\udcff.json: cannot read: No such file or directory")
