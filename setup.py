"""Build hook: the wheel records the git revision it was built from (``daemon/REVISION``).

Everything else about the package is in pyproject.toml. ``drainer --version`` and the
``drainer_build_info`` metric read that file, so an installed daemon knows its revision
without git. The revision comes from ``$DRAINER_REVISION`` (the Dockerfile's ``REVISION``
build argument), else from ``git`` in the checkout being built (``-dirty`` when tracked
files differ from the commit), else it is ``unknown`` (e.g. a build from an sdist).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent


def _git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(HERE), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def revision() -> str:
    """The revision being built: $DRAINER_REVISION, else git's, else ``unknown``."""
    given = os.environ.get("DRAINER_REVISION", "").strip()
    if given:
        return given
    try:
        commit = _git("rev-parse", "--short=12", "HEAD")
        dirty = _git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


class BuildPyWithRevision(build_py):
    """``build_py`` that also writes ``daemon/REVISION`` into the build (not the source tree)."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib, "daemon", "REVISION")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(revision() + "\n", encoding="utf-8")


setup(cmdclass={"build_py": BuildPyWithRevision})
