"""Configuration: the SPEC §4 schema, env overrides, secret files, one-line errors (exit 2)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.settings import load_settings, parse_duration, parse_size

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "drainer.example.toml"
MINIMAL = """
[[docplanner]]
name = "pl"
base_url = "https://www.znanylekarz.pl"
client_id = "id"
client_secret = "s3cr3t-value"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drainer.toml"
    path.write_text(text)
    return path


def drainer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


MI = (
    '[[myinvois]]\nname = "mi"\nbase_url = "https://api.example"\n'
    'client_id = "id"\nclient_secret = "s3cr3t-value"\n'
)


def test_example_config_is_valid(tmp_path: Path) -> None:
    """The shipped example, whose secrets are all *_file names, passes check-config."""
    creds = tmp_path / "creds"
    creds.mkdir()
    for name in ("docplanner-pl-secret", "myinvois-acme-secret", "myinvois-agent-secret"):
        (creds / name).write_text(f"{name}-value-0123456789\n")
        (creds / name).chmod(0o600)
    env = {**os.environ, "CREDENTIALS_DIRECTORY": str(creds)}
    result = drainer("check-config", "--config", str(EXAMPLE), env=env)
    assert result.returncode == 0, result.stderr
    assert '"name": "pl"' in result.stdout
    assert "-value-0123456789" not in result.stdout + result.stderr
    inline = re.compile(r"^\s*(client_secret|push_token|password)\s*=", re.M)
    assert not inline.search(EXAMPLE.read_text())


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (MINIMAL + "bogus = 1\n", "docplanner[0].bogus"),
        ("[redis]\nurl = 'http://x'\n", "redis.url"),
        ("[redis]\ndedupe_window = 'soon'\n", "redis.dedupe_window"),
        ("[redis]\ndedupe_window_myinvois = 'a month'\n", "redis.dedupe_window_myinvois"),
        (MI + 'identity_url = "ftp://id"\n', "myinvois[0].identity_url"),
        (MI + 'on_behalf_of = "C1 2"\n', "myinvois[0].on_behalf_of"),
        ("[spool]\nmax_bytes = '12 parsecs'\n", "spool.max_bytes"),
        ("[spool]\nmax_bytes = '300KiB'\n" + MINIMAL, "spool.max_bytes: 307200 bytes is too sma"),
        ("[server]\nlisten = 'nowhere'\n", "server.listen"),
        ("[server]\npush_listen = '0.0.0.0'\n", "server.push_listen"),
        ("[server]\nthreads = 0\n", "server.threads"),
        ("[server]\nrequest_deadline = 'soon'\n", "server.request_deadline"),
        ("[log]\nlevel = 'chatty'\n", "log.level"),
        (MINIMAL.replace('client_secret = "s3cr3t-value"', ""), "docplanner[0]"),
        (MINIMAL + 'mode = "push"\n', "docplanner[0]"),
        (MINIMAL + "[[docplanner]]\n" + MINIMAL.split("[[docplanner]]\n")[1], "docplanner"),
        (MINIMAL + MINIMAL.replace('"pl"', '"pl2"'), "docplanner[1].client_id"),
        (MI + MI.replace('"mi"', '"mi2"') + "requests_per_minute = 30\n", "myinvois[1]"),
        (MI + MI.replace('"mi"', '"mi2"') + "logins_per_minute = 6\n", "'mi' (12) and 'mi2'"),
        ("[unknown]\nx = 1\n", "unknown"),
        ("[redis\n", "invalid TOML"),
    ],
)
def test_broken_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, text: str, key: str
) -> None:
    """Every broken variant exits 2 with one stderr line naming the file and the key."""
    path = write(tmp_path, text)
    result = drainer("check-config", "--config", str(path))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(path) in lines[0] and key in lines[0]
    assert "s3cr3t-value" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A config path that does not exist exits 2 naming the path."""
    result = drainer("check-config", "--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 2
    assert "nope.toml" in result.stderr


def test_env_overrides_the_file(tmp_path: Path) -> None:
    """DRAINER_REDIS__URL overrides [redis] url from the file (through the real CLI)."""
    import os

    path = write(tmp_path, "[redis]\nurl = 'redis://file:6379/0'\n")
    env = {**os.environ, "DRAINER_REDIS__URL": "redis://env:6379/0"}
    result = drainer("check-config", "--config", str(path), env=env)
    assert result.returncode == 0, result.stderr
    assert "redis://env:6379/0" in result.stdout
    assert "redis://file" not in result.stdout


def test_secret_file_is_read_from_credentials_directory(tmp_path: Path) -> None:
    """A relative client_secret_file is read from $CREDENTIALS_DIRECTORY (systemd)."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pl-secret").write_text("from-file-secret\n")
    text = MINIMAL.replace('client_secret = "s3cr3t-value"', 'client_secret_file = "pl-secret"')
    settings = load_settings(write(tmp_path, text), {"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.docplanner[0].secret() == "from-file-secret"
    assert "from-file-secret" not in str(settings.redacted())


def test_unreadable_secret_file_names_the_key(tmp_path: Path) -> None:
    """A missing secret file is a ConfigError naming client_secret_file."""
    text = MINIMAL.replace('client_secret = "s3cr3t-value"', 'client_secret_file = "/nope"')
    with pytest.raises(ConfigError, match=r"docplanner\[0\]\.client_secret_file"):
        load_settings(write(tmp_path, text), {})


def test_redacted_hides_secrets_and_redis_password(tmp_path: Path) -> None:
    """check-config output never shows a secret, push token or Redis password."""
    text = "[redis]\nurl = 'redis://u:hunter22@h:6379/0'\n" + MINIMAL
    text += 'mode = "both"\npush_token = "tok-secret-1-long-enough"\n'
    result = drainer("check-config", "--config", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    for secret in ("hunter22", "tok-secret-1-long-enough", "s3cr3t-value"):
        assert secret not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("raw", "seconds"), [("250ms", 0.25), ("5s", 5), ("10m", 600), ("1h", 3600), (7, 7.0)]
)
def test_durations(raw: object, seconds: float) -> None:
    """Durations accept ms/s/m/h suffixes or plain seconds."""
    assert parse_duration(raw) == seconds


def test_sizes() -> None:
    """Sizes accept binary suffixes or plain bytes."""
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("1GiB") == 1024**3
    assert parse_size(4096) == 4096


def test_batch_size_is_clamped(tmp_path: Path) -> None:
    """batch_size outside 1..100 is clamped, as the API only takes 1..100."""
    settings = load_settings(write(tmp_path, MINIMAL + "batch_size = 500\n"), {})
    assert settings.docplanner[0].batch_size == 100


def test_secret_values_cover_every_secret(tmp_path: Path) -> None:
    """The log scrubber's list holds client secrets, push tokens and the Redis password."""
    text = "[redis]\nurl = 'redis://u:hunter22@h:6379/0'\n" + MINIMAL
    text += 'mode = "both"\npush_token = "tok-secret-1-long-enough"\n'
    values = load_settings(write(tmp_path, text), {}).secret_values()
    assert sorted(values) == ["hunter22", "s3cr3t-value", "tok-secret-1-long-enough"]


def test_a_spool_too_small_for_one_pull_names_the_minimum(tmp_path: Path) -> None:
    """spool.max_bytes below the puller's 4 MiB headroom: exit 2 naming the minimum; a
    spool that only MyInvois or push accounts use may be smaller."""
    result = drainer(
        "check-config",
        "--config",
        str(write(tmp_path, "[spool]\nmax_bytes = '300KiB'\n" + MINIMAL)),
    )
    assert result.returncode == 2 and "at least 4194304 bytes" in result.stderr
    push = MINIMAL + 'mode = "push"\npush_token = "a-push-token-long-enough-0123"\n'
    small = write(tmp_path, "[spool]\nmax_bytes = '300KiB'\n" + push)
    assert drainer("check-config", "--config", str(small)).returncode == 0
