"""``[[myinvois_client]]``: one intermediary's taxpayers listed without repeating its settings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.settings import load_settings

CLIENT = """
[[myinvois_client]]
base_url = "https://api.example"
client_id = "agent"
client_secret = "agent-s3cr3t-value"
interval = "2m"
requests_per_minute = 30
taxpayers = [
  { name = "globex", on_behalf_of = "C2345678901" },
  { name = "initech", on_behalf_of = "C3456789012", interval = "5m" },
]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "drainer.toml"
    path.write_text(text)
    return path


def test_a_client_block_becomes_one_account_per_taxpayer(tmp_path: Path) -> None:
    """Each taxpayer gets the client's settings; its own keys win."""
    settings = load_settings(write(tmp_path, CLIENT), {})
    globex, initech = settings.myinvois
    assert (globex.name, globex.on_behalf_of, globex.interval) == ("globex", "C2345678901", 120)
    assert (initech.name, initech.interval) == ("initech", 300)
    assert {a.client_id for a in settings.myinvois} == {"agent"}
    assert {a.requests_per_minute for a in settings.myinvois} == {30}
    assert globex.secret() == "agent-s3cr3t-value"


def test_it_mixes_with_plain_accounts_and_their_budgets_must_agree(tmp_path: Path) -> None:
    """A [[myinvois]] entry of the same client with another budget: named as written."""
    plain = (
        '[[myinvois]]\nname = "acme"\nbase_url = "https://api.example"\nclient_id = "agent"\n'
        'client_secret = "agent-s3cr3t-value"\non_behalf_of = "C1"\n'
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, plain + CLIENT), {})
    message = str(caught.value)
    assert "myinvois_client[0].requests_per_minute" in message and "'acme'" in message
    assert "'globex'" in message and "s3cr3t" not in message


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (('"C3456789012"', '"C3 4"'), "myinvois_client[0].taxpayers[1].on_behalf_of"),
        (('interval = "2m"', 'interval = "soon"'), "myinvois_client[0].interval"),
        (('interval = "2m"', 'name = "agent"'), "myinvois_client[0].name"),
        (("[[myinvois_client]]", "[myinvois_client]"), "myinvois_client: must be an array"),
    ],
)
def test_a_broken_client_block_exits_2_naming_the_key_as_written(
    tmp_path: Path, change: tuple[str, str], key: str
) -> None:
    """Errors inside the compact form name its own keys, in one line, exit 2."""
    path = write(tmp_path, CLIENT.replace(*change))
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert "s3cr3t" not in result.stderr + result.stdout


def test_an_environment_override_reaches_a_listed_taxpayer(tmp_path: Path) -> None:
    """DRAINER_MYINVOIS__<NAME>__<KEY> sets a key of one taxpayer of the client block."""
    settings = load_settings(write(tmp_path, CLIENT), {"DRAINER_MYINVOIS__GLOBEX__INTERVAL": "10s"})
    assert [a.interval for a in settings.myinvois] == [10, 300]
