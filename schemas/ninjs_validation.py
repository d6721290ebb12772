"""Validation of IPTC ninjs documents (News in JSON) against the vendored IPTC schemas.

The schemas in ``schemas/ninjs/`` are IPTC's files, unchanged (see the LICENSE there).
Nothing is read or compiled at import time: the registry and the per-version
validators are built on first use and cached for the life of the process, and
``jsonschema``/``referencing`` themselves are imported lazily.

Decisions, each checked against IPTC's conformance suite (tests/unit/schemas):

* Each schema is validated with the draft it declares: ninjs 2.0 is **draft-04**
  (it uses ``id``, not ``$id``), 2.1/2.2/3.0/3.1 and GeoJSON are **2020-12**.
* ``$ref``\\ s resolve only from a local registry holding every vendored schema
  under its own id; any other URI fails to resolve - nothing is ever fetched.
* ``format`` is asserted with each draft's FormatChecker (IPTC's suite gives the
  same verdicts with and without it), so a ``date-time`` that does not parse is
  refused at the door; a ``date-time`` whose year is outside schemas/times.py's
  window is refused too (its reason names the window).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import orjson

from schemas.codec import check_depth
from schemas.errors import InvalidContent
from schemas.times import EARLIEST_YEAR, LATEST_YEAR

if TYPE_CHECKING:
    from referencing import Registry

__all__ = [
    "DEFAULT_VERSION",
    "SUPPORTED_VERSIONS",
    "decode_document",
    "validate_bytes",
    "validate_document",
    "validate_files",
    "version_from_schema_uri",
]

SUPPORTED_VERSIONS: Final = ("2.0", "2.1", "2.2", "3.0", "3.1")
DEFAULT_VERSION: Final = "3.1"

_PACKAGE: Final = "schemas"
_SCHEMA_DIR: Final = "ninjs"
_GEOJSON_FILE: Final = "GeoJSON-schema.json"
_MAX_DETAIL: Final = 300
"""Longest validator message kept in a reason (messages embed the offending value)."""

_SCHEMA_URI: Final = re.compile(
    r"https?://(?:www\.)?iptc\.org/std/ninjs/ninjs-schema_(?P<version>[0-9]+\.[0-9]+)\.json#?",
    re.IGNORECASE | re.ASCII,
)
_LINE_BREAKS: Final = re.compile("[\r\n\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")


def version_from_schema_uri(uri: str) -> str | None:
    """The supported ninjs version named by a schema URI, else None.

    Accepts http or https, with or without ``www.``, with or without a trailing
    ``#``, e.g. ``http://www.iptc.org/std/ninjs/ninjs-schema_3.1.json`` -> "3.1".
    URIs of other schemas, or of ninjs versions not in SUPPORTED_VERSIONS, give None.
    """
    match = _SCHEMA_URI.fullmatch(uri.strip())
    if match is None:
        return None
    version = match["version"]
    return version if version in SUPPORTED_VERSIONS else None


def decode_document(raw: bytes) -> dict[str, Any]:
    """Parse a payload that must be one JSON object in UTF-8.

    Raises InvalidContent for empty input, invalid UTF-8, invalid JSON, a
    top-level value that is not an object, or nesting deeper than schemas.codec's
    MAX_DEPTH.
    """
    if not raw or raw.isspace():
        raise _invalid("empty file" if not raw else "empty file (only whitespace)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(_utf8_problem(raw) or f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise _invalid(f"top level is {_json_type(value)}, expected an object")
    check_depth(value)  # before the schema validation, which recurses: the stream worker's bound
    return value


def validate_document(doc: dict[str, Any], version: str | None = None) -> str:
    """Validate a decoded ninjs document; return the ninjs version it was checked against.

    `version` None means: the version named by the document's top-level ``$schema``
    when it has one (a ``$schema`` that names no supported ninjs version is
    InvalidContent), else DEFAULT_VERSION.  An explicit unsupported `version` is
    a programming error: ValueError.

    Beware: none of IPTC's ninjs schemas allows a top-level ``$schema`` member
    (2.0 has additionalProperties, 2.1+ unevaluatedProperties false), so a
    document carrying one selects its version and is then rejected by it.
    IPTC's own place for the schema URI is ``standard.schema``, which is not
    used for selection: real documents put unsupported or vendor URIs there
    (ninjs 1.3, ttninjs) and are still valid.

    Raises InvalidContent("<JSON path>: <message>") with the most relevant error
    (jsonschema's best_match; deterministic for a given document and version).
    """
    if version is None:
        version = _declared_version(doc)
    else:
        _require_supported(version)
    validator = _validator(version)
    # A top-level "$schema" is the document naming its schema (a JSON Schema convention that
    # the CLI and intake honour); it is not a ninjs property, so it is not validated as one.
    body = {k: v for k, v in doc.items() if k != "$schema"} if "$schema" in doc else doc
    try:
        error = _best_error(validator, body)
    except RecursionError:
        raise _invalid("$: document is nested too deeply to validate") from None
    if error is not None:
        raise _invalid(error)
    return version


def validate_bytes(raw: bytes, version: str | None = None) -> tuple[dict[str, Any], str]:
    """decode_document then validate_document: (document, ninjs version used)."""
    if version is not None:
        _require_supported(version)
    doc = decode_document(raw)
    return doc, validate_document(doc, version)


def validate_files(paths: Sequence[Path], version: str | None) -> tuple[int, list[str]]:
    """Back end of ``lantoa validate [--ninjs-version V] FILE...``.

    Returns (0 if every file is valid else 1, one "<path>: <reason>" line per
    invalid file, in the order given).  Missing or unreadable files are invalid.
    Never raises for bad files; an unsupported `version` is a usage error
    (ValueError) that the CLI should prevent with ``choices=SUPPORTED_VERSIONS``.
    """
    if version is not None:
        _require_supported(version)
    problems: list[str] = []
    for path in paths:
        reason = _check_file(Path(path), version)
        if reason is not None:
            problems.append(_one_line(f"{path}: {reason}"))
    return (1 if problems else 0), problems


def _check_file(path: Path, version: str | None) -> str | None:
    """The reason `path` is invalid, or None.

    Hook for other content types: dispatch on ``path.suffix`` here (e.g. ``.cap``
    / ``.xml`` to the CAP validator); everything else is treated as ninjs.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    try:
        validate_bytes(raw, version)
    except InvalidContent as exc:
        return exc.reason
    return None


# --- helpers -----------------------------------------------------------------


def _invalid(reason: str) -> InvalidContent:
    return InvalidContent(_one_line(reason))


def _one_line(text: str) -> str:
    return _LINE_BREAKS.sub(lambda m: m[0].encode("unicode_escape").decode("ascii"), text)


def _shorten(text: str) -> str:
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def _require_supported(version: str) -> None:
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(
            f"unsupported ninjs version {version!r}; expected one of {', '.join(SUPPORTED_VERSIONS)}"
        )


def _declared_version(doc: dict[str, Any]) -> str:
    if "$schema" not in doc:
        return DEFAULT_VERSION
    declared = doc["$schema"]
    if not isinstance(declared, str):
        raise _invalid(f"$['$schema']: {_shorten(repr(declared))} is not a string")
    version = version_from_schema_uri(declared)
    if version is None:
        raise _invalid(
            f"$['$schema']: {_shorten(repr(declared))} is not a supported ninjs schema"
            f" (ninjs {', '.join(SUPPORTED_VERSIONS)})"
        )
    return version


def _utf8_problem(raw: bytes) -> str | None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not valid UTF-8: {exc.reason} (byte 0x{raw[exc.start]:02x}) at byte offset {exc.start}"
    return None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def _best_error(validator: Any, doc: dict[str, Any]) -> str | None:
    from jsonschema.exceptions import best_match

    error = best_match(validator.iter_errors(doc))
    if error is None:
        return None
    detail = error.cause.reason if isinstance(error.cause, InvalidContent) else str(error.message)
    return f"{error.json_path}: {_shorten(detail)}"


def _bounded_date_times(base: Any) -> Any:
    """``base`` (a jsonschema FormatChecker) whose ``date-time`` also refuses years outside
    schemas/times.py's window: every date-time of a document, not only those Lantoa reads, so
    ``lantoa validate`` and the stream worker agree on a document dated 0001 or 9999."""
    from jsonschema import FormatChecker

    checker = FormatChecker(())
    checker.checkers = dict(base.checkers)
    rfc3339, _ = base.checkers["date-time"]

    def date_time(instance: object) -> bool:
        if not rfc3339(instance):
            return False
        if isinstance(instance, str) and not EARLIEST_YEAR <= int(instance[:4]) <= LATEST_YEAR:
            raise InvalidContent(
                f"date-time {instance[:40]!r} is outside the years {EARLIEST_YEAR}..{LATEST_YEAR} "
                "Lantoa accepts"
            )
        return True

    checker.checks("date-time", raises=InvalidContent)(date_time)
    return checker


def _read_schema(name: str) -> Any:
    return orjson.loads(resources.files(_PACKAGE).joinpath(_SCHEMA_DIR, name).read_bytes())


def _schema_file(version: str) -> str:
    return f"ninjs-schema_{version}.json"


@functools.cache
def _schemas() -> tuple[Registry[Any], dict[str, str]]:
    """(registry of every vendored schema under its own id, ninjs version -> schema id)."""
    from referencing import Registry, Resource

    entries: list[tuple[str, Resource[Any]]] = []
    ids: dict[str, str] = {}
    for version in SUPPORTED_VERSIONS:
        resource = Resource.from_contents(_read_schema(_schema_file(version)))
        uri = resource.id()
        if not uri:
            raise RuntimeError(f"vendored {_schema_file(version)} has no id")
        entries.append((uri, resource))
        ids[version] = uri
    geojson = Resource.from_contents(_read_schema(_GEOJSON_FILE))
    if not geojson.id():
        raise RuntimeError(f"vendored {_GEOJSON_FILE} has no $id")
    entries.append((str(geojson.id()), geojson))
    # Offline by construction: a Registry's default `retrieve` raises NoSuchResource for
    # any URI it does not hold, and passing our own registry stops jsonschema from
    # falling back to its (deprecated) fetch-over-HTTP registry.
    registry: Registry[Any] = Registry().with_resources(entries).crawl()
    return registry, ids


@functools.cache
def _validator(version: str) -> Any:
    """The compiled validator for `version`, of the draft its schema declares."""
    from jsonschema.validators import validator_for

    registry, ids = _schemas()
    schema = registry.contents(ids[version])
    validator_class = validator_for(schema, default=None)
    if validator_class is None:
        raise RuntimeError(f"{_schema_file(version)} declares an unknown draft {schema.get('$schema')!r}")
    # date-time values are checked (rfc3339-validator): an embargo or a version time that does
    # not parse must be refused at the door, not when the stream app reads it.
    checker = _bounded_date_times(validator_class.FORMAT_CHECKER)
    return validator_class(schema, registry=registry, format_checker=checker)
