"""The spool directory's lock file: one holder, and how the previous run ended."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from daemon.errors import SpoolInUseError
from daemon.spool.lock import LOCK_NAME, lock_spool


def test_a_second_lock_is_refused_naming_the_holder(tmp_path: Path) -> None:
    """While one lock is held, another open of the same directory fails with its pid and listen."""
    held = lock_spool(tmp_path / "spool", "127.0.0.1:9464")
    try:
        with pytest.raises(SpoolInUseError) as refused:
            lock_spool(tmp_path / "spool", "127.0.0.1:9999")
        assert f"(pid {os.getpid()}, listen 127.0.0.1:9464)" in str(refused.value)
        assert "\n" not in str(refused.value)
    finally:
        held.release()
    lock_spool(tmp_path / "spool", "127.0.0.1:9999").release()  # free again


def test_runs_that_did_not_mark_a_clean_exit_are_counted(tmp_path: Path) -> None:
    """A first start is clean; a run left `running` counts one unclean exit, kept afterwards."""
    first = lock_spool(tmp_path, "a")
    assert (first.previous_clean, first.unclean_exits) == (True, 0)
    first.mark_clean()
    first.release()
    second = lock_spool(tmp_path, "a")
    assert (second.previous_clean, second.unclean_exits) == (True, 0)
    second.release()  # no mark_clean: as if killed
    third = lock_spool(tmp_path, "a")
    assert (third.previous_clean, third.unclean_exits) == (False, 1)
    third.mark_clean()
    third.release()
    fourth = lock_spool(tmp_path, "a")
    assert (fourth.previous_clean, fourth.unclean_exits) == (True, 1)
    fourth.release()
    assert (tmp_path / LOCK_NAME).stat().st_mode & 0o777 == 0o600


def test_a_garbled_lock_file_is_a_first_start(tmp_path: Path) -> None:
    """Whatever the file holds, the lock is taken; an unreadable count starts at zero."""
    (tmp_path / LOCK_NAME).write_text("junk\nstate stopped\nunclean_exits many\n")
    lock = lock_spool(tmp_path, "a")
    assert (lock.previous_clean, lock.unclean_exits) == (True, 0)
    lock.release()


def test_a_second_daemon_never_finds_the_holder_line_empty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At every step of rewriting the lock file, a refused second daemon reads the holder."""
    held = lock_spool(tmp_path, "127.0.0.1:9464")
    seen: list[str] = []
    real_truncate, real_pwrite = os.ftruncate, os.pwrite

    def look() -> None:
        with pytest.raises(SpoolInUseError) as refused:
            lock_spool(tmp_path, "127.0.0.1:9999")
        seen.append(str(refused.value))

    def truncate(fd: int, length: int) -> None:
        real_truncate(fd, length)
        look()

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        written = real_pwrite(fd, data, offset)
        look()
        return written

    monkeypatch.setattr(os, "ftruncate", truncate)
    monkeypatch.setattr(os, "pwrite", pwrite)
    held.mark_clean()
    monkeypatch.undo()
    held.release()
    assert len(seen) == 2
    assert all(f"(pid {os.getpid()}, listen 127.0.0.1:9464)" in text for text in seen), seen


def test_a_shorter_rewrite_leaves_no_tail_of_the_longer_one(tmp_path: Path) -> None:
    """The file is exactly the new text; a tail a crash left behind never overrides it."""
    lock_spool(tmp_path, "[2001:db8::1]:9464").release()  # left `running`, a long line
    short = lock_spool(tmp_path, "a")
    short.release()
    text = (tmp_path / LOCK_NAME).read_text()
    assert text == f"pid {os.getpid()}, listen a\nstate running\nunclean_exits 1\n"
    (tmp_path / LOCK_NAME).write_text(text + "state stopped\nunclean_exits 0\n")
    again = lock_spool(tmp_path, "a")  # the first of each field counts: `running` above
    again.release()
    assert (again.previous_clean, again.unclean_exits) == (False, 2)
