"""DRAINER_ environment overrides: tables, account entries by name, errors on the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.errors import ConfigError
from daemon.settings import load_settings

ACCOUNTS = """
[[docplanner]]
name = "pl"
base_url = "https://www.znanylekarz.pl"
client_id = "pl-id"
client_secret = "pl-s3cr3t-value"

[[docplanner]]
name = "es-main"
base_url = "https://www.doctoralia.es"
client_id = "es-id"
client_secret = "es-s3cr3t-value"

[[myinvois]]
name = "acme"
base_url = "https://preprod-api.myinvois.hasil.gov.my"
client_id = "acme-id"
client_secret = "acme-s3cr3t-value"
"""


def write(tmp_path: Path, text: str = ACCOUNTS) -> Path:
    path = tmp_path / "drainer.toml"
    path.write_text(text)
    return path


def test_account_keys_are_reached_by_account_name(tmp_path: Path) -> None:
    """DRAINER_DOCPLANNER__<NAME>__<KEY> changes only that account; '-' in a name is '_'."""
    environ = {
        "DRAINER_DOCPLANNER__PL__BATCH_SIZE": "50",
        "DRAINER_DOCPLANNER__ES_MAIN__CLIENT_ID": "es-id-from-env",
        "drainer_myinvois__acme__interval": "2m",  # names are not case-sensitive
        "DRAINER_REDIS__URL": "redis://env:6379/0",
    }
    settings = load_settings(write(tmp_path), environ)
    pl, es = settings.docplanner
    assert (pl.batch_size, pl.client_id) == (50, "pl-id")
    assert (es.batch_size, es.client_id) == (100, "es-id-from-env")
    assert settings.myinvois[0].interval == 120
    assert settings.redis.url == "redis://env:6379/0"


def test_a_secret_file_can_be_given_per_account(tmp_path: Path) -> None:
    """An account's inline secret in the file can be replaced by a *_file from the environment."""
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "pl-secret").write_text("from-credentials\n")
    text = ACCOUNTS.replace('client_secret = "pl-s3cr3t-value"\n', "", 1)
    environ = {
        "DRAINER_DOCPLANNER__PL__CLIENT_SECRET_FILE": "pl-secret",
        "CREDENTIALS_DIRECTORY": str(creds),
    }
    settings = load_settings(write(tmp_path, text), environ)
    assert settings.docplanner[0].secret() == "from-credentials"


def test_unrelated_drainer_variables_are_not_overrides(tmp_path: Path) -> None:
    """DRAINER_CONFIG and variables not named after a config section are left alone."""
    environ = {"DRAINER_CONFIG": "/elsewhere.toml", "DRAINER_TOKEN": "x", "DRAINER_": "y"}
    assert load_settings(write(tmp_path), environ).docplanner[0].batch_size == 100


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        (
            {"DRAINER_DOCPLANNER__PL__BATCH_SIZE": "lots"},
            "environment DRAINER_DOCPLANNER__PL__BATCH_SIZE: docplanner[0].batch_size: ",
        ),
        (
            {"DRAINER_REDIS__ULR": "redis://x"},
            "environment DRAINER_REDIS__ULR: redis.ulr: unknown key",
        ),
        (
            {"DRAINER_DOCPLANNER__XX__CLIENT_ID": "a"},
            "environment DRAINER_DOCPLANNER__XX__CLIENT_ID: no [[docplanner]] account named 'xx'",
        ),
        (
            {"DRAINER_DOCPLANNER__PL": "a"},
            "environment DRAINER_DOCPLANNER__PL: name a key, as in DRAINER_DOCPLANNER__<ACCOUNT>",
        ),
        (
            {"DRAINER_REDIS__URL__HOST": "a"},
            "environment DRAINER_REDIS__URL__HOST: redis.url: ",
        ),
        (
            {"DRAINER_SERVER__LISTEN": "[not json"},
            "environment DRAINER_SERVER__LISTEN: value starts with [ or { but is not JSON",
        ),
    ],
)
def test_a_bad_environment_value_is_blamed_on_its_variable(
    tmp_path: Path, environ: dict[str, str], expected: str
) -> None:
    """A bad override names the variable (and not the file), in one line, without the value."""
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path), environ)
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message and "drainer.toml:" not in message


def test_a_bad_file_value_is_still_blamed_on_the_file(tmp_path: Path) -> None:
    """With overrides present, a problem in the file names the file and its key."""
    path = write(tmp_path, ACCOUNTS.replace('name = "pl"', 'name = "pl"\nbatch_size = "x"'))
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {"DRAINER_REDIS__URL": "redis://env:6379/0"})
    assert str(caught.value).startswith(f"{path}: docplanner[0].batch_size: ")


def test_an_error_involving_file_and_variable_names_both_but_no_secret(tmp_path: Path) -> None:
    """client_secret in the file plus client_secret_file from the environment: both named."""
    environ = {"DRAINER_DOCPLANNER__PL__CLIENT_SECRET_FILE": "pl-secret"}
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path), environ)
    message = str(caught.value)
    assert message.startswith(
        f"{tmp_path / 'drainer.toml'} with environment DRAINER_DOCPLANNER__PL__CLIENT_SECRET_FILE:"
        " docplanner[0]: set exactly one of client_secret or client_secret_file"
    ), message
    assert "s3cr3t" not in message
