"""Fixtures and helpers shared by the archive tests against a real S3 server (test_archive_s3*.py).

The fixtures are module-scoped and imported by each test module, so each module gets its own
versitygw server, as when these tests were one file. Expected keys and checksums are computed here
from the uri and from the bytes read back, not taken from the adapter.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import uuid
import wave
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from helpers import sample_paths

from consumers.archive.adapter import ArchiveAdapter
from consumers.archive.config import ArchiveConfig, S3Credentials
from consumers.delivery.base import Prior
from infra.local.s3.versitygw import S3Server, VersitygwError, build_versitygw
from schemas.models import Action, Command, IdempotencyKey, Priority
from schemas.topics import Channel
from streams.articles.render import public_url

BASE_URL = "https://tin.lantoa.example.vn"
TARGET = "archive:main"
NAMES = ("bulletin.html", "document.json", "index.html", "qr.png")
KEY_RE = re.compile(
    r"^articles/[0-9a-f]{64}/(manifest\.json|v[0-9]+/(document\.json|index\.html|bulletin\.html"
    r"|qr\.png|audio\.wav))$"
)
NO_PRIOR = Prior()


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    started = time.monotonic()
    try:
        build_versitygw()
    except VersitygwError as exc:  # a failure, never a skip: the archive is untested without it
        pytest.fail(f"versitygw could not be built: {exc}")
    built = time.monotonic() - started
    with S3Server() as server:
        print(f"\nversitygw ready in {built:.1f} s (build/cache) + start, at {server.endpoint_url}")
        yield server


def client_for(s3: S3Server, access_key: str | None = None, secret_key: str | None = None) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=s3.endpoint_url,
        region_name=s3.region,
        aws_access_key_id=access_key or s3.access_key,
        aws_secret_access_key=secret_key or s3.secret_key,
        config=Config(
            s3={"addressing_style": "path"},
            retries={"mode": "standard", "total_max_attempts": 2},
            connect_timeout=2,
            read_timeout=10,
        ),
    )


@pytest.fixture(scope="module")
def raw(s3: S3Server) -> Any:
    return client_for(s3)


@pytest.fixture
def bucket() -> str:
    return f"lt-{uuid.uuid4().hex[:16]}"


def config(s3: S3Server, bucket: str, **overrides: Any) -> ArchiveConfig:
    values: dict[str, Any] = dict(
        bucket=bucket,
        endpoint_url=s3.endpoint_url,
        region=s3.region,
        credentials=S3Credentials(s3.access_key, s3.secret_key),
        addressing_style="path",
        read_timeout=10.0,
    )
    values.update(overrides)
    return ArchiveConfig(**values)


async def started(s3: S3Server, bucket: str, **overrides: Any) -> ArchiveAdapter:
    adapter = ArchiveAdapter(config(s3, bucket, **overrides))
    await adapter.start()
    return adapter


def command(
    doc: dict[str, Any],
    action: Action = Action.PUBLISH,
    *,
    url: str | None = None,
    payload: dict[str, Any] | None = None,
    uri: str | None = None,
    version: int | None = None,
) -> Command:
    uri = uri if uri is not None else doc["uri"]
    version = version if version is not None else int(doc["version"])
    if payload is None:
        payload = {
            "document": doc,
            "public_url": public_url(BASE_URL, uri) if url is None else url,
            "ninjs_version": "3.1",
        }
    return Command(
        key=IdempotencyKey(uri, version, Channel.ARCHIVE, TARGET, action),
        priority=Priority.NORMAL,
        issued_at="2026-11-26T01:00:01.000Z",
        payload=payload,
        published_at="2026-11-26T08:00:00+07:00",
        event_id=str(uuid.uuid4()),
    )


def retract(uri: str, version: int, reason: str) -> Command:
    return command({}, Action.RETRACT, payload={"reason": reason}, uri=uri, version=version)


def samples() -> list[dict[str, Any]]:
    return [json.loads(p.read_text(encoding="utf-8")) for p in sample_paths()]


def prefix_of(uri: str) -> str:
    return f"articles/{hashlib.sha256(uri.encode('utf-8', 'surrogatepass')).hexdigest()}/"


def all_versions(raw: Any, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for page in raw.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += page.get("Versions", []) + page.get("DeleteMarkers", [])
    return out


def current_keys(raw: Any, bucket: str, prefix: str = "") -> list[str]:
    keys: list[str] = []
    for page in raw.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys += [o["Key"] for o in page.get("Contents", [])]
    return sorted(keys)


def read(raw: Any, bucket: str, key: str, version_id: str | None = None) -> tuple[bytes, dict[str, Any]]:
    kwargs: dict[str, Any] = {"Bucket": bucket, "Key": key, "ChecksumMode": "ENABLED"}
    if version_id:
        kwargs["VersionId"] = version_id
    r = raw.get_object(**kwargs)
    return r["Body"].read(), r


def manifest(raw: Any, bucket: str, uri: str) -> dict[str, Any]:
    body, _ = read(raw, bucket, prefix_of(uri) + "manifest.json")
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def write_wav(path: Path, seconds: float = 0.5) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(bytes(int(22050 * seconds) * 2))
    return path


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of <style> elements."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)


ALLOWED_TAGS = {
    "html",
    "head",
    "meta",
    "title",
    "link",
    "style",
    "body",
    "article",
    "header",
    "h1",
    "p",
    "footer",
    "a",
    "figure",
    "img",
    "figcaption",
    "main",
}


def assert_safe_page(text: str, url: str) -> Tags:
    lowered = text.lower()
    assert "<script" not in lowered and "<iframe" not in lowered and "<svg" not in lowered
    tags = Tags(text)
    assert {t for t, _ in tags.tags} <= ALLOWED_TAGS
    assert sum(1 for t, _ in tags.tags if t == "style") == 1
    for tag, attrs in tags.tags:
        for name, value in attrs:
            assert not name.lower().startswith("on"), (tag, name, value)
            assert "javascript:" not in (value or "").lower().replace(" ", ""), (tag, name, value)
            if name in ("href", "src"):
                assert value in (url, "qr.png"), (tag, name, value)
    html_tag = next(attrs for t, attrs in tags.tags if t == "html")
    assert ("lang", "vi") in html_tag
    csp = [dict(a) for t, a in tags.tags if t == "meta" and ("http-equiv", "Content-Security-Policy") in a]
    assert (
        csp and "default-src 'none'" in str(csp[0]["content"]) and "script-src" not in str(csp[0]["content"])
    )
    return tags
