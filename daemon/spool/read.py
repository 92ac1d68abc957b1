"""A read-only view of one account's spool, for ``drainer status`` beside a running daemon.

Nothing is opened for writing and nothing is set aside or compacted: a torn tail is simply
where the scan stops (the daemon deals with it when it opens the spool).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from daemon.spool.files import read_private
from daemon.spool.frame import Record, decode_payload, scan

CURSOR = "cursor"  # the file holding the seq of the last record published to Redis


def published_seq(directory: Path) -> int:
    """The sequence number of the last spool record published to Redis (0: none yet)."""
    try:
        return int(read_private(directory / CURSOR).decode().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


@dataclass(frozen=True, slots=True)
class Backlog:
    """What one account's spool still holds: the records not yet published, and its size."""

    published: int
    pending: list[Record]
    bytes: int


def read_backlog(directory: Path) -> Backlog:
    """The spool in ``directory`` as it stands (an absent directory is an empty spool)."""
    published = published_seq(directory) if directory.is_dir() else 0
    pending: list[Record] = []
    size = 0
    for segment in sorted(directory.glob("*.wal")) if directory.is_dir() else []:
        data = read_private(segment)
        size += len(data)
        found, _ = scan(data)
        pending += [decode_payload(seq, payload) for seq, _, _, payload in found if seq > published]
    return Backlog(published, pending, size)
