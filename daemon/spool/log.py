"""The local write-ahead spool: append + fsync a batch before anything else (SPEC §2).

One :class:`SpoolLog` per account lives in ``spool.dir/<source>-<account>/``:

- ``NNNNNNNNNNNN.wal`` segments of framed records, rotated at ``segment_bytes``;
- ``cursor``: the sequence number of the last record published to Redis.

A record is one batch of stream entries. Frame: ``MAGIC | length | crc32 | seq`` then the
JSON payload. On open, segments are scanned; a torn or corrupt tail (a crash mid-write) is
cut off and kept aside as ``*.corrupt`` for an operator. Records after the cursor are
pending and are published first. The cursor is not fsynced: if it lags after a crash the
records are published again and the sink's de-duplication makes that a no-op.

All logs share one :class:`SpoolBudget` of ``spool.max_bytes``; an append that would
exceed it raises :class:`SpoolFullError` and intake pauses until publishing frees space.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path

import structlog

from daemon.envelope.entries import StreamEntry
from daemon.errors import SpoolError, SpoolFullError
from daemon.spool.files import (
    fsync_dir,
    open_private,
    private_dir,
    read_private,
    truncate_private,
    write_private,
)
from daemon.spool.frame import (
    HEADER,
    RawBatch,
    Record,
    _Slot,
    decode_payload,
    encode_raw,
    encode_record,
    scan,
)
from daemon.spool.read import CURSOR, published_seq

DEFAULT_SEGMENT_BYTES = 8 * 1024 * 1024

CACHE_EVENTS = 20_000  # appended records kept decoded in memory for the publisher

log = structlog.get_logger("daemon.spool")


class SpoolBudget:
    """``spool.max_bytes`` shared by every log of the process."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    def reserve(self, size: int, over_budget: bool = False) -> None:
        """Count ``size`` bytes; SpoolFullError past ``max_bytes`` unless ``over_budget``."""
        with self._lock:
            if self._used + size > self.max_bytes and not over_budget:
                raise SpoolFullError(
                    f"spool is full ({self._used} of {self.max_bytes} bytes); intake paused"
                )
            self._used += size

    def account_existing(self, size: int) -> None:
        """Bytes found on disk at start count even when they exceed the budget."""
        with self._lock:
            self._used += size

    def release(self, size: int) -> None:
        with self._lock:
            self._used -= size


class SpoolLog:
    """The write-ahead log of one account. Thread-safe: pullers, push handlers, publisher."""

    def __init__(
        self, directory: Path, budget: SpoolBudget, segment_bytes: int = DEFAULT_SEGMENT_BYTES
    ) -> None:
        self.directory = directory
        self._budget = budget
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._slots: deque[_Slot] = deque()
        self._segments: dict[Path, int] = {}  # segment -> bytes on disk
        self._next_seq = 1
        self._published = 0
        self._pending_events = 0
        self._cache: dict[int, Record] = {}
        self._cached_events = 0
        try:
            private_dir(directory)
            self._recover()
        except OSError as exc:
            raise SpoolError(f"cannot open spool {directory}: {exc.strerror}") from None

    # --- recovery -----------------------------------------------------------------------

    def _recover(self) -> None:
        self._published = published_seq(self.directory)
        # Sequence numbers never go back, even when every segment was compacted away.
        self._next_seq = self._published + 1
        for segment in sorted(self.directory.glob("*.wal")):
            data = read_private(segment)
            records, end = scan(data)
            if end < len(data):
                self._set_aside(segment, data, end)
            self._segments[segment] = end
            for seq, offset, length, payload in records:
                self._next_seq = max(self._next_seq, seq + 1)
                if seq > self._published:
                    events = decode_payload(seq, payload).events
                    self._slots.append(_Slot(seq, segment, offset, length, events))
                    self._pending_events += events
        self._budget.account_existing(sum(self._segments.values()))
        self._compact_locked()

    def _set_aside(self, segment: Path, data: bytes, end: int) -> None:
        aside = segment.with_suffix(f".corrupt-{len(list(self.directory.glob('*.corrupt-*')))}")
        write_private(aside, data[end:])
        truncate_private(segment, end)
        log.error(
            "spool.tail_truncated",
            segment=str(segment),
            kept_bytes=end,
            set_aside_bytes=len(data) - end,
            set_aside=str(aside),
        )

    # --- writing ------------------------------------------------------------------------

    def append(self, entries: Sequence[StreamEntry], watermark: float | None = None) -> int:
        """Frame, write and fsync one batch of entries; return its sequence number.

        ``watermark`` (MyInvois) travels with the batch: the publisher advances the
        account's watermark to it only after every entry of the batch is in Redis.
        """
        with self._lock:
            seq = self._next_seq
            record = Record(seq, tuple(entries), watermark=watermark)
            return self._append_locked(record, encode_record(seq, entries, watermark))

    def append_raw(self, raw: RawBatch, over_budget: bool = False) -> int:
        """Write and fsync one raw upstream body (expanded later by the publisher).

        ``over_budget``: write it even past ``spool.max_bytes`` (a pulled batch was already
        popped upstream: the disk is its only safe place).
        """
        with self._lock:
            seq = self._next_seq
            return self._append_locked(Record(seq, raw=raw), encode_raw(seq, raw), over_budget)

    def _append_locked(self, record: Record, frame: bytes, over_budget: bool = False) -> int:
        seq = record.seq
        events = record.events
        self._budget.reserve(len(frame), over_budget)
        segment = self._writable_segment(len(frame))
        start = self._segments.get(segment, 0)
        try:
            fd = open_private(segment, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            try:
                written = 0
                while written < len(frame):
                    written += os.write(fd, frame[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
            if start == 0:
                fsync_dir(self.directory)
        except OSError as exc:
            self._budget.release(len(frame))
            _truncate_quietly(segment, start)
            raise SpoolError(f"cannot write spool {segment}: {exc.strerror}") from None
        self._segments[segment] = start + len(frame)
        self._slots.append(_Slot(seq, segment, start, len(frame), events))
        self._pending_events += events
        self._next_seq = seq + 1
        if self._cached_events + events <= CACHE_EVENTS:
            self._cache[seq] = record
            self._cached_events += events
        return seq

    def _writable_segment(self, size: int) -> Path:
        if self._segments:
            last = max(self._segments)
            if self._segments[last] + size <= self._segment_bytes or self._segments[last] == 0:
                return last
        return self.directory / f"{self._next_seq:012d}.wal"

    # --- reading and publishing ---------------------------------------------------------

    def pending(self, max_events: int = 1000) -> list[Record]:
        """The oldest unpublished records, at least one, up to about ``max_events``."""
        with self._lock:
            slots: list[_Slot] = []
            count = 0
            for slot in self._slots:
                if slots and count + slot.events > max_events:
                    break
                slots.append(slot)
                count += slot.events
        records = []
        for slot in slots:
            record = self._cache.get(slot.seq)
            if record is None:
                frame = read_private(slot.segment, slot.offset, slot.length)
                record = decode_payload(slot.seq, frame[HEADER.size :])
            records.append(record)
        return records

    def mark_published(self, seq: int) -> None:
        """Everything up to ``seq`` is on the stream; drop it and compact."""
        with self._lock:
            while self._slots and self._slots[0].seq <= seq:
                slot = self._slots.popleft()
                self._pending_events -= slot.events
                if self._cache.pop(slot.seq, None) is not None:
                    self._cached_events -= slot.events
            self._published = max(self._published, seq)
            cursor = self.directory / CURSOR
            tmp = cursor.with_suffix(".tmp")
            try:
                write_private(tmp, str(self._published).encode())
                tmp.replace(cursor)
            except OSError as exc:
                log.warning("spool.cursor_write_failed", error=exc.strerror)
            self._compact_locked()

    def _compact_locked(self) -> None:
        """Delete segments whose records are all published (never the one being written)."""
        first_pending = self._slots[0].segment if self._slots else None
        segments = sorted(self._segments)
        for segment in segments[:-1]:
            if first_pending is not None and segment >= first_pending:
                break
            self._budget.release(self._segments.pop(segment))
            segment.unlink(missing_ok=True)
        if not self._slots and segments and self._segments.get(segments[-1], 0) > 0:
            last = segments[-1]
            self._budget.release(self._segments.pop(last))
            last.unlink(missing_ok=True)

    @property
    def pending_events(self) -> int:
        return self._pending_events

    @property
    def pending_records(self) -> int:
        return len(self._slots)

    @property
    def bytes(self) -> int:
        return sum(self._segments.values())


def _truncate_quietly(segment: Path, size: int) -> None:
    try:
        if segment.exists():
            truncate_private(segment, size)
    except OSError:
        log.error("spool.truncate_failed", segment=str(segment))
