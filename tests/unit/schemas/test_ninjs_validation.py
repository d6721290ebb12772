"""ninjs validation against IPTC's conformance suite, IPTC's examples and our samples.

The shared standards live outside the repo: ``<repo>/../shared`` or $LANTOA_SHARED_DIR.
A missing folder is a test failure, never a skip.
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from schemas import ninjs_validation as nv
from schemas.errors import InvalidContent
from schemas.ninjs_validation import (
    DEFAULT_VERSION,
    SUPPORTED_VERSIONS,
    decode_document,
    validate_bytes,
    validate_document,
    validate_files,
    version_from_schema_uri,
)

REPO = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("LANTOA_SHARED_DIR") or REPO / ".." / "shared").resolve()
NINJS = SHARED / "standards" / "ninjs"
SUITE = NINJS / "test_suite"
EXAMPLES = NINJS / "examples"
SAMPLES = SHARED / "samples" / "articles"
VENDORED = REPO / "schemas" / "ninjs"

SCHEMA_FILES = [f"ninjs-schema_{v}.json" for v in SUPPORTED_VERSIONS] + ["GeoJSON-schema.json"]

# IPTC examples that IPTC's own schema rejects, with the exact reason we must give.
# 3.0_collection_20231016-event-timeline-sample.json is a JSON *array* of 14 items (an
# "event timeline" collection), and every ninjs schema requires an object at the top
# level.  Its items are not valid 3.0 either (see test_collection_example_items): they
# carry "events" as one object where 3.0 has an array, and eventDetails.dates with
# "estimatedStartDate"/"estimatedEndDate", which are not in the 3.0 schema - the example
# appears to predate the final 3.0 schema.
KNOWN_INVALID_EXAMPLES = {
    "3.0_collection_20231016-event-timeline-sample.json": "top level is an array, expected an object",
}
COLLECTION_EXAMPLE = "3.0_collection_20231016-event-timeline-sample.json"


def _missing(where: Path) -> Any:
    return pytest.param(where, id=f"MISSING-{where}")


def _files(folder: Path, pattern: str = "*.json") -> list[Any]:
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        return [_missing(folder)]
    return [pytest.param(f, id=f.relative_to(SHARED).as_posix()) for f in files]


def _suite_cases(kind: str) -> list[Any]:
    versions = sorted(p.name for p in SUITE.iterdir()) if SUITE.is_dir() else []
    if not versions:
        return [_missing(SUITE)]
    cases: list[Any] = []
    for version in versions:
        cases += _files(SUITE / version / kind)
    return cases


def _existing(path: Path) -> Path:
    if not path.is_file():
        pytest.fail(f"shared standards not found: {path} (set LANTOA_SHARED_DIR)")
    return path


def _example_version(path: Path) -> str:
    match = re.match(r"(?:doc-)?(\d+\.\d+)_", path.name)
    assert match, f"example {path.name} has no version prefix"
    return match[1]


@pytest.fixture(autouse=True)
def _no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Schema $refs must resolve offline: any connection attempt fails the test."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# --- IPTC conformance suite ------------------------------------------------------


def test_suite_folders_are_exactly_the_supported_versions() -> None:
    assert SUITE.is_dir(), f"IPTC test suite not found at {SUITE}"
    assert sorted(p.name for p in SUITE.iterdir()) == sorted(SUPPORTED_VERSIONS)


@pytest.mark.parametrize("path", _suite_cases("should_pass"))
def test_suite_should_pass(path: Path) -> None:
    version = _existing(path).parents[1].name
    doc, used = validate_bytes(path.read_bytes(), version)
    assert used == version
    assert doc == orjson.loads(path.read_bytes())


@pytest.mark.parametrize("path", _suite_cases("should_fail"))
def test_suite_should_fail(path: Path) -> None:
    version = _existing(path).parents[1].name
    with pytest.raises(InvalidContent) as caught:
        validate_bytes(path.read_bytes(), version)
    assert caught.value.reason.startswith("$"), caught.value.reason  # a schema verdict, not a decode error


# --- IPTC examples and our samples -----------------------------------------------


@pytest.mark.parametrize("path", _files(EXAMPLES))
def test_iptc_example(path: Path) -> None:
    version = _example_version(_existing(path))
    raw = path.read_bytes()
    if path.name in KNOWN_INVALID_EXAMPLES:
        with pytest.raises(InvalidContent) as caught:
            validate_bytes(raw, version)
        assert caught.value.reason == KNOWN_INVALID_EXAMPLES[path.name]
    else:
        assert validate_bytes(raw, version)[1] == version


def test_known_invalid_examples_still_exist() -> None:
    for name in KNOWN_INVALID_EXAMPLES:
        assert (EXAMPLES / name).is_file(), f"stale entry {name}"


def test_collection_example_items() -> None:
    items = orjson.loads(_existing(EXAMPLES / COLLECTION_EXAMPLE).read_bytes())
    assert isinstance(items, list) and len(items) == 14
    reasons = []
    for item in items:
        with pytest.raises(InvalidContent) as caught:
            validate_document(item, "3.0")
        reasons.append(caught.value.reason)
    events = [r for r in reasons if r.startswith("$.events: {")]
    assert all(r.endswith("} is not of type 'array'") for r in events)
    assert reasons[len(events) :] == [
        "$.eventDetails.dates: Additional properties are not allowed"
        " ('estimatedEndDate', 'estimatedStartDate' were unexpected)"
    ] * (14 - len(events))
    assert len(events) == 12


@pytest.mark.parametrize("path", _files(SAMPLES))
def test_lantoa_sample_article_is_valid_3_1(path: Path) -> None:
    raw = _existing(path).read_bytes()
    assert validate_bytes(raw)[1] == "3.1"
    assert validate_bytes(raw, "3.1")[1] == "3.1"


# --- vendored schemas ------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEMA_FILES + ["LICENSE"])
def test_vendored_file_is_iptc_original(name: str) -> None:
    shared = NINJS / ("LICENSE" if name == "LICENSE" else f"schema/{name}")
    assert (VENDORED / name).read_bytes() == _existing(shared).read_bytes()


@pytest.mark.parametrize(
    ("version", "draft"),
    [("2.0", "Draft4Validator")] + [(v, "Draft202012Validator") for v in SUPPORTED_VERSIONS[1:]],
)
def test_each_version_uses_its_declared_draft_and_schema_is_well_formed(version: str, draft: str) -> None:
    validator = nv._validator(version)
    assert type(validator).__name__ == draft
    type(validator).check_schema(validator.schema)


def test_unknown_refs_never_resolve_and_are_not_fetched() -> None:
    from referencing.exceptions import Unresolvable

    registry, _ = nv._schemas()
    resolver = registry.resolver()
    assert resolver.lookup("https://geojson.org/schema/GeoJSON.json#").contents["title"] == "GeoJSON"
    with pytest.raises(Unresolvable):
        resolver.lookup("https://example.com/not-vendored.json")


def test_import_does_no_work() -> None:
    code = (
        "import sys, schemas.ninjs_validation as m;"
        "assert 'jsonschema' not in sys.modules and 'referencing' not in sys.modules, 'eager import';"
        "assert m._schemas.cache_info().currsize == 0 and m._validator.cache_info().currsize == 0"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


# --- version_from_schema_uri -----------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "version"),
    [
        ("http://www.iptc.org/std/ninjs/ninjs-schema_3.1.json", "3.1"),
        ("https://iptc.org/std/ninjs/ninjs-schema_2.0.json#", "2.0"),
        ("https://www.iptc.org/std/ninjs/ninjs-schema_3.0.json", "3.0"),
        ("http://iptc.org/std/ninjs/ninjs-schema_2.1.json#", "2.1"),
        ("  HTTP://WWW.IPTC.ORG/std/ninjs/ninjs-schema_2.2.json  ", "2.2"),
        ("http://www.iptc.org/std/ninjs/ninjs-schema_1.3.json", None),
        ("http://www.iptc.org/std/ninjs/ninjs-schema_4.0.json", None),
        ("https://tt.se/spec/ttninjs/ttninjs-schema_3.0.json", None),
        ("https://evil.example/iptc.org/std/ninjs/ninjs-schema_3.1.json", None),
        ("http://www.iptc.org/std/ninjs/ninjs-schema_3.1.json\n", "3.1"),
        ("http://www.iptc.org/std/ninjs/ninjs-schema_3.1.json#/x", None),
        ("", None),
    ],
)
def test_version_from_schema_uri(uri: str, version: str | None) -> None:
    assert version_from_schema_uri(uri) == version


# --- decode_document -------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "empty file"),
        (b" \r\n\t", "empty file (only whitespace)"),
        (b'{"uri": "\xff"}', "not valid UTF-8: invalid start byte (byte 0xff) at byte offset 9"),
        (b'{"uri": "caf\xc3"}', "not valid UTF-8: invalid continuation byte (byte 0xc3) at byte offset 12"),
        (b"[]", "top level is an array, expected an object"),
        (b'[{"uri": "x"}]', "top level is an array, expected an object"),
        (b'"x"', "top level is a string, expected an object"),
        (b"1.5", "top level is a number, expected an object"),
        (b"false", "top level is a boolean, expected an object"),
        (b"null", "top level is null, expected an object"),
    ],
)
def test_decode_rejects(raw: bytes, reason: str) -> None:
    with pytest.raises(InvalidContent) as caught:
        decode_document(raw)
    assert caught.value.reason == reason
    assert str(caught.value) == reason


@pytest.mark.parametrize(
    "raw",
    [b"{", b"<article/>", b'{"uri": "x"} trailing', b"NaN", b'\xef\xbb\xbf{"uri": "x"}', b"[" * 2000],
)
def test_decode_rejects_non_json_with_orjson_reason(raw: bytes) -> None:
    with pytest.raises(InvalidContent) as caught:
        decode_document(raw)
    assert caught.value.reason.startswith("not JSON: ")
    assert "line 1 column" in caught.value.reason


def test_decode_returns_the_object() -> None:
    assert decode_document('{"uri": "x", "headline": "Chuyển đổi số"}'.encode()) == {
        "uri": "x",
        "headline": "Chuyển đổi số",
    }


# --- validate_document / validate_bytes ------------------------------------------


def test_default_version_is_3_1() -> None:
    assert DEFAULT_VERSION == "3.1"
    assert validate_document({"uri": "urn:x"}) == "3.1"
    assert validate_bytes(b'{"uri": "urn:x"}') == ({"uri": "urn:x"}, "3.1")


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_explicit_version_is_used(version: str) -> None:
    assert validate_document({"uri": "urn:x"}, version) == version


def test_first_reason_is_json_path_and_message() -> None:
    doc = {"uri": "urn:x", "headlines": [{"value": 3}]}
    for version in SUPPORTED_VERSIONS:
        with pytest.raises(InvalidContent) as caught:
            validate_document(doc, version)
        assert caught.value.reason == "$.headlines[0].value: 3 is not of type 'string'"


def test_reason_is_deterministic_with_several_errors() -> None:
    doc = {"uri": 5, "headlines": [{"value": 3}], "urgency": "high", "extra": True}
    reasons = set()
    for _ in range(3):
        with pytest.raises(InvalidContent) as caught:
            validate_document(doc)
        reasons.add(caught.value.reason)
    assert len(reasons) == 1


def test_reason_is_one_bounded_line() -> None:
    doc = {"uri": "urn:x", "headlines": "a\n" * 10_000}
    with pytest.raises(InvalidContent) as caught:
        validate_document(doc)
    reason = caught.value.reason
    assert reason.startswith("$.headlines: 'a\\na\\n")
    assert "\n" not in reason and len(reason) < 400


def test_unsupported_explicit_version_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="1.5"):
        validate_document({"uri": "urn:x"}, "1.5")
    with pytest.raises(ValueError):
        validate_bytes(b"not even json", "3.2")


def test_schema_member_selects_the_version() -> None:
    # "$schema" names the document's schema; it is not itself validated as a ninjs property.
    assert (
        validate_document({"$schema": "https://iptc.org/std/ninjs/ninjs-schema_2.0.json#", "uri": "urn:x"})
        == "2.0"
    )
    assert (
        validate_document({"$schema": "http://www.iptc.org/std/ninjs/ninjs-schema_3.0.json", "uri": "urn:x"})
        == "3.0"
    )


def test_schema_member_selection_is_visible_on_content() -> None:
    # "versioncreated" is a 2.0 property and unknown to 3.x: the $schema decides which.
    doc = {"$schema": "http://www.iptc.org/std/ninjs/ninjs-schema_2.0.json", "uri": "urn:x", "type": "text"}
    assert validate_document({**doc, "versioncreated": "2024-11-01T00:00:00Z"}) == "2.0"
    with pytest.raises(InvalidContent) as caught:
        validate_document({**doc, "$schema": doc["$schema"].replace("2.0", "3.1"), "versioncreated": "x"})
    assert "'versioncreated'" in caught.value.reason  # unknown to 3.1


def test_explicit_version_wins_over_schema_member() -> None:
    doc = {
        "$schema": "http://www.iptc.org/std/ninjs/ninjs-schema_1.0.json",
        "uri": "urn:x",
        "versioncreated": "2024-11-01T00:00:00Z",
    }
    assert validate_document(doc, "2.0") == "2.0"
    with pytest.raises(InvalidContent) as caught:
        validate_document(doc, "3.1")
    assert "'versioncreated'" in caught.value.reason


@pytest.mark.parametrize(
    ("declared", "reason"),
    [
        (
            "http://www.iptc.org/std/ninjs/ninjs-schema_1.3.json",
            "$['$schema']: 'http://www.iptc.org/std/ninjs/ninjs-schema_1.3.json' is not a supported ninjs"
            " schema (ninjs 2.0, 2.1, 2.2, 3.0, 3.1)",
        ),
        (
            "https://example.com/schema.json",
            "$['$schema']: 'https://example.com/schema.json' is not a supported ninjs schema"
            " (ninjs 2.0, 2.1, 2.2, 3.0, 3.1)",
        ),
        (3.1, "$['$schema']: 3.1 is not a string"),
    ],
)
def test_unknown_schema_member_is_invalid_content(declared: object, reason: str) -> None:
    with pytest.raises(InvalidContent) as caught:
        validate_bytes(orjson.dumps({"$schema": declared, "uri": "urn:x"}))
    assert caught.value.reason == reason


def test_standard_schema_does_not_select_the_version() -> None:
    # IPTC's suite: a 2.0 document may name the 1.3 schema in standard.schema.
    doc = {"uri": "urn:x", "standard": {"schema": "http://www.iptc.org/std/ninjs/ninjs-schema_1.3.json"}}
    assert validate_document(doc) == "3.1"


def test_date_time_formats_are_checked() -> None:
    # The IPTC suite agrees with and without format checking; we check date-times because an
    # embargo that does not parse must be refused at the door.
    with pytest.raises(InvalidContent) as caught:
        validate_document({"uri": "urn:x", "versionCreated": "yesterday"})
    assert caught.value.reason.startswith("$.versionCreated: 'yesterday' is not a 'date-time'")
    assert validate_document({"uri": "urn:x", "versionCreated": "2024-11-01T08:00:00+07:00"}) == "3.1"


def test_too_deep_document_is_invalid_content() -> None:
    raw = b'{"uri": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    with pytest.raises(InvalidContent) as caught:
        validate_bytes(raw)
    assert caught.value.reason == "nested deeper than 64 levels, the most Lantoa accepts"


def test_nesting_is_bounded_before_the_schema_as_the_stream_worker_bounds_it() -> None:
    def nested(levels: int) -> bytes:  # the top-level object is level 1
        return b'{"uri": "urn:x", "altids": ' + b"[" * (levels - 1) + b"]" * (levels - 1) + b"}"

    with pytest.raises(InvalidContent) as caught:
        decode_document(nested(65))
    assert "nested deeper than 64 levels" in caught.value.reason
    assert decode_document(nested(64))["uri"] == "urn:x"


@pytest.mark.parametrize(
    ("moment", "accepted"),
    [
        ("1970-01-01T00:00:00+14:00", True),
        ("2199-12-31T23:59:59-14:00", True),
        ("1969-12-31T23:59:59Z", False),
        ("2200-01-01T00:00:00+00:00", False),
        ("0001-01-01T00:00:00-14:00", False),
        ("9999-12-31T23:59:59+14:00", False),
    ],
)
def test_every_date_time_is_bounded_to_the_years_lantoa_accepts(moment: str, accepted: bool) -> None:
    for version in SUPPORTED_VERSIONS:
        field = "versioncreated" if version.startswith("2.") else "versionCreated"
        doc = {"uri": "urn:x", field: moment}
        if accepted:
            assert validate_document(doc, version) == version
            continue
        with pytest.raises(InvalidContent) as caught:
            validate_document(doc, version)
        assert caught.value.reason == (
            f"$.{field}: date-time {moment!r} is outside the years 1970..2199 Lantoa accepts"
        ), version


# --- validate_files (lantoa validate) --------------------------------------------


def test_validate_files_all_valid(tmp_path: Path) -> None:
    good = tmp_path / "good.json"
    good.write_bytes(b'{"uri": "urn:x"}')
    assert validate_files([good], None) == (0, [])
    assert validate_files([good, good], "2.0") == (0, [])
    assert validate_files([], None) == (0, [])


def test_validate_files_reports_each_invalid_file_in_order(tmp_path: Path) -> None:
    files = {
        "good.json": b'{"uri": "urn:x"}',
        "empty.json": b"",
        "latin1.json": '{"uri": "café"}'.encode("latin-1"),
        "text.json": b"hello",
        "array.json": b"[]",
        "bad.json": b'{"uri": "urn:x", "headlines": [{"value": 3}]}',
    }
    for name, raw in files.items():
        (tmp_path / name).write_bytes(raw)
    missing = tmp_path / "missing.json"
    paths = [tmp_path / name for name in files] + [missing, tmp_path]

    code, lines = validate_files(paths, None)

    assert code == 1
    assert lines == [
        f"{tmp_path / 'empty.json'}: empty file",
        f"{tmp_path / 'latin1.json'}: not valid UTF-8: invalid continuation byte (byte 0xe9) at byte offset 12",
        f"{tmp_path / 'text.json'}: not JSON: unexpected character, expected a JSON value: line 1 column 1 (char 0)",
        f"{tmp_path / 'array.json'}: top level is an array, expected an object",
        f"{tmp_path / 'bad.json'}: $.headlines[0].value: 3 is not of type 'string'",
        f"{missing}: cannot read: No such file or directory",
        f"{tmp_path}: cannot read: Is a directory",
    ]


def test_validate_files_uses_the_given_version(tmp_path: Path) -> None:
    doc = tmp_path / "v2.json"
    doc.write_bytes(b'{"uri": "urn:x", "versioncreated": "2024-11-01T00:00:00Z"}')
    assert validate_files([doc], "2.0") == (0, [])
    code, lines = validate_files([doc], "3.1")
    assert code == 1
    assert lines == [f"{doc}: $: Unevaluated properties are not allowed ('versioncreated' was unexpected)"]


def test_validate_files_rejects_unknown_version_up_front(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        validate_files([tmp_path / "whatever.json"], "9.9")


def test_validate_files_lines_stay_one_line(tmp_path: Path) -> None:
    odd = tmp_path / "two\nlines.json"
    odd.write_bytes(b"[]")
    code, lines = validate_files([odd], None)
    assert code == 1
    assert lines == [f"{tmp_path}/two\\nlines.json: top level is an array, expected an object"]


@pytest.mark.parametrize("version", ["3.0", "3.1"])
def test_geojson_ref_is_enforced_in_3_x(version: str) -> None:
    # The suite's 3.0 "bad_geojson" file is a 2.x document ("geojson", lower case), so it
    # never reaches the GeoJSON schema under 3.x; check the offline $ref here.
    point = {"type": "Point", "coordinates": [105.85, 21.03]}
    assert validate_document({"uri": "urn:x", "places": [{"geoJSON": point}]}, version) == version
    with pytest.raises(InvalidContent) as caught:
        validate_document({"uri": "urn:x", "places": [{"geoJSON": {"type": "Point"}}]}, version)
    assert caught.value.reason.startswith("$.places[0].geoJSON")
