"""Secrets from a credentials directory systemd loaded whole (``drainer_<file name>``)."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.settings import load_settings
from daemon.settings.load import CREDENTIAL_PREFIX, secret_path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "drainer.example.toml"
UNIT = ROOT / "deploy" / "systemd" / "notification-drainer.service"


def example_secret_names() -> list[str]:
    """The relative ``*_file`` names the example config uses (active lines only)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    return re.findall(r'^\w+_file = "([^"/]+)"', text, re.MULTILINE)


def test_the_unit_loads_the_whole_directory_under_the_prefix_the_daemon_reads() -> None:
    """One LoadCredential= line, a directory, whose ID + "_" is the prefix settings look for."""
    lines = [
        line.split("=", 1)[1]
        for line in UNIT.read_text(encoding="utf-8").splitlines()
        if line.startswith("LoadCredential=")
    ]
    assert lines == ["drainer:/etc/notification-drainer/credentials"]
    assert lines[0].split(":")[0] + "_" == CREDENTIAL_PREFIX


def test_example_config_loads_from_a_directory_loaded_credentials_dir(tmp_path: Path) -> None:
    """As systemd lays it out (every file as drainer_<name>), the example config's names work."""
    names = example_secret_names()
    assert names
    for name in names:
        (tmp_path / f"{CREDENTIAL_PREFIX}{name}").write_text(f"secret-of-{name}\n")
    settings = load_settings(EXAMPLE, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    secrets = {a.secret() for a in [*settings.docplanner, *settings.myinvois]}
    assert secrets <= {f"secret-of-{name}" for name in names}
    assert secrets


def test_a_file_under_its_own_name_wins(tmp_path: Path) -> None:
    """A credential under its own name (per-file LoadCredential=, check-config) is read first."""
    (tmp_path / "pl-secret").write_text("direct")
    (tmp_path / f"{CREDENTIAL_PREFIX}pl-secret").write_text("loaded")
    environ = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert secret_path(Path("pl-secret"), environ) == tmp_path / "pl-secret"
    (tmp_path / "pl-secret").unlink()
    assert secret_path(Path("pl-secret"), environ) == tmp_path / f"{CREDENTIAL_PREFIX}pl-secret"
    assert secret_path(Path("/etc/x"), environ) == Path("/etc/x")
    assert secret_path(Path("sub/x"), environ) == tmp_path / "sub" / "x"
