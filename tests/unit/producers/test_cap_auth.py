"""Authenticated CAP ingest (issue 15, item 1) without a broker: who may POST /cap, what an unknown,
unprivileged or mis-sending caller gets, what --insecure-no-auth logs, and the CLI refusing to start
the server without credentials."""

from __future__ import annotations

import base64
import logging
import os
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from helpers import TYPHOON_ALERT, memory_door

from producers.cap_http import UNAUTHENTICATED, cap_access, make_app
from producers.cli.main import main
from producers.targets import local_registry
from schemas.access import AccessError, AccessList, Role, add_identity
from schemas.secrets import SecretFileError
from schemas.settings import Settings

TYPHOON_SENDER = "canhbao@nchmf.example.vn"  # <sender> of the typhoon sample


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str | None]] = []

    def send(
        self, checked: Any, source: str = "", *, actor: str | None = None, approver: str | None = None
    ) -> dict[str, Any]:
        self.sent.append((checked.alert.identifier, actor))
        return {"identifier": checked.alert.identifier, "lane": checked.plan.lane, "zones": 0}


def identities(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    path = tmp_path / "identities.json"
    tokens = {
        "nchmf": add_identity(path, "nchmf", [Role.SENDER], [TYPHOON_SENDER]),
        "ha-tinh-pctt": add_identity(path, "ha-tinh-pctt", [Role.SENDER], ["pctt@hatinh.gov.vn"]),
        "any-sender": add_identity(path, "any-sender", [Role.SENDER]),
        "editor-lan": add_identity(path, "editor-lan", [Role.EDITOR]),
    }
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path, tokens


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def post(app: Any, headers: dict[str, str] | None = None, body: bytes | None = None) -> tuple[int, Any]:
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/cap", data=body or TYPHOON_ALERT.read_bytes(), headers=headers or {})
        return resp.status, (await resp.json(), resp.headers.get("WWW-Authenticate"))


async def test_named_senders_each_with_their_own_token(tmp_path: Path) -> None:
    path, tokens = identities(tmp_path)
    access = cap_access(Settings(access_file=path))
    assert access is not None
    producer = FakeProducer()
    app = make_app(memory_door(producer), access)
    async with TestClient(TestServer(app)) as client:
        body = TYPHOON_ALERT.read_bytes()

        async def status(headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
            resp = await client.post("/cap", data=body, headers=headers)
            return resp.status, await resp.json()

        # no credentials, a wrong token, an empty bearer, a token of the right length but unknown
        for headers in ({}, bearer("x" * 43), {"Authorization": "Bearer "}, {"Authorization": "Bearer"}):
            code, reply = await status(headers)
            assert code == 401 and reply["accepted"] is False, headers
        # the sender allowed to send as the alert's <sender>, by bearer and by HTTP Basic
        code, reply = await status(bearer(tokens["nchmf"]))
        assert code == 202 and reply["actor"] == "nchmf"
        basic = base64.b64encode(f"any-sender:{tokens['any-sender']}".encode()).decode()
        code, reply = await status({"Authorization": f"Basic {basic}"})
        assert code == 202 and reply["actor"] == "any-sender"
        # Basic with another identity's name and this token: refused
        forged = base64.b64encode(f"nchmf:{tokens['any-sender']}".encode()).decode()
        code, _ = await status({"Authorization": f"Basic {forged}"})
        assert code == 401
        # a sender limited to another province's <sender>: 403 with the reason
        code, reply = await status(bearer(tokens["ha-tinh-pctt"]))
        assert (
            code == 403
            and "may not send as CAP sender" in reply["reason"]
            and TYPHOON_SENDER in reply["reason"]
        )
        # an identity without the sender role: 403
        code, reply = await status(bearer(tokens["editor-lan"]))
        assert code == 403 and "no sender role" in reply["reason"]
    assert producer.sent and [a for _, a in producer.sent] == ["nchmf", "any-sender"]


async def test_the_401_names_the_schemes_and_nothing_is_sent(tmp_path: Path) -> None:
    path, _ = identities(tmp_path)
    producer = FakeProducer()
    app = make_app(memory_door(producer), cap_access(Settings(access_file=path)))
    code, (reply, challenge) = await post(app, body=b"<not even xml")
    assert code == 401 and challenge is not None and "Bearer" in challenge
    assert "token" in reply["reason"] and producer.sent == []


async def test_without_access_every_request_is_refused_unless_insecure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = FakeProducer()
    code, _ = await post(make_app(memory_door(producer)))
    assert code == 401 and producer.sent == []
    insecure = make_app(memory_door(producer), insecure=True)
    with caplog.at_level(logging.WARNING, logger="producers.cap_http"):
        async with TestClient(TestServer(insecure)) as client:
            for _ in range(2):
                resp = await client.post("/cap", data=TYPHOON_ALERT.read_bytes())
                assert resp.status == 202 and (await resp.json())["actor"] == UNAUTHENTICATED
    warned = [r for r in caplog.records if "WITHOUT authentication" in r.getMessage()]
    assert len(warned) == 2  # one per request
    assert [a for _, a in producer.sent] == [UNAUTHENTICATED, UNAUTHENTICATED]


def secret(tmp_path: Path, name: str, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / name
    path.write_text(text)
    os.chmod(path, mode)
    return path


def test_cap_access_reads_every_source_and_refuses_empty_or_loose_tokens(tmp_path: Path) -> None:
    assert cap_access(Settings()) is None
    good = "t" * 32
    file_only = cap_access(Settings(cap_token_file=secret(tmp_path, "tok", good + "\n")))
    assert file_only is not None and file_only.authenticate(f"Bearer {good}") is not None
    env = cap_access(Settings.from_env({"LANTOA_CAP_TOKEN": "e" * 30}))
    assert env is not None and env.authenticate("Bearer " + "e" * 30) is not None
    for text, why in (("", "empty"), ("   \n", "empty"), ("short", "shorter")):
        with pytest.raises(AccessError, match=why):
            cap_access(Settings(cap_token_file=secret(tmp_path, f"bad{len(text)}", text)))
    with pytest.raises(AccessError, match="empty"):
        cap_access(Settings.from_env({"LANTOA_CAP_TOKEN": " "}))
    with pytest.raises(SecretFileError, match="chmod 600"):
        cap_access(Settings(cap_token_file=secret(tmp_path, "open", good, 0o644)))
    viewers = tmp_path / "viewers.json"
    add_identity(viewers, "viewer-only", [Role.VIEWER])
    with pytest.raises(AccessError, match="no identity has the sender role"):
        cap_access(Settings(access_file=viewers))
    # the identities file and a token together: both are accepted
    path, tokens = identities(tmp_path)
    both = cap_access(Settings(access_file=path, cap_token_file=secret(tmp_path, "tok2", good)))
    assert isinstance(both, AccessList)
    assert {both.authenticate(f"Bearer {t}").name for t in (good, tokens["nchmf"])} == {"cap-token", "nchmf"}  # type: ignore[union-attr]


def test_alert_server_refuses_to_start_without_credentials(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("LANTOA_ACCESS_FILE", "LANTOA_CAP_TOKEN_FILE", "LANTOA_CAP_TOKEN", "LANTOA_CAP_TRUST_FILE"):
        monkeypatch.delenv(var, raising=False)
    # an address nothing listens on: the refusals come before any connection is tried
    monkeypatch.setenv("LANTOA_KAFKA_BOOTSTRAP", "127.0.0.1:9")
    assert main(["alert-server", "--port", "0"]) == 78
    err = capsys.readouterr().err
    assert "refuses to start without authentication" in err and "--insecure-no-auth" in err
    empty = secret(tmp_path, "empty", "")
    assert main(["alert-server", "--port", "0", "--token-file", str(empty)]) == 78
    assert "the token is empty" in capsys.readouterr().err
    monkeypatch.setenv("LANTOA_CAP_TOKEN", "z" * 30)
    assert main(["alert-server", "--port", "0", "--insecure-no-auth"]) == 78
    assert "choose one" in capsys.readouterr().err


def test_lantoa_access_add_shows_the_token_once_and_keeps_its_hash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "ids.json"
    assert (
        main(
            [
                "access",
                "add",
                "nchmf",
                "--role",
                "sender",
                "--cap-sender",
                TYPHOON_SENDER,
                "--file",
                str(path),
            ]
        )
        == 0
    )
    token = capsys.readouterr().out.strip()
    assert len(token) >= 40 and token not in path.read_text()
    ident = AccessList.load(path).authenticate(f"Bearer {token}")
    assert ident is not None and ident.name == "nchmf" and ident.may_send_as(TYPHOON_SENDER)
    assert not ident.may_send_as("other@example.vn")
    out_file = tmp_path / "duty.token"
    args = ["access", "add", "duty", "--role", "approver", "--role", "ops", "--file", str(path)]
    assert main([*args, "--token-out", str(out_file)]) == 0
    assert oct(out_file.stat().st_mode & 0o777) == "0o600"
    assert out_file.read_text().strip() not in capsys.readouterr().out
    assert main(["access", "list", "--file", str(path)]) == 0
    listing = capsys.readouterr().out
    assert "nchmf: sender cap_senders=" in listing and "duty: approver,ops" in listing
    assert main(["access", "add", "Bad Name", "--role", "sender", "--file", str(path)]) == 78
