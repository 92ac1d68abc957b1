"""The stream entry and the dead letter (SPEC §3): the values every source's format builds.

Pure: no I/O. A :class:`StreamEntry` is what the sink writes; an :class:`Invalid` is what a
source dead-letters (:func:`deadletter_entry`); an :class:`Unreadable` is one item of a page
that JSON cannot read on its own (see :mod:`daemon.envelope.salvage`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime

SCHEMA = "1"


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry for one stream; ``event_id`` is the de-duplication key."""

    stream: str
    event_id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that is not a valid notification: dead-letter ``raw`` with ``reason``."""

    reason: str
    detail: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class Unreadable:
    """One item of a page or batch that JSON cannot read on its own (nested deeper than the
    parser goes, an integer of more than 4300 digits): dead-lettered with its bytes while the
    rest of its page is read (see :func:`salvage`)."""

    raw: bytes
    reason: str


def rfc3339(moment: datetime) -> str:
    """UTC, RFC 3339 with ``Z``; microseconds only when present."""
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp with an offset (or ``Z``) that has a UTC time, else None.

    ``0001-01-01T00:00:00+08:00`` parses but has no UTC time (``astimezone`` overflows):
    such a time is None too, so that one poison item cannot raise later in the batch.
    """
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            return None
        moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment


# Number text where orjson and ``json`` may differ: exponents (also every integer orjson
# read as a float because it does not fit 64 bits) and floats below 1e-4.


def deadletter_entry(
    stream: str,
    source: str,
    account: str,
    invalid: Invalid,
    received_at: datetime,
    position: int = 0,
) -> StreamEntry:
    """A dead-letter entry; its id makes a replay of the same receipt idempotent.

    ``position`` (the item's index in its batch) keeps two identical bad items of one
    receipt apart.
    """
    received = rfc3339(received_at)
    key = f"{received}|{invalid.reason}|{position}|".encode()
    digest = hashlib.sha256(key + invalid.raw)
    event_id = f"deadletter:{source}:{account}:{digest.hexdigest()[:32]}"
    return StreamEntry(
        stream,
        event_id,
        {
            "source": source,
            "account": account,
            "reason": invalid.reason,
            "detail": invalid.detail[:500],
            "raw": invalid.raw.decode("utf-8", errors="replace"),
            "received_at": received,
            "schema": SCHEMA,
        },
    )
