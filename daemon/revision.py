"""The source revision this installation was built from (``drainer --version``, build_info).

``$DRAINER_REVISION``, when set, names it: the variable ``setup.py`` reads at build time, so
a tree without git (an unpacked archive, a test run) can still say what it is. Otherwise a
wheel carries it in ``daemon/REVISION``, written at build time by ``setup.py``, so an
installed daemon never needs git. A source checkout (an editable install) has no such file:
its revision is asked of git once, when first needed, if the checkout has a ``.git``.
Otherwise it is ``unknown``.
"""

from __future__ import annotations

import functools
import os
import subprocess
from importlib.resources import files
from pathlib import Path

UNKNOWN = "unknown"
OVERRIDE = "DRAINER_REVISION"


@functools.cache
def revision() -> str:
    """The build's git revision (12 hex digits, ``-dirty`` if built from changed files)."""
    given = os.environ.get(OVERRIDE, "").strip()
    if given:
        return given
    try:
        text = files("daemon").joinpath("REVISION").read_text(encoding="utf-8").strip()
    except OSError:
        text = ""
    if text:
        return text
    checkout = Path(__file__).resolve().parents[1]
    if not (checkout / ".git").exists():
        return UNKNOWN
    try:
        commit = _git(checkout, "rev-parse", "--short=12", "HEAD")
        dirty = _git(checkout, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return commit + ("-dirty" if dirty else "") if commit else UNKNOWN


def _git(checkout: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(checkout), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=5,
    ).stdout.strip()
