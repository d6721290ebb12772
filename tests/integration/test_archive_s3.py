"""The archive adapter against a real S3 server (versitygw on loopback, SigV4 checked).

No Kafka here: commands are built from the five sample articles and handed to the adapter the
way the delivery runtime does. Expected keys and checksums are computed in the test from the
uri and from the bytes read back, not taken from the adapter.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import html
import http.client
import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import segno
from archive_s3_support import (
    BASE_URL,
    KEY_RE,
    NAMES,
    NO_PRIOR,
    all_versions,
    assert_safe_page,
    bucket,
    client_for,
    command,
    config,
    current_keys,
    manifest,
    prefix_of,
    raw,
    read,
    s3,
    samples,
    started,
    write_wav,
)
from botocore.exceptions import ClientError
from helpers import ROOT, article_doc
from html_dom import dom

from consumers.archive.adapter import ArchiveAdapter
from consumers.archive.config import ArchiveConfig, ArchiveConfigError, S3Credentials
from consumers.delivery.base import Effect, Prior
from consumers.delivery.errors import PermanentDeliveryError, TargetPaused
from infra.local.processes import pid_alive
from infra.local.s3.versitygw import S3Server, supports_user_xattrs
from schemas.errors import InvalidContent
from streams.articles.render import public_url

# The module fixture may build versitygw from source (~3 min cold on 2 cores) inside the first
# test's setup, which pytest-timeout counts; CI should run `python -m infra.local.s3 build` first.
pytestmark = pytest.mark.timeout(900)


# --------------------------------------------------------------------------------------------
# The server itself
# --------------------------------------------------------------------------------------------


def test_server_checks_signatures_and_checksums(s3: S3Server, raw: Any, bucket: str) -> None:
    raw.create_bucket(Bucket=bucket)
    assert raw.list_buckets()["Buckets"] is not None

    wrong_secret = client_for(s3, secret_key=s3.secret_key[:-1] + ("A" if s3.secret_key[-1] != "A" else "B"))
    with pytest.raises(ClientError) as refused:
        wrong_secret.list_buckets()
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as refused:
        wrong_secret.put_object(Bucket=bucket, Key="x", Body=b"x")
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    unknown_key = client_for(s3, access_key="LTNOSUCHKEY000000000")
    with pytest.raises(ClientError) as refused:
        unknown_key.list_buckets()
    assert refused.value.response["Error"]["Code"] == "InvalidAccessKeyId"
    assert current_keys(raw, bucket) == []  # nothing got in

    # The body is checked against x-amz-checksum-sha256, and conditional create is honoured.
    with pytest.raises(ClientError) as bad:
        raw.put_object(
            Bucket=bucket,
            Key="k",
            Body=b"hello",
            ChecksumSHA256=base64.b64encode(hashlib.sha256(b"other").digest()).decode(),
        )
    assert bad.value.response["Error"]["Code"] == "BadDigest"
    raw.put_object(Bucket=bucket, Key="k", Body=b"hello", IfNoneMatch="*")
    with pytest.raises(ClientError) as exists:
        raw.put_object(Bucket=bucket, Key="k", Body=b"hello again", IfNoneMatch="*")
    assert exists.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_sidecar_metadata_for_file_systems_without_xattrs(s3: S3Server) -> None:
    # This machine's disk has user xattrs (probed); force the sidecar layout that a file system
    # without them gets, and check that metadata and checksums still round-trip.
    assert s3.uses_sidecar() is (not supports_user_xattrs(s3.data_dir))
    with S3Server(sidecar=True) as side:
        assert "--sidecar" in side.command()
        client = client_for(side)
        client.create_bucket(Bucket="lt-sidecar")
        client.put_bucket_versioning(Bucket="lt-sidecar", VersioningConfiguration={"Status": "Enabled"})
        digest = hashlib.sha256(b"noi dung").digest()
        client.put_object(
            Bucket="lt-sidecar",
            Key="a/b",
            Body=b"noi dung",
            Metadata={"sha256": digest.hex()},
            ChecksumSHA256=base64.b64encode(digest).decode(),
            IfNoneMatch="*",
        )
        head = client.head_object(Bucket="lt-sidecar", Key="a/b", ChecksumMode="ENABLED")
        assert head["Metadata"]["sha256"] == digest.hex()
        assert head["ChecksumSHA256"] == base64.b64encode(digest).decode()
        assert any(p.is_file() for p in side.sidecar_dir.rglob("*"))


async def test_adapter_with_wrong_credentials_pauses_and_alerts(s3: S3Server, raw: Any, bucket: str) -> None:
    raw.create_bucket(Bucket=bucket)
    bad = ArchiveAdapter(config(s3, bucket, credentials=S3Credentials(s3.access_key, "not-the-secret")))
    with pytest.raises(TargetPaused) as paused:
        await bad.start()
    assert paused.value.code == "SignatureDoesNotMatch" and paused.value.alert
    assert paused.value.retry_after > 0

    bad_key = ArchiveAdapter(
        config(s3, bucket, credentials=S3Credentials("LTNOSUCHKEY000000000", s3.secret_key)),
        client=client_for(s3, access_key="LTNOSUCHKEY000000000"),
    )
    with pytest.raises(TargetPaused) as paused:
        await bad_key.deliver(command(samples()[0]), NO_PRIOR)
    assert paused.value.code == "InvalidAccessKeyId" and paused.value.alert
    assert current_keys(raw, bucket) == []


def test_cli_start_writes_credentials_0600_and_never_prints_them(tmp_path: Path) -> None:
    state = tmp_path / "s3.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = subprocess.run(
        [
            sys.executable,
            "-m",
            "infra.local.s3",
            "start",
            "--state-file",
            str(state),
            "--data-dir",
            str(tmp_path / "root"),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert start.returncode == 0, start.stderr
    info = json.loads(state.read_text())
    try:
        creds = Path(info["credentials_file"])
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        secret = next(
            line.split("=", 1)[1].strip()
            for line in creds.read_text().splitlines()
            if line.startswith("aws_secret_access_key")
        )
        assert start.stdout.strip() == info["endpoint_url"]
        assert secret not in start.stdout + start.stderr + state.read_text()
        assert secret not in Path(f"/proc/{info['pid']}/cmdline").read_text(errors="replace")
        exports = subprocess.run(
            [sys.executable, "-m", "infra.local.s3", "env", "--state-file", str(state)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        assert secret not in exports and "LANTOA_S3_CREDENTIALS_FILE" in exports
        settings = dict(line.removeprefix("export ").split("=", 1) for line in exports.splitlines())
        cfg = ArchiveConfig.from_env({**settings, "LANTOA_S3_BUCKET": "lt-cli-check"})
        adapter = ArchiveAdapter(cfg)
        asyncio.run(adapter.start())
        asyncio.run(adapter.close())

        os.chmod(creds, 0o644)
        with pytest.raises(ArchiveConfigError, match="chmod 600"):
            asyncio.run(ArchiveAdapter(cfg).start())
    finally:
        stop = subprocess.run(
            [sys.executable, "-m", "infra.local.s3", "stop", "--state-file", str(state), "--remove-data-dir"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert stop.returncode == 0, stop.stderr
    assert not pid_alive(info["pid"])
    assert not (tmp_path / "root").exists()


def test_server_keeps_connections_alive(s3: S3Server) -> None:
    # Without --keep-alive versitygw answers "Connection: close" and every boto3 call opens a
    # new TCP connection.
    assert "--keep-alive" in s3.command()
    conn = http.client.HTTPConnection("127.0.0.1", s3.port, timeout=10)
    try:
        for _ in range(2):
            conn.request("GET", "/")  # unsigned: refused, but answered on the same connection
            response = conn.getresponse()
            response.read()
            assert response.status == 403
            assert (response.getheader("Connection") or "").lower() != "close"
            assert not response.will_close
        assert conn.sock is not None
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# Archiving
# --------------------------------------------------------------------------------------------


async def test_samples_archived_with_expected_keys_and_checksums(
    s3: S3Server, raw: Any, bucket: str, tmp_path: Path
) -> None:
    docs = samples()
    audio_for = docs[0]["uri"]
    wav = write_wav(tmp_path / "bulletin.wav")
    adapter = await started(s3, bucket, audio_lookup=lambda uri, version: wav if uri == audio_for else None)
    assert raw.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"

    timings: list[float] = []
    for doc in docs:
        t0 = time.perf_counter()
        effect = await adapter.deliver(command(doc), NO_PRIOR)
        timings.append(time.perf_counter() - t0)
        assert effect.outcome == "delivered"
        uri = doc["uri"]
        root = prefix_of(uri)
        names = set(NAMES) | ({"audio.wav"} if uri == audio_for else set())
        expected = {f"{root}v1/{n}" for n in names} | {root + "manifest.json"}
        assert set(current_keys(raw, bucket, root)) == expected
        assert effect.external_id == root + "manifest.json"

        m = manifest(raw, bucket, uri)
        assert m["uri"] == uri and m["status"] == "public" and m["takedowns"] == []
        [entry] = m["versions"]
        assert entry["version"] == 1 and entry["public_url"] == public_url(BASE_URL, uri)
        records = {r["name"]: r for r in entry["objects"]}
        assert set(records) == names
        for name in names:
            body, meta = read(raw, bucket, f"{root}v1/{name}")
            digest = hashlib.sha256(body).hexdigest()
            assert records[name]["sha256"] == digest == meta["Metadata"]["sha256"]
            assert meta["ChecksumSHA256"] == base64.b64encode(hashlib.sha256(body).digest()).decode()
            assert records[name]["size"] == len(body)
            assert records[name]["version_id"] == meta["VersionId"]
            assert records[name]["content_type"] == meta["ContentType"]
            assert (
                effect.detail["objects"][name]["sha256"] == digest
                and effect.detail["objects"][name]["written"]
            )

        # document.json is the document itself, canonical: sorted keys, compact, UTF-8.
        body, _ = read(raw, bucket, f"{root}v1/document.json")
        assert json.loads(body) == doc
        assert body == json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
        # The QR code is the public URL at error level M.
        png, meta = read(raw, bucket, f"{root}v1/qr.png")
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and meta["ContentType"] == "image/png"
        qr = segno.make(public_url(BASE_URL, uri), error="m", boost_error=False, micro=False)
        assert qr.error == "M"
        # The reading page: Vietnamese, the headline and paragraphs as text, the link and the QR.
        page = read(raw, bucket, f"{root}v1/index.html")[0].decode()
        assert_safe_page(page, public_url(BASE_URL, uri))
        headline = doc["headlines"][0]["value"]
        parsed = dom(page)  # compared as parsed text: escaping style is the template engine's
        assert parsed.one("h1").text == " ".join(headline.split())
        first_paragraph = doc["bodies"][0]["value"].split("\n")[0].strip()
        assert " ".join(first_paragraph.split()) in [p.text for p in parsed.all("p")]
        bulletin = read(raw, bucket, f"{root}v1/bulletin.html")[0].decode()
        assert_safe_page(bulletin, public_url(BASE_URL, uri))
        assert "BẢN TIN NỘI BỘ" in bulletin and 'src="qr.png"' in bulletin

    audio, meta = read(raw, bucket, prefix_of(audio_for) + "v1/audio.wav")
    assert audio == wav.read_bytes() and meta["ContentType"] == "audio/wav"
    print(f"\nper-article archive time: {', '.join(f'{t * 1000:.0f} ms' for t in timings)}")
    await adapter.close()


async def test_replaying_every_command_creates_no_new_versions(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket)
    commands = [command(doc) for doc in samples()]
    for cmd in commands:
        await adapter.deliver(cmd, NO_PRIOR)
    before = all_versions(raw, bucket)
    assert len(before) == len(commands) * (len(NAMES) + 1)  # one version per key
    manifests = {
        cmd.key.uri: read(raw, bucket, prefix_of(cmd.key.uri) + "manifest.json")[0] for cmd in commands
    }

    for _ in range(2):
        for cmd in commands:
            effect = await adapter.deliver(cmd, NO_PRIOR)
            assert effect.outcome == "delivered" and effect.detail["manifest_written"] is False
            assert not any(o["written"] for o in effect.detail["objects"].values())
    # A second adapter (another worker after a crash) converges the same way.
    other = await started(s3, bucket)
    for cmd in commands:
        await other.deliver(cmd, NO_PRIOR)

    after = all_versions(raw, bucket)
    assert sorted((v["Key"], v["VersionId"]) for v in after) == sorted(
        (v["Key"], v["VersionId"]) for v in before
    )
    for uri, body in manifests.items():
        assert read(raw, bucket, prefix_of(uri) + "manifest.json")[0] == body


async def test_reconcile_tells_written_from_not_written(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket)
    doc = samples()[1]
    cmd = command(doc)
    assert await adapter.reconcile(cmd, Prior(unknown_command_id=cmd.key.command_id())) is None
    await adapter.deliver(cmd, NO_PRIOR)
    found = await adapter.reconcile(cmd, NO_PRIOR)
    assert isinstance(found, Effect) and found.outcome == "delivered"
    assert found.detail["objects"]["document.json"]["key"] == prefix_of(doc["uri"]) + "v1/document.json"

    # A crash after the objects and before the manifest: reconcile says "not done", and the
    # next delivery completes it without writing any object again.
    raw.delete_object(Bucket=bucket, Key=prefix_of(doc["uri"]) + "manifest.json")
    assert await adapter.reconcile(cmd, NO_PRIOR) is None
    objects_before = [v for v in all_versions(raw, bucket) if not v["Key"].endswith("manifest.json")]
    effect = await adapter.deliver(cmd, NO_PRIOR)
    assert (
        not any(o["written"] for o in effect.detail["objects"].values()) and effect.detail["manifest_written"]
    )
    objects_after = [v for v in all_versions(raw, bucket) if not v["Key"].endswith("manifest.json")]
    assert len(objects_after) == len(objects_before)
    assert await adapter.reconcile(cmd, NO_PRIOR) is not None


async def test_hostile_uris_stay_under_their_prefix(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket)
    hostile = [
        "../../etc/passwd",
        "/abs/path",
        "a\x00b",
        "urn:x:ａｂｃ",
        "urn:x:abc",
        "..%2F..%2Fescape",
        "..\\..\\windows",
        "urn:x:\u202eevil",
        "x" * 5000,
        "%00",
        "./",
        "articles/../..",
    ]
    for uri in hostile:
        doc = article_doc(uri)
        # A public URL is at most 2,048 characters (and a QR code holds ~2,300): give the long one a short URL.
        url = f"{BASE_URL}/a/{hashlib.sha256(uri.encode()).hexdigest()}" if len(uri) > 1000 else None
        effect = await adapter.deliver(command(doc, url=url), NO_PRIOR)
        assert effect.outcome == "delivered"
        keys = current_keys(raw, bucket, prefix_of(uri))
        assert len(keys) == len(NAMES) + 1
        assert json.loads(read(raw, bucket, prefix_of(uri) + "v1/document.json")[0])["uri"] == uri
    # Look-alikes are different articles: no folding of "ａｂｃ" into "abc".
    assert prefix_of("urn:x:ａｂｃ") != prefix_of("urn:x:abc")
    keys = current_keys(raw, bucket)
    assert len(keys) == len(hostile) * (len(NAMES) + 1)
    assert all(KEY_RE.match(k) for k in keys), [k for k in keys if not KEY_RE.match(k)]
    # And on the server's disk nothing landed outside the bucket's articles/<hash>/ tree.
    bucket_dir = s3.data_dir / bucket
    files = [p for p in bucket_dir.rglob("*") if p.is_file() and ".sgwtmp" not in p.parts]
    assert len(files) == len(keys) and all(KEY_RE.match(p.relative_to(bucket_dir).as_posix()) for p in files)
    assert {p.name for p in s3.root.iterdir()} <= {"data", "iam", "versions", "sidecar", "versitygw.log"}
    assert all(p.name.startswith("lt-") for p in s3.data_dir.iterdir())
    everything = [p.relative_to(s3.root).as_posix() for p in s3.root.rglob("*")]
    assert not [
        p for p in everything if any(w in p for w in ("passwd", "etc", "abs", "windows", "escape", "evil"))
    ]


async def test_script_and_event_handlers_do_not_survive(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket)
    uri = "urn:lantoa:article:xss"
    doc = article_doc(
        uri,
        headlines=[
            {"role": "main", "contentType": "text/plain", "value": "<script>alert(1)</script>Tiêu đề"}
        ],
        descriptions=[
            {
                "role": "summary",
                "contentType": "text/html",
                "value": "<b onmouseover=alert(8)>Tóm tắt</b><img src=x onerror=alert(2)>",
            }
        ],
        bodies=[
            {
                "role": "main",
                "contentType": "text/html",
                "value": '<p>Đoạn một</p><script>alert(1)</script><img src=x onerror="alert(2)">'
                '<a href="javascript:alert(3)">bấm vào đây</a><p onclick="alert(4)">Đoạn hai</p>'
                '<svg onload=alert(5)></svg><iframe src="javascript:alert(6)"></iframe>'
                '<style>body{display:none}</style><a href=" JaVaScRiPt:alert(7)">x</a>'
                '<p>&lt;script&gt;alert(10)&lt;/script&gt;</p><math><mi xlink:href="javascript:alert(11)">m</mi></math>',
            },
            {"role": "extra", "contentType": "text/plain", "value": '"><script>alert(12)</script>'},
        ],
        by='"><script>alert(9)</script>',
        subjects=[{"name": "<img src=x onerror=alert(13)>", "uri": "urn:x:s"}],
    )
    url = public_url(BASE_URL, uri)
    await adapter.deliver(command(doc, url=url), NO_PRIOR)
    for name in ("index.html", "bulletin.html"):
        page = read(raw, bucket, f"{prefix_of(uri)}v1/{name}")[0].decode()
        tags = assert_safe_page(page, url)
        assert "alert(2)" not in page and "alert(3)" not in page and "alert(4)" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;Tiêu đề" in page  # the headline, as text
        assert "body{display:none}" not in "".join(tags.styles)
    page = read(raw, bucket, f"{prefix_of(uri)}v1/index.html")[0].decode()
    assert "<p>Đoạn một</p>" in page and "<p>Đoạn hai</p>" in page and "bấm vào đây" in page
    assert "&lt;script&gt;alert(10)&lt;/script&gt;" in page
    # The document itself is archived as sent: the record is not rewritten.
    assert json.loads(read(raw, bucket, f"{prefix_of(uri)}v1/document.json")[0]) == doc

    for bad_url in (
        "javascript:alert(1)",
        'https://x.vn/"><script>alert(1)</script>',
        "https://x.vn/a b",
        "ftp://x.vn/a",
        "https://user@x.vn/",
        "https://x.vn/\u0430",
        "//x.vn/a",
        "",
        "https://x.vn/a\n",
    ):
        with pytest.raises(InvalidContent):
            await adapter.deliver(command(article_doc("urn:lantoa:article:bad-url"), url=bad_url), NO_PRIOR)
    assert current_keys(raw, bucket, prefix_of("urn:lantoa:article:bad-url")) == []


async def test_invalid_commands_and_version_conflicts(s3: S3Server, raw: Any, bucket: str) -> None:
    adapter = await started(s3, bucket)
    doc = article_doc("urn:lantoa:article:conflict")
    with pytest.raises(InvalidContent, match="document"):
        await adapter.deliver(command(doc, payload={"public_url": BASE_URL + "/a/x"}), NO_PRIOR)
    with pytest.raises(InvalidContent, match="uri"):
        await adapter.deliver(command(doc, uri="urn:lantoa:article:other"), NO_PRIOR)
    with pytest.raises(InvalidContent, match="version"):
        await adapter.deliver(command(doc, version=2), NO_PRIOR)
    await adapter.deliver(command(doc), NO_PRIOR)
    changed = {**doc, "headlines": [{"role": "main", "value": "Một tiêu đề khác cho cùng phiên bản"}]}
    with pytest.raises(PermanentDeliveryError) as conflict:
        await adapter.deliver(command(changed), NO_PRIOR)
    assert conflict.value.code == "VersionConflict"
    assert json.loads(read(raw, bucket, prefix_of(doc["uri"]) + "v1/document.json")[0]) == doc
