"""The sandbox's notion of "now": wall-clock time plus an offset tests can move forward.

Both simulators read time through one :class:`SandboxClock`, so a test can jump 72 hours
ahead (to expire DocPlanner notifications, to let a token or an hourly rate window lapse)
without sleeping. The daemon under test keeps its own clock; only upstream state moves.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta, timezone


class SandboxClock:
    """``now()`` is ``time.time() + offset``; ``advance(seconds)`` grows the offset."""

    def __init__(self, offset: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._offset = offset

    def now(self) -> float:
        """Sandbox time in Unix seconds."""
        with self._lock:
            return time.time() + self._offset

    def utcnow(self) -> datetime:
        """Sandbox time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now(), UTC)

    def advance(self, seconds: float) -> None:
        """Jump sandbox time forward (or back, with a negative value)."""
        with self._lock:
            self._offset += seconds

    @property
    def offset(self) -> float:
        with self._lock:
            return self._offset


def iso_utc(timestamp: float) -> str:
    """``2026-11-23T10:18:34Z`` (MyInvois style: UTC, whole seconds, ``Z``)."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def iso_utc_offset(timestamp: float) -> str:
    """``2026-11-23T10:18:34+00:00`` (DocPlanner ``X-RateLimit-Reset`` style)."""
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _last_sunday_utc(year: int, month: int) -> float:
    """01:00 UTC on the last Sunday of ``month``: when EU summer time starts or ends."""
    first_next = datetime(year + (month == 12), month % 12 + 1, 1, 1, tzinfo=UTC)
    last_day = first_next.timestamp() - 86400
    weekday = datetime.fromtimestamp(last_day, UTC).weekday()  # Monday 0 .. Sunday 6
    return last_day - ((weekday + 1) % 7) * 86400


def iso_local(timestamp: float) -> str:
    """``2021-05-12T10:18:34+02:00``: Central European time as DocPlanner writes it."""
    year = datetime.fromtimestamp(timestamp, UTC).year
    summer = _last_sunday_utc(year, 3) <= timestamp < _last_sunday_utc(year, 10)
    zone = timezone(timedelta(hours=2 if summer else 1))
    return datetime.fromtimestamp(timestamp, zone).isoformat(timespec="seconds")


def parse_iso(value: str) -> datetime:
    """An ISO 8601 string with ``Z`` or an offset -> aware datetime (ValueError otherwise)."""
    stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if stamp.tzinfo is None:
        raise ValueError(f"time without a zone: {value!r}")
    return stamp
