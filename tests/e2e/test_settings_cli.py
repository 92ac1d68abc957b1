"""drainer check-config in a subprocess: a config error exits 2 with one line naming the key."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "drainer.example.toml"
MINIMAL = """
[[docplanner]]
name = "pl"
base_url = "https://www.znanylekarz.pl"
client_id = "id"
client_secret = "s3cr3t-value"
"""
MI = (
    '[[myinvois]]\nname = "mi"\nbase_url = "https://api.example"\n'
    'client_id = "id"\nclient_secret = "s3cr3t-value"\n'
)


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


def test_redacted_hides_secrets_and_redis_password(tmp_path: Path) -> None:
    """check-config output never shows a secret, push token or Redis password."""
    text = "[redis]\nurl = 'redis://u:hunter22@h:6379/0'\n" + MINIMAL
    text += 'mode = "both"\npush_token = "tok-secret-1-long-enough"\n'
    result = drainer("check-config", "--config", str(write(tmp_path, text)))
    assert result.returncode == 0, result.stderr
    for secret in ("hunter22", "tok-secret-1-long-enough", "s3cr3t-value"):
        assert secret not in result.stdout + result.stderr


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
