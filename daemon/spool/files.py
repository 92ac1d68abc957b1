"""Spool file access that trusts nothing on disk: 0700 directories, 0600 files, no symlinks.

Spool files hold patient data. Modes are set explicitly (``fchmod``/``chmod``), so they do
not depend on the umask, and every open uses ``O_NOFOLLOW``: a symlink planted in the
spool directory makes the open fail (``ELOOP``) instead of reading or writing elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600
NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def private_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) as 0700; the directory itself is made
    0700 even when it exists; a symlink in its place is refused (``OSError``)."""
    missing = []
    for path in (directory, *directory.parents):
        if path.exists() or path.is_symlink():
            break
        missing.append(path)
    for path in reversed(missing):
        path.mkdir(mode=DIR_MODE, exist_ok=True)
        os.chmod(path, DIR_MODE, follow_symlinks=False)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
    try:
        os.fchmod(fd, DIR_MODE)
    finally:
        os.close(fd)


def open_private(path: Path, flags: int) -> int:
    """``os.open`` with ``O_NOFOLLOW``; a file it creates, or writes, is made 0600."""
    fd = os.open(path, flags | NOFOLLOW, FILE_MODE)
    if flags & (os.O_WRONLY | os.O_RDWR):
        try:
            os.fchmod(fd, FILE_MODE)
        except OSError:
            os.close(fd)
            raise
    return fd


def read_private(path: Path, offset: int = 0, length: int = -1) -> bytes:
    """The bytes of ``path`` (from ``offset``, up to ``length``), never through a symlink."""
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        handle.seek(offset)
        return handle.read(length)


def write_private(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with ``data``, mode 0600, never through a symlink."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def truncate_private(path: Path, size: int) -> None:
    """Cut ``path`` to ``size`` bytes and fsync it, never through a symlink."""
    fd = open_private(path, os.O_WRONLY)
    try:
        os.ftruncate(fd, size)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | NOFOLLOW)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
