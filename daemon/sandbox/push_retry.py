"""DocPlanner's push retries after a failed push: none, or after 1, 5 and 15 minutes.

The documents conflict, so the sandbox can do either (``DocPlannerSandbox(push_retries=)``):

- ``"once"`` (the default, the stricter one): [OAS] push operation, "Regardless of the
  response status (500, 200, 400) from the client endpoint, the events will be pushed only
  once." A failed push waits for the next release.
- ``"guide"``: [G] /guide/callbacks/real-time-requests.html, "If the third party returns a
  4XX or 5XX status code (failure), Docplanner will attempt to resend the notification three
  times - after 1, 5, and 15 minutes." Read as measured from the failed push; a push still
  failing after the last retry is buried (re-dispatched by the next release). Re-dispatches
  by release are sent once: docs silent, fewer deliveries is the stricter choice.

``scale`` shrinks the schedule for tests (0.01: 0.6 s, 3 s, 9 s).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

SCHEDULES: dict[str, tuple[float, ...]] = {"once": (), "guide": (60.0, 300.0, 900.0)}


@dataclass(order=True)
class _Due:
    due: float
    seq: int
    failed_at: float = field(compare=False)
    attempt: int = field(compare=False)  # index into the schedule
    job: Any = field(compare=False)


@dataclass(frozen=True)
class Attempt:
    """One retry: seconds after the failed push, its number (1..3), and whether it got a 2xx."""

    after: float
    number: int
    delivered: bool


class PushRetries:
    """Retries failed pushes on a schedule in a background thread; ``bury`` takes the rest."""

    def __init__(
        self,
        schedule: str = "once",
        scale: float = 1.0,
        *,
        deliver: Callable[[Any], bool],
        bury: Callable[[Any], None],
    ) -> None:
        if schedule not in SCHEDULES:
            raise ValueError(
                f"push_retries must be one of {', '.join(SCHEDULES)}, not {schedule!r}"
            )
        self.delays = tuple(delay * scale for delay in SCHEDULES[schedule])
        self._deliver = deliver
        self._bury = bury
        self._due: list[_Due] = []
        self._seq = itertools.count()
        self._busy = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False
        self.attempts: list[Attempt] = []

    def schedule(self, job: Any) -> bool:
        """Retry ``job`` (a push that just failed) on the schedule; False when there is none."""
        if not self.delays:
            return False
        now = time.monotonic()
        with self._changed:
            if self._closed:
                return False
            heapq.heappush(self._due, _Due(now + self.delays[0], next(self._seq), now, 0, job))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="push-retries", daemon=True)
                self._thread.start()
            self._changed.notify_all()
        return True

    def pending(self) -> int:
        """Pushes waiting for (or in) a retry."""
        with self._changed:
            return len(self._due) + self._busy

    def wait_idle(self, timeout: float) -> bool:
        """Wait until every scheduled retry has been delivered or buried; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._due and not self._busy, timeout)

    def close(self) -> None:
        """Stop retrying; what is still scheduled is dropped."""
        with self._changed:
            self._closed = True
            self._due.clear()
            self._changed.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout=5.0)

    def _run(self) -> None:
        while True:
            with self._changed:
                while not self._closed and (not self._due or self._due[0].due > time.monotonic()):
                    wait = self._due[0].due - time.monotonic() if self._due else None
                    self._changed.wait(wait)
                if self._closed:
                    return
                entry = heapq.heappop(self._due)
                self._busy += 1
            delivered = self._deliver(entry.job)
            with self._changed:
                after = time.monotonic() - entry.failed_at
                self.attempts.append(Attempt(after, entry.attempt + 1, delivered))
                if not delivered and entry.attempt + 1 < len(self.delays):
                    due = entry.failed_at + self.delays[entry.attempt + 1]
                    heapq.heappush(
                        self._due,
                        _Due(due, next(self._seq), entry.failed_at, entry.attempt + 1, entry.job),
                    )
                elif not delivered:
                    self._bury(entry.job)
                self._busy -= 1
                self._changed.notify_all()
