"""One daemon per spool directory: an exclusive lock held for the life of ``drainer run``.

Two daemons on one spool would pull the same queues and append to the same segment files.
``drainer run`` therefore takes ``flock(LOCK_EX | LOCK_NB)`` on ``<spool.dir>/drainer.lock``
before it opens a spool or pulls anything, and keeps the descriptor open until it exits: the
kernel releases the lock when the process ends, however it ends (SIGKILL included), so a
stale lock file never blocks a restart. The holder writes its pid and listen address into the
file; a second daemon reads them and exits 1 with one line naming the holder.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import SpoolError, SpoolInUseError
from daemon.spool.files import open_private, private_dir

LOCK_NAME = "drainer.lock"


@dataclass(frozen=True)
class SpoolLock:
    """The held lock; it lasts as long as ``fd`` is open (the process's life)."""

    path: Path
    fd: int

    def release(self) -> None:
        """Give the lock up (the daemon never does; tests and tools may)."""
        os.close(self.fd)


def lock_spool(directory: Path, listen: str) -> SpoolLock:
    """Take ``directory``'s lock, or raise :class:`SpoolInUseError` naming its holder."""
    path = directory / LOCK_NAME
    try:
        private_dir(directory)
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
    except OSError as exc:
        raise SpoolError(f"spool.dir {directory}: cannot open {LOCK_NAME}: {exc}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip() or "holder unknown"
        os.close(fd)
        raise SpoolInUseError(
            f"spool.dir {directory} is in use by another drainer ({holder}): one daemon "
            "per spool directory"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise SpoolError(f"spool.dir {directory}: cannot lock {LOCK_NAME}: {exc}") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}, listen {listen}\n".encode(), 0)
    return SpoolLock(path, fd)
