"""Secret files are their owner's alone: every loader refuses one open to group or others, naming
the path, the mode and the command that fixes it, and never quoting the secret."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import pytest

from consumers.archive.config import ArchiveConfigError, load_credentials_file
from consumers.zalo.tokens import TokenPair, TokenStore
from producers import cap_http
from producers.cli import questions as questions_cli
from producers.webhooks import WebhookSecrets
from schemas.secrets import SecretFile, SecretFileError, read_secret, read_secret_json, write_secret
from schemas.settings import Settings, SettingsError

SECRET = "sieu-bi-mat-42"


def secret_file(tmp_path: Path, mode: int, data: bytes | None = None, name: str = "secret.json") -> Path:
    path = tmp_path / name
    path.write_bytes(data if data is not None else b'{"token": "%s"}' % SECRET.encode())
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_owner_only_modes_are_read(tmp_path: Path, mode: int) -> None:
    assert read_secret_json(secret_file(tmp_path, mode)) == {"token": SECRET}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o602, 0o610, 0o666])
def test_any_access_for_group_or_others_is_refused_with_path_mode_and_fix(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    with pytest.raises(SecretFileError) as caught:
        read_secret(path)
    message = str(caught.value)
    assert str(path) in message and f"mode {mode:04o}" in message and f"chmod 600 {path}" in message
    assert SECRET not in message


def test_the_mode_of_the_file_opened_counts_not_the_link(tmp_path: Path) -> None:
    good, bad = secret_file(tmp_path, 0o600, name="good.json"), secret_file(tmp_path, 0o644, name="bad.json")
    (tmp_path / "to-good").symlink_to(good)
    (tmp_path / "to-bad").symlink_to(bad)
    assert read_secret_json(tmp_path / "to-good") == {"token": SECRET}
    with pytest.raises(SecretFileError, match="mode 0644"):
        read_secret(tmp_path / "to-bad")


def test_a_missing_file_is_file_not_found_and_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_secret(tmp_path / "absent")
    (tmp_path / "dir").mkdir(mode=0o700)
    with pytest.raises(SecretFileError, match="cannot read"):
        read_secret(tmp_path / "dir")


def test_a_file_that_is_not_json_is_refused_without_quoting_it(tmp_path: Path) -> None:
    path = secret_file(tmp_path, 0o600, f"token={SECRET}".encode())
    with pytest.raises(SecretFileError) as caught:
        read_secret_json(path)
    assert "not a JSON object" in str(caught.value) and SECRET not in str(caught.value)


def test_write_secret_is_0600_from_creation_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        path = write_secret(tmp_path / "t.json", {"token": SECRET})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o600
    assert read_secret_json(path) == {"token": SECRET}
    assert [p.name for p in tmp_path.iterdir()] == ["t.json"]  # no temporary file left


def test_secret_file_refuses_at_start_and_notices_a_later_chmod(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError):
        SecretFile(secret_file(tmp_path, 0o644, name="open.json"))
    path = secret_file(tmp_path, 0o600)
    tokens = SecretFile(path)
    assert tokens.get("token") == SECRET
    os.chmod(path, 0o644)  # mtime unchanged: the mode is part of what is watched
    with pytest.raises(SecretFileError, match="chmod 600"):
        tokens.get("token")
    os.chmod(path, 0o600)
    assert tokens.get("token") == SECRET
    assert SECRET not in repr(tokens)
    assert SecretFile(None).get("token") is None and SecretFile(tmp_path / "absent").get("token") is None


def test_the_sasl_password_file_names_its_variable(tmp_path: Path) -> None:
    pw = secret_file(tmp_path, 0o644, SECRET.encode() + b"\n", name="pw")
    env = {
        "LANTOA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "LANTOA_SASL_MECHANISM": "PLAIN",
        "LANTOA_SASL_USERNAME": "lantoa",
        "LANTOA_SASL_PASSWORD_FILE": str(pw),
    }
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(env)
    assert "LANTOA_SASL_PASSWORD_FILE" in str(caught.value) and "chmod 600" in str(caught.value)
    assert SECRET not in str(caught.value)
    os.chmod(pw, 0o600)
    assert Settings.from_env(env).kafka.sasl_password == SECRET


def test_the_tls_client_key_must_be_private(tmp_path: Path) -> None:
    cert = secret_file(tmp_path, 0o644, b"CERT", name="client.pem")
    key = secret_file(tmp_path, 0o640, b"KEY", name="client.key")
    env = {
        "LANTOA_SECURITY_PROTOCOL": "SSL",
        "LANTOA_SSL_CERTFILE": str(cert),
        "LANTOA_SSL_KEYFILE": str(key),
    }
    with pytest.raises(SettingsError, match="LANTOA_SSL_KEYFILE.*mode 0640"):
        Settings.from_env(env)
    os.chmod(key, 0o600)
    assert Settings.from_env(env).kafka.ssl_keyfile == key


def test_the_zalo_token_store_refuses_an_open_file_and_writes_0600(tmp_path: Path) -> None:
    with pytest.raises(SecretFileError):
        TokenStore(
            secret_file(tmp_path, 0o644, b'{"access_token": "a", "refresh_token": "r"}', name="open.json")
        )
    store = TokenStore(tmp_path / "zalo-tokens.json")
    store.save(TokenPair("a", "r", 1.0))
    assert (tmp_path / "zalo-tokens.json").stat().st_mode & 0o777 == 0o600
    assert store.load().access_token == "a"
    os.chmod(tmp_path / "zalo-tokens.json", 0o604)
    with pytest.raises(SecretFileError, match="mode 0604"):
        store.load()


def test_webhook_secrets_and_s3_credentials_are_refused_open(tmp_path: Path) -> None:
    graph = secret_file(tmp_path, 0o644, b'{"app_secret": "%s"}' % SECRET.encode(), name="graph.json")
    with pytest.raises(SecretFileError, match="chmod 600"):
        WebhookSecrets.from_files(graph, None, "")
    os.chmod(graph, 0o600)
    assert WebhookSecrets.from_files(graph, None, "").graph_app_secret == SECRET
    creds = secret_file(
        tmp_path, 0o640, b"[default]\naws_access_key_id = A\naws_secret_access_key = S\n", name="credentials"
    )
    with pytest.raises(ArchiveConfigError, match="mode 0640.*chmod 600"):
        load_credentials_file(creds)


def test_lantoa_webhooks_exits_78_on_an_open_secret_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(questions_cli, "_settings", lambda: Settings())
    graph = secret_file(tmp_path, 0o644, b'{"app_secret": "%s"}' % SECRET.encode(), name="graph.json")
    args = argparse.Namespace(
        graph_secrets=str(graph), zalo_secrets=None, host="127.0.0.1", port=0, state_file=None
    )
    assert questions_cli.cmd_webhooks(args) == 78
    err = capsys.readouterr().err
    assert "cannot start" in err and str(graph) in err and "chmod 600" in err and SECRET not in err


def test_the_cap_token_file_is_refused_before_the_server_listens(tmp_path: Path) -> None:
    token = secret_file(tmp_path, 0o644, SECRET.encode(), name="cap-token")
    with pytest.raises(SecretFileError, match="chmod 600"):
        cap_http.cap_access(Settings(), token)
