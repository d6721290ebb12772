"""The `lantoa` command without a broker: validate, publish --dry-run, alert --dry-run, normalize."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import SHARED, memory_door, sample_paths
from vietnam_provinces import Ward

from producers.cap_http import make_app
from producers.cli.main import main
from producers.targets import local_registry
from schemas.access import AccessList, Role
from schemas.settings import Settings

CAP = SHARED / "standards" / "cap" / "testdata"
TYPHOON = SHARED / "samples" / "alerts" / "01-bao-so-5-khan-cap.cap"
REJECTED = {"invalid.cap", "noaa_errors.cap", "canada_errors.cap", "xee.cap"}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_validate_agrees_with_the_ninjs_suite(capsys: pytest.CaptureFixture[str]) -> None:
    suite = SHARED / "standards" / "ninjs" / "test_suite"
    for version_dir in sorted(suite.iterdir()):
        passing = sorted((version_dir / "should_pass").glob("*.json"))
        failing = sorted((version_dir / "should_fail").glob("*.json"))
        code, out, _ = run(capsys, "validate", "--ninjs-version", version_dir.name, *map(str, passing))
        assert code == 0 and out == "", version_dir.name
        code, out, _ = run(capsys, "validate", "--ninjs-version", version_dir.name, *map(str, failing))
        assert code == 1 and len(out.splitlines()) == len(failing)


def test_validate_bad_files_one_line_each(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.json").write_bytes(b"")
    (tmp_path / "latin1.json").write_bytes(b'{"uri": "\xe9"}')
    (tmp_path / "html.json").write_bytes(b"<html>")
    code, out, err = run(
        capsys, "validate", *(str(tmp_path / n) for n in ("empty.json", "latin1.json", "html.json"))
    )
    lines = out.splitlines()
    assert code == 1 and len(lines) == 3 and "Traceback" not in out + err
    assert "empty file" in lines[0] and "UTF-8" in lines[1] and "not JSON" in lines[2]


def test_validate_cap_verdicts(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(CAP.glob("*.cap"))
    code, out, _ = run(capsys, "validate", *map(str, files))
    refused = {Path(line.split(":", 1)[0]).name for line in out.splitlines()}
    assert code == 1 and refused == REJECTED
    code, out, _ = run(capsys, "validate", *(str(f) for f in files if f.name not in REJECTED))
    assert code == 0 and out == ""


def test_alert_dry_run_json_for_the_typhoon(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "alert", "--dry-run", "--json", str(TYPHOON))
    plan = json.loads(out)
    expected = sorted(int(w.code) for w in Ward.iter_all() if int(w.province_code) in (42, 44))
    assert code == 0 and len(expected) == 147
    assert {k: plan[k] for k in ("identifier", "status", "exercise", "lane", "zones")} == {
        "identifier": "VN-NCHMF-2026-0917-BAO05-01",
        "status": "Actual",
        "exercise": False,
        "lane": "emergency",
        "zones": expected,
    }
    # Every channel: Hà Tĩnh's page (a warning passes its subject filter), no Zalo group of 42 or
    # 44 in infra/targets.toml, no national page (a provincial alert), the archive.
    assert plan["targets"] == {
        "loudspeaker": [f"zone:{w}" for w in expected],
        "fanpage": ["fanpage:chuyen-doi-so-ha-tinh"],
        "zalo": [],
        "archive": ["archive:main"],
    }
    assert plan["root"] == plan["identifier"] and plan["withdrawn"]["fanpage"] == []


def test_alert_refuses_hostile_xml(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "alert", "--dry-run", "--json", str(CAP / "xee.cap"))
    assert code == 1 and "DTD" in err


def test_publish_dry_run_plan(capsys: pytest.CaptureFixture[str]) -> None:
    first = sample_paths()[0]
    code, out, _ = run(capsys, "publish", "--dry-run", "--json", str(first))
    plan = json.loads(out)
    assert code == 0 and plan["channels"]["loudspeaker"]["count"] == 126
    assert set(plan["channels"]["fanpage"]["targets"]) == {"fanpage:thong-tin-chinh-phu", "fanpage:ha-noi"}


def test_publish_refuses_invalid_and_sends_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LANTOA_KAFKA_BOOTSTRAP", "127.0.0.1:1")  # nothing listens: a send would fail loudly
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"uri": "urn:x", "version": "1", "headlines": "x"}))
    code, _, err = run(capsys, "publish", str(sample_paths()[0]), str(bad))
    assert code == 1 and "$.headlines" in err and "nothing sent" in err


def test_normalize(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "normalize", "UBND", "xã", "họp", "lúc", "7h30")
    assert code == 0 and out.strip() == "Ủy ban nhân dân xã họp lúc bảy giờ ba mươi phút"


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[Any] = []
        self.actors: list[str | None] = []

    def send(
        self, checked: Any, source: str = "", *, actor: str | None = None, approver: str | None = None
    ) -> dict[str, Any]:
        self.sent.append(checked)
        self.actors.append(actor)
        return {
            "identifier": checked.alert.identifier,
            "lane": checked.plan.lane,
            "zones": len(checked.plan.zones),
            "partition": 0,
            "offset": len(self.sent) - 1,
        }


async def test_cap_http_endpoint() -> None:
    producer = FakeProducer()
    access = AccessList.single_token("s3cret-s3cret-s3cret-0", "cap-token", [Role.SENDER], "test")
    app = make_app(memory_door(producer), access)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/cap", data=TYPHOON.read_bytes())
        assert resp.status == 401 and producer.sent == []
        auth = {"Authorization": "Bearer s3cret-s3cret-s3cret-0"}
        resp = await client.post("/cap", data=(CAP / "xee.cap").read_bytes(), headers=auth)
        body = await resp.json()
        assert resp.status == 400 and "DTD" in body["reason"] and producer.sent == []
        resp = await client.post("/cap", data=TYPHOON.read_bytes(), headers=auth)
        body = await resp.json()
        assert resp.status == 202 and body["lane"] == "emergency" and body["zones"] == 147
