"""The image's build context: every COPY source survives .dockerignore (.ci/build_context.py)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The allow-list as it was before constraints.txt was added to it: the build stopped at COPY.
OLD_DOCKERIGNORE = """*
!pyproject.toml
!README.md
!daemon/
!drainer_consumer/
!deploy/systemd/
!deploy/grafana/
!deploy/prometheus/
!config/drainer.example.toml
**/__pycache__
**/*.pyc
"""


@pytest.fixture(scope="module")
def checker() -> ModuleType:
    """The checker .ci/ops-checks runs, loaded from its file."""
    spec = importlib.util.spec_from_file_location(
        "build_context", ROOT / ".ci" / "build_context.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tracked() -> list[str]:
    listing = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "-z"], capture_output=True, text=True, check=True
    ).stdout
    return [f for f in listing.split("\0") if f]


def copy_repo(tmp_path: Path, files: list[str], dockerignore: str) -> Path:
    """The tracked files' names (links kept as links) with another .dockerignore."""
    for name in files:
        target = tmp_path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        source = ROOT / name
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            target.write_bytes(source.read_bytes())
    (tmp_path / ".dockerignore").write_text(dockerignore, encoding="utf-8")
    return tmp_path


def test_the_repository_context_has_every_copy_source(checker: ModuleType) -> None:
    """Today's Dockerfile and .dockerignore: nothing the build copies is left out."""
    assert checker.check(ROOT, tracked()) == []


def test_a_copy_source_left_out_is_named(checker: ModuleType, tmp_path: Path) -> None:
    """The old allow-list fails, naming each file it leaves out and its COPY line."""
    files = tracked()
    repo = copy_repo(tmp_path, [f for f in files if not f.startswith("tests/")], OLD_DOCKERIGNORE)
    problems = checker.check(repo, files)
    line = "(COPY pyproject.toml setup.py README.md constraints.txt ./)"
    assert problems == [
        f"setup.py: left out of the build context by .dockerignore {line}",
        f"constraints.txt: left out of the build context by .dockerignore {line}",
        "daemon/share/constraints.txt -> constraints.txt: the target is left out of the build"
        " context",
    ]


def test_a_link_to_a_file_left_out_is_named(checker: ModuleType, tmp_path: Path) -> None:
    """daemon/share links to deploy/: a target excluded from the context is a problem."""
    files = [f for f in tracked() if not f.startswith("tests/")]
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8") + "deploy/grafana/\n"
    problems = checker.check(copy_repo(tmp_path, files, ignore), files)
    assert problems == [
        "daemon/share/notification-drainer.json -> deploy/grafana/notification-drainer.json:"
        " the target is left out of the build context"
    ]


@pytest.mark.parametrize(
    ("path", "left_out"),
    [
        ("daemon/cli.py", False),
        ("daemon/__pycache__/cli.cpython-311.pyc", True),
        ("daemon/sink/x.pyc", True),
        ("deploy/README-ops.md", True),
        ("deploy/systemd/notification-drainer.service", False),
        ("tests/unit/test_spool.py", True),
        ("constraints.txt", False),
        (".venv/bin/python", True),
    ],
)
def test_patterns_follow_docker(checker: ModuleType, path: str, left_out: bool) -> None:
    """The last pattern matching a path or a parent decides; `!` re-includes; `**` spans dirs."""
    rules = checker.read_ignore((ROOT / ".dockerignore").read_text(encoding="utf-8"))
    assert checker.excluded(path, rules) is left_out
