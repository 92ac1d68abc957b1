"""What every worker shares: the ``Worker`` protocol, health bookkeeping and backoff.

A worker is one ``tick(now)`` per cycle returning how long to wait before the next one;
``daemon.runtime.scheduler`` runs the ticks of every worker on a bounded pool. Tests call
``tick`` directly with a fake clock.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

log = structlog.get_logger("daemon.worker")

FAILURE_DEADLINE = 300.0  # an account failing this long makes /readyz answer 503
REFUSED_CAP = 300.0  # a refusal (403, a 400 we cannot fix) is retried at least this often


class Worker(Protocol):
    name: str
    health: Health

    def tick(self, now: float) -> float:
        """Do one cycle; return the seconds to wait before the next."""
        ...


@dataclass(frozen=True, slots=True)
class HealthSnapshot:
    """A consistent copy of one worker's health, for readers on other threads."""

    source: str
    account: str
    role: str
    last_success: float | None
    last_error: str | None
    failing_since: float | None
    detail: dict[str, object]

    def overdue(self, now: float, deadline: float = FAILURE_DEADLINE) -> bool:
        return self.failing_since is not None and now - self.failing_since > deadline


@dataclass
class Health:
    """Per-worker state for /readyz, ``drainer status`` and the logs.

    Written by the worker's thread, read by the HTTP server's: every change and every
    :meth:`snapshot` holds one small lock, so a reader never sees a half-made update.
    """

    source: str
    account: str
    role: str
    last_success: float | None = None  # wall time
    last_error: str | None = None
    failing_since: float | None = None  # monotonic
    detail: dict[str, object] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def succeeded(self, wall: float) -> None:
        if self.failing_since is not None:
            log.info(f"{self.source}.recovered", account=self.account, role=self.role)
        with self._lock:
            self.last_success = wall
            self.failing_since = None

    def failed(self, error: str, now: float) -> None:
        """Record a failure; logs only on a state change (first failure, new error text)."""
        if self.failing_since is None or error != self.last_error:
            log.warning(f"{self.source}.failing", account=self.account, role=self.role, error=error)
        with self._lock:
            if self.failing_since is None:
                self.failing_since = now
            self.last_error = error

    def refused(self, error: str, now: float) -> None:
        """An upstream refusal retried with :func:`refused_backoff`: failing, and named in
        /readyz until the next success clears ``not_ready`` (an unpulled queue expires, so
        no single answer stops an account for good)."""
        self.set_detail("not_ready", f"{error}; retrying with backoff (at most {REFUSED_CAP:.0f}s)")
        self.failed(error, now)

    def set_detail(self, key: str, value: object) -> None:
        with self._lock:
            self.detail[key] = value

    def clear_detail(self, key: str) -> None:
        with self._lock:
            self.detail.pop(key, None)

    def snapshot(self) -> HealthSnapshot:
        with self._lock:
            return HealthSnapshot(
                self.source,
                self.account,
                self.role,
                self.last_success,
                self.last_error,
                self.failing_since,
                dict(self.detail),
            )

    def overdue(self, now: float, deadline: float = FAILURE_DEADLINE) -> bool:
        return self.snapshot().overdue(now, deadline)


class Backoff:
    """Exponential backoff with full jitter, reset on success."""

    def __init__(self, base: float = 0.5, cap: float = 60.0, rng: random.Random | None = None):
        self.base = base
        self.cap = cap
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        self.attempts += 1
        ceiling = min(self.cap, self.base * 2 ** min(self.attempts, 16))
        return float(ceiling / 2 + self._rng.uniform(0, ceiling / 2))

    def reset(self) -> None:
        self.attempts = 0


def refused_backoff(start: float = 10.0) -> Backoff:
    """The backoff after an upstream refusal: its first wait between half of ``start`` and
    ``start``, then doubling, at most :data:`REFUSED_CAP` (``start`` is capped too)."""
    return Backoff(base=min(start, REFUSED_CAP) / 2, cap=REFUSED_CAP)


class Wake:
    """A worker's doorbell: :meth:`set` asks whoever schedules it to tick it at once.

    Sources call it when they spool (``on_spooled=publisher.wake.set``); the runtime's
    scheduler :meth:`connect` s to it. Unconnected (a test, ``drainer backfill``) it does
    nothing. Thread-safe: it only reads one attribute and calls it.
    """

    def __init__(self) -> None:
        self._target: Callable[[], None] | None = None

    def connect(self, target: Callable[[], None] | None) -> None:
        self._target = target

    def set(self) -> None:
        target = self._target
        if target is not None:
            target()
