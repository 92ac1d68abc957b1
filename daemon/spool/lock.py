"""One daemon per spool directory: an exclusive lock held for the life of ``drainer run``.

Two daemons on one spool would pull the same queues and append to the same segment files.
``drainer run`` therefore takes ``flock(LOCK_EX | LOCK_NB)`` on ``<spool.dir>/drainer.lock``
before it opens a spool or pulls anything, and keeps the descriptor open until it exits: the
kernel releases the lock when the process ends, however it ends (SIGKILL included), so a
stale lock file never blocks a restart. A second daemon exits 1 with one line naming the
holder, whose pid and listen address are the file's first line.

The file also says how the previous run ended, for ``drainer_unclean_exits_total`` (the
``DrainerRestarting`` alert): ``state running`` is written at start and ``state stopped``
by :meth:`SpoolLock.mark_clean` on an orderly exit. Finding ``running`` at start means the
previous run ended otherwise (a crash, SIGKILL, the watchdog, the OOM killer, power loss):
the count of such exits, kept in the file, goes up by one. Deliberate restarts (SIGTERM,
exit 0) and config errors (exit 2) never count.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

from daemon.errors import SpoolError, SpoolInUseError
from daemon.spool.files import open_private, private_dir

LOCK_NAME = "drainer.lock"
RUNNING = "running"
STOPPED = "stopped"


@dataclass(frozen=True)
class SpoolLock:
    """The held lock; it lasts as long as ``fd`` is open (the process's life)."""

    path: Path
    fd: int
    holder: str  # "pid N, listen ADDRESS"
    unclean_exits: int  # previous runs on this spool that did not end in an orderly way
    previous_clean: bool  # how the run before this one ended (True on a first start)

    def mark_clean(self) -> None:
        """Record an orderly exit (exit 0 after SIGTERM, or a config error); best effort:
        if the disk refuses, the next start counts one unclean exit too many."""
        with contextlib.suppress(SpoolError):
            _write(self.fd, self.holder, STOPPED, self.unclean_exits)

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
        lines = os.pread(fd, 512, 0).decode("utf-8", "replace").splitlines()
        os.close(fd)
        holder = lines[0].strip() if lines and lines[0].strip() else "holder unknown"
        raise SpoolInUseError(
            f"spool.dir {directory} is in use by another drainer ({holder}): one daemon "
            "per spool directory"
        ) from None
    except OSError as exc:
        os.close(fd)
        raise SpoolError(f"spool.dir {directory}: cannot lock {LOCK_NAME}: {exc}") from None
    state, unclean = _previous(os.pread(fd, 4096, 0).decode("utf-8", "replace"))
    previous_clean = state != RUNNING
    unclean += 0 if previous_clean else 1
    holder = f"pid {os.getpid()}, listen {listen}"
    _write(fd, holder, RUNNING, unclean)
    return SpoolLock(path, fd, holder, unclean, previous_clean)


def _previous(text: str) -> tuple[str, int]:
    """``(state, unclean exits)`` a previous run left; an empty file is a first start."""
    fields: dict[str, str] = {}
    for line in text.splitlines()[1:]:  # the first of each: a crash may leave an old tail
        key, _, value = line.partition(" ")
        fields.setdefault(key, value)
    try:
        unclean = max(0, int(fields.get("unclean_exits", "0")))
    except ValueError:
        unclean = 0
    return fields.get("state", STOPPED).strip(), unclean


def _write(fd: int, holder: str, state: str, unclean: int) -> None:
    """Overwrite in place, then cut what is left of a longer text: the first line names a
    holder at every moment (a refused daemon may read the file between the two calls)."""
    text = f"{holder}\nstate {state}\nunclean_exits {unclean}\n".encode()
    try:
        os.pwrite(fd, text, 0)
        os.ftruncate(fd, len(text))
        os.fsync(fd)
    except OSError as exc:
        raise SpoolError(f"{LOCK_NAME}: cannot record the run's state: {exc}") from None
