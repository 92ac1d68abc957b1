"""The operations files ride in the package (``daemon/share``) and match the repository's."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.version import Version

from daemon import __version__
from daemon.commands.share import CONTRACT, SHARED, shared_file

ROOT = Path(__file__).resolve().parents[2]
SOURCES = {
    "notification-drainer.service": "deploy/systemd/notification-drainer.service",
    "drainer.example.toml": "config/drainer.example.toml",
    "notification-drainer.json": "deploy/grafana/notification-drainer.json",
    "alerts.yml": "deploy/prometheus/alerts.yml",
    "alerts.test.yml": "deploy/prometheus/alerts.test.yml",
    "constraints.txt": "constraints.txt",
}


def test_every_shared_file_reads_as_the_repository_file() -> None:
    """Each file `drainer share` offers is package data with the content of its deploy/ file."""
    assert set(SHARED) == set(SOURCES) | set(CONTRACT)  # CONTRACT: tests/unit/test_contract.py
    for name, source in SOURCES.items():
        packaged = shared_file(name).read_text(encoding="utf-8")
        assert packaged == (ROOT / source).read_text(encoding="utf-8"), name


def test_share_directory_holds_only_links_to_the_repository_files() -> None:
    """daemon/share has one relative link per shared file (one copy of each file, in deploy/)."""
    share = ROOT / "daemon" / "share"
    assert {p.name for p in share.iterdir()} == set(SOURCES)
    for name, source in SOURCES.items():
        link = share / name
        assert link.is_symlink() and not Path(link.readlink()).is_absolute(), name
        assert link.resolve() == (ROOT / source).resolve(), name


def test_pyproject_ships_share_as_package_data_and_the_version_is_the_pyproject_one() -> None:
    """setuptools puts daemon/share/* in the wheel; the installed version is the pyproject one."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert pyproject["tool"]["setuptools"]["package-data"]["daemon"] == ["share/*"]
    assert pyproject["project"]["version"] == __version__


def test_between_releases_the_version_is_a_dev_version_with_an_unreleased_changelog() -> None:
    """A .devN version has `## [Unreleased]` first in the changelog; a release has its date."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## \[([^\]]+)\](.*)$", text, re.MULTILINE)
    released = Version(__version__).base_version
    if Version(__version__).is_devrelease:
        assert sections[0] == ("Unreleased", "")
        assert released not in [name for name, _ in sections], "a .dev of a released version"
    else:
        assert re.fullmatch(r" - \d{4}-\d{2}-\d{2}", dict(sections)[__version__])
