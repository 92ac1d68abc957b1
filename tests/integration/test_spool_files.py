"""Spool hardening: 0700 directories and 0600 files whatever the umask, no symlink followed."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.envelope.entries import StreamEntry
from daemon.errors import SpoolError
from daemon.spool import SpoolBudget, SpoolLog


def entries(count: int) -> list[StreamEntry]:
    return [StreamEntry("s", f"e-{i}", {"n": str(i)}) for i in range(count)]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    old = os.umask(0)
    yield
    os.umask(old)


@pytest.mark.usefixtures("permissive_umask")
def test_modes_ignore_a_permissive_umask(tmp_path: Path) -> None:
    """umask 000: new directories are 0700; segments, cursor and .corrupt-* files are 0600."""
    directory = tmp_path / "spool" / "docplanner-pl"
    log = SpoolLog(directory, SpoolBudget(10**9))
    log.mark_published(log.append(entries(2)))
    log.append(entries(3))
    (segment,) = directory.glob("*.wal")
    with segment.open("ab") as handle:
        handle.write(b"torn tail of a crash")
    SpoolLog(directory, SpoolBudget(10**9))  # sets the torn tail aside
    (aside,) = directory.glob("*.corrupt-*")
    assert mode(tmp_path / "spool") == 0o700 and mode(directory) == 0o700
    assert {p.name: mode(p) for p in directory.iterdir()} == {
        segment.name: 0o600,
        "cursor": 0o600,
        aside.name: 0o600,
    }


def test_an_existing_open_directory_is_closed_to_others(tmp_path: Path) -> None:
    """A spool directory left at 0755 is made 0700 when the spool opens."""
    directory = tmp_path / "docplanner-pl"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    SpoolLog(directory, SpoolBudget(10**9))
    assert mode(directory) == 0o700


def test_a_planted_symlink_segment_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    """A *.wal symlink pointing elsewhere: opening the spool fails; nothing is read or cut."""
    directory = tmp_path / "docplanner-pl"
    directory.mkdir()
    target = tmp_path / "elsewhere"
    target.write_bytes(b"not a spool segment, must stay as it is")
    (directory / "000000000001.wal").symlink_to(target)
    with pytest.raises(SpoolError, match="cannot open spool"):
        SpoolLog(directory, SpoolBudget(10**9))
    assert target.read_bytes() == b"not a spool segment, must stay as it is"


def test_a_symlinked_cursor_is_not_followed(tmp_path: Path) -> None:
    """cursor.tmp planted as a symlink: the cursor write fails instead of writing through it."""
    directory = tmp_path / "docplanner-pl"
    log = SpoolLog(directory, SpoolBudget(10**9))
    target = tmp_path / "victim"
    target.write_text("precious")
    (directory / "cursor.tmp").symlink_to(target)
    log.mark_published(log.append(entries(1)))
    assert target.read_text() == "precious"


def test_a_symlinked_spool_directory_is_refused(tmp_path: Path) -> None:
    """The account directory itself being a symlink is refused."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "docplanner-pl").symlink_to(real)
    with pytest.raises(SpoolError):
        SpoolLog(tmp_path / "docplanner-pl", SpoolBudget(10**9))
