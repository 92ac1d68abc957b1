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
