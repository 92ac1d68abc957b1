"""The release artifact: a versioned wheel carrying the operations files, and `drainer share`."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from daemon import __version__
from daemon.commands.share import CONTRACT, SHARED

ROOT = Path(__file__).resolve().parents[2]


def drainer(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_share_lists_and_prints_the_operations_files() -> None:
    """`drainer share --list` names every file; `drainer share NAME` prints it; a typo exits 2."""
    listed = drainer("share", "--list")
    assert listed.returncode == 0, listed.stderr
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == list(SHARED)
    unit = drainer("share", "notification-drainer.service")
    assert unit.returncode == 0 and "Type=notify" in unit.stdout
    unknown = drainer("share", "alerts.yaml")
    assert unknown.returncode == 2
    assert unknown.stderr.splitlines() == [
        "drainer share: no file named 'alerts.yaml' (drainer share --list)"
    ]


def test_version_names_the_release_and_the_revision() -> None:
    """`drainer --version` prints the package version and the revision ($DRAINER_REVISION,
    which a build passes on; without it a checkout asks git, covered in the unit tier)."""
    env = {**os.environ, "DRAINER_REVISION": "0123456789ab"}
    shown = drainer("--version", env=env)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout == f"drainer {__version__} (revision 0123456789ab)\n"


@pytest.mark.slow
def test_wheel_is_versioned_and_carries_the_operations_files(tmp_path: Path) -> None:
    """`pip wheel .` gives notification_drainer-<version>: the files' contents, the revision
    given by $DRAINER_REVISION (so this holds where git cannot run in the checkout)."""
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "DRAINER_REVISION": "0123456789ab"},  # as the Dockerfile passes it
    )
    (wheel,) = tmp_path.glob("*.whl")
    assert wheel.name == f"notification_drainer-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        for name in SHARED:  # the consumer kit's contract is package data of drainer_consumer
            where = "drainer_consumer/schemas" if name in CONTRACT else "daemon/share"
            packaged = archive.read(f"{where}/{name}").decode()
            assert packaged == (ROOT / where / name).read_text(encoding="utf-8")
        metadata = archive.read(f"notification_drainer-{__version__}.dist-info/METADATA").decode()
        built_from = archive.read("daemon/REVISION").decode().strip()
    assert "daemon/cli.py" in names
    assert "daemon/share/constraints.txt" in names
    assert built_from == "0123456789ab"  # setup.py's rule; git's is the unit tier's
    requires = [line for line in metadata.splitlines() if line.startswith("Requires-Dist: rich")]
    assert requires == ['Requires-Dist: rich>=13.0; extra == "ui"'], requires
