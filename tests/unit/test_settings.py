"""Configuration: the SPEC §4 schema, env overrides, secret files, one-line errors (exit 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.settings import load_settings, parse_duration, parse_size

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
