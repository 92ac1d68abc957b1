"""Secrets kept out of the config: every secret has a *_file form; risky settings warn."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.commands.demo.localredis import LocalRedis
from daemon.errors import ConfigError
from daemon.settings import load_settings
from daemon.settings.load import security_warnings
from daemon.sink import connect

PUSH = """
[[docplanner]]
name = "pl"
base_url = "https://www.znanylekarz.pl"
client_id = "id"
client_secret_file = "pl-secret"
mode = "both"
push_token_file = "pl-push-token"
"""


def credentials(tmp_path: Path, **files: str) -> dict[str, str]:
    directory = tmp_path / "creds"
    directory.mkdir(exist_ok=True)
    for name, value in files.items():
        path = directory / name.replace("_", "-")
        path.write_text(value + "\n")
        path.chmod(0o600)
    return {"CREDENTIALS_DIRECTORY": str(directory)}


def write(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "drainer.toml"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_push_token_and_redis_password_files_come_from_credentials_directory(
    tmp_path: Path,
) -> None:
    """push_token_file and [redis] password_file are read, scrubbed and never printed."""
    environ = credentials(
        tmp_path,
        pl_secret="client-secret-from-file",
        pl_push_token="push-token-from-a-file-0123456789",
        redis_password="redis-password-from-file",
    )
    text = '[redis]\npassword_file = "redis-password"\n' + PUSH
    settings = load_settings(write(tmp_path, text), environ)
    (account,) = settings.docplanner
    assert account.push_token is not None
    assert account.push_token.get_secret_value() == "push-token-from-a-file-0123456789"
    assert settings.redis.password is not None
    assert settings.redis.password.get_secret_value() == "redis-password-from-file"
    assert {
        "client-secret-from-file",
        "push-token-from-a-file-0123456789",
        "redis-password-from-file",
    } <= set(settings.secret_values())
    shown = str(settings.redacted())
    assert "from-file" not in shown and "from-a-file" not in shown
    assert security_warnings(settings, tmp_path / "drainer.toml", environ) == []


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (PUSH + 'push_token = "inline-and-file-token"\n', "docplanner[0]"),
        (PUSH.replace('push_token_file = "pl-push-token"', ""), "docplanner[0]"),
        ('[redis]\nurl = "redis://:pw@h:1/0"\npassword_file = "p"\n', "redis.password_file"),
        ('[redis]\npassword = "inline"\n', "redis"),
        ('[redis]\npassword_file = "/no/such/file"\n', "redis.password_file"),
    ],
)
def test_bad_secret_settings_name_the_key(tmp_path: Path, text: str, key: str) -> None:
    """Two forms of one secret, an inline Redis password or an unreadable file: one line."""
    environ = credentials(tmp_path, pl_secret="x" * 20, pl_push_token="y" * 20)
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, text), environ)
    message = str(caught.value)
    assert "\n" not in message and f": {key}" in message, message


def test_redis_password_file_authenticates(tmp_path: Path, own_redis: LocalRedis) -> None:
    """A Redis with requirepass is reached with the password from password_file."""
    admin = connect(load_settings(write(tmp_path, f'[redis]\nurl = "{own_redis.url}"\n'), {}).redis)
    admin.config_set("requirepass", "a-long-redis-password")
    try:
        environ = credentials(tmp_path, redis_password="a-long-redis-password")
        text = f'[redis]\nurl = "{own_redis.url}"\npassword_file = "redis-password"\n'
        client = connect(load_settings(write(tmp_path, text), environ).redis)
        assert client.ping() is True
        client.close()
    finally:
        admin.close()


def test_warnings_for_readable_secrets_and_http(tmp_path: Path) -> None:
    """World-readable secret files and configs with inline secrets and http:// warn."""
    environ = credentials(tmp_path, pl_secret="x" * 20, pl_push_token="y" * 20)
    (Path(environ["CREDENTIALS_DIRECTORY"]) / "pl-secret").chmod(0o644)
    text = PUSH.replace("https://", "http://")
    text += '[[myinvois]]\nname = "acme"\nbase_url = "https://h"\nclient_id = "i"\n'
    text += 'client_secret = "inline-secret-value"\n'
    path = write(tmp_path, text, mode=0o644)
    found = security_warnings(load_settings(path, environ), path, environ)
    assert len(found) == 3, found
    assert found[0].startswith("docplanner[0].base_url: http://")
    assert found[1].startswith("docplanner[0].client_secret_file: ") and "every user" in found[1]
    assert "myinvois[0].client_secret inline" in found[2]
    assert not any("x" * 20 in line for line in found)
    os.chmod(path, 0o600)
    assert len(security_warnings(load_settings(path, environ), path, environ)) == 2


@pytest.mark.parametrize("inline", [True, False], ids=["inline", "file"])
def test_a_push_token_shorter_than_16_characters_is_a_config_error(
    tmp_path: Path, inline: bool
) -> None:
    """A guessable push token (15 characters), inline or from a file, is a config error."""
    environ = credentials(tmp_path, pl_secret="x" * 20, pl_push_token="y" * 15)
    text = PUSH
    if inline:
        text = PUSH.replace('push_token_file = "pl-push-token"', 'push_token = "' + "z" * 15 + '"')
    with pytest.raises(ConfigError, match=r"push_token.*shorter than 16") as raised:
        load_settings(write(tmp_path, text), environ)
    assert "y" * 15 not in str(raised.value) and "z" * 15 not in str(raised.value)


def test_a_plain_http_identity_service_warns_though_the_api_is_https(tmp_path: Path) -> None:
    """The MyInvois client secret goes to identity_url: http:// there is cleartext too."""
    text = '[[myinvois]]\nname = "acme"\nbase_url = "https://api.example"\nclient_id = "i"\n'
    text += 'client_secret_file = "acme-secret"\nidentity_url = "http://id.example"\n'
    environ = credentials(tmp_path, acme_secret="y" * 20)
    path = write(tmp_path, text)
    found = security_warnings(load_settings(path, environ), path, environ)
    assert found == ["myinvois[0].identity_url: http:// sends the client secret in cleartext"]
