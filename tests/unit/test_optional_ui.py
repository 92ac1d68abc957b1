"""``rich`` is optional: the daemon's modules never import it; backfill falls back to text."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from daemon.commands import progress as progress_module
from daemon.commands.progress import PlainProgress, RichProgress

# `sys.modules["rich"] = None` makes every `import rich` fail, as if it were not installed
# (structlog imports rich when it can, so "no rich module loaded" would test structlog).
RUNTIME_IMPORTS = """
import sys
sys.modules["rich"] = None
import daemon.cli, daemon.runtime.run, daemon.runtime.wiring, daemon.server.listener
daemon.cli.build_parser()  # imports every command module, as `drainer run` does
print("imported")
"""


def test_cli_and_runtime_import_without_rich() -> None:
    """Building the CLI and importing the runtime work when `rich` cannot be imported."""
    result = subprocess.run(
        [sys.executable, "-c", RUNTIME_IMPORTS],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "imported"), result.stderr


def test_rich_is_not_a_core_dependency() -> None:
    """pyproject: rich is in the `ui` extra (and so in `dev`), not in the core dependencies."""
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    assert not [d for d in project["dependencies"] if d.startswith("rich")]
    assert project["optional-dependencies"]["ui"] == ["rich>=13.0"]
    assert "notification-drainer[ui]" in project["optional-dependencies"]["dev"]


def test_backfill_progress_falls_back_to_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without rich, `progress()` gives plain lines; with it, a rich bar."""
    assert isinstance(progress_module.progress("acme", 10.0), RichProgress)
    for name in [n for n in sys.modules if n == "rich" or n.startswith("rich.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "rich", None)
    assert isinstance(progress_module.progress("acme", 10.0), PlainProgress)


def test_plain_progress_prints_a_line_per_tenth_and_where_it_stopped() -> None:
    """Plain progress: a line at 0 %, one per 10 % step covered, and the last state on stop."""
    out = io.StringIO()
    with PlainProgress("acme", 100.0, out) as shown:
        shown.update(0, 0, 0, 0)
        shown.update(5, 1, 10, 10)  # same step: no line
        shown.update(25, 3, 30, 20)
        shown.say("a message")
        shown.update(26, 4, 40, 30)
    assert out.getvalue().splitlines() == [
        "backfill acme: 0%, 0 requests, 0 notifications, 0 new",
        "backfill acme: 25%, 3 requests, 30 notifications, 20 new",
        "a message",
        "backfill acme: 26%, 4 requests, 40 notifications, 30 new",
    ]
