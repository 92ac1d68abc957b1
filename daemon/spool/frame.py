"""The spool's record codec (pure): frames, raw bodies and entry batches.

Frame: ``MAGIC | length | crc32 | seq`` then the payload. A payload is either a JSON list
of ``[stream, event_id, fields]`` (a batch of stream entries; a MyInvois window puts a
``W<watermark>`` line before it, which the publisher stores once the batch is in Redis),
or ``R`` + a JSON header line + the raw upstream body (expanded by the publisher).
:func:`scan` reads the valid frames of a segment and stops at a torn or corrupt one.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from daemon.envelope.entries import StreamEntry

MAGIC = b"\xd7\x5a"
HEADER = struct.Struct(">2sIIQ")  # magic, payload length, crc32, seq
MAX_RECORD = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class RawBatch:
    """An upstream response body exactly as received, not yet parsed."""

    received_at: float  # Unix time
    delivery: str
    body: bytes
    count: int = 1  # notifications in the body, as estimated by the receiver (for gauges)


@dataclass(frozen=True, slots=True)
class Record:
    """One spooled batch: stream entries, or a raw body that the publisher expands."""

    seq: int
    entries: tuple[StreamEntry, ...] = ()
    raw: RawBatch | None = None
    watermark: float | None = None  # MyInvois: advance the account's watermark once published

    @property
    def events(self) -> int:
        """Entries in the record; for a raw body, the receiver's estimate."""
        return len(self.entries) if self.raw is None else max(1, self.raw.count)


@dataclass(frozen=True, slots=True)
class _Slot:
    seq: int
    segment: Path
    offset: int
    length: int
    events: int


def encode_record(
    seq: int, entries: Sequence[StreamEntry], watermark: float | None = None
) -> bytes:
    """Frame one record; a watermark is a ``W<unix time>`` line before the entries."""
    payload = json.dumps(
        [[e.stream, e.event_id, e.fields] for e in entries],
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    if watermark is not None:
        payload = b"W" + repr(float(watermark)).encode() + b"\n" + payload
    return _frame(seq, payload)


def encode_raw(seq: int, raw: RawBatch) -> bytes:
    """Frame one raw body: ``R`` + a JSON header line + the body bytes."""
    header = json.dumps(
        {"received_at": raw.received_at, "delivery": raw.delivery, "count": raw.count}
    ).encode()
    return _frame(seq, b"R" + header + b"\n" + raw.body)


def _frame(seq: int, payload: bytes) -> bytes:
    return HEADER.pack(MAGIC, len(payload), zlib.crc32(payload), seq) + payload


def decode_payload(seq: int, payload: bytes) -> Record:
    if payload[:1] == b"R":
        header, _, body = payload[1:].partition(b"\n")
        meta = json.loads(header)
        raw = RawBatch(
            float(meta["received_at"]), str(meta["delivery"]), body, int(meta.get("count", 1))
        )
        return Record(seq, raw=raw)
    if payload[:1] == b"W":
        line, _, entries = payload[1:].partition(b"\n")
        return Record(seq, decode_entries(entries), watermark=float(line))
    return Record(seq, decode_entries(payload))


def decode_entries(payload: bytes) -> tuple[StreamEntry, ...]:
    return tuple(
        StreamEntry(stream, event_id, fields) for stream, event_id, fields in json.loads(payload)
    )


def scan(data: bytes) -> tuple[list[tuple[int, int, int, bytes]], int]:
    """Valid records of one segment as ``(seq, offset, length, payload)``; and where they end.

    Scanning stops at the first frame that is short, has a bad magic, or fails its CRC.
    """
    records: list[tuple[int, int, int, bytes]] = []
    offset = 0
    while offset + HEADER.size <= len(data):
        magic, length, crc, seq = HEADER.unpack_from(data, offset)
        end = offset + HEADER.size + length
        if magic != MAGIC or length > MAX_RECORD or end > len(data):
            break
        payload = data[offset + HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        records.append((seq, offset, end - offset, payload))
        offset = end
    return records, offset
