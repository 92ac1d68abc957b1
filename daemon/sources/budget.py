"""Rate budgets: hard ceilings over a sliding window (SPEC §2).

:class:`SlidingWindowBudget` never grants more than ``limit`` requests in any ``window``
seconds. With ``spread=True`` it also spaces requests evenly (``window / limit`` apart),
so a minute's budget is never spent in one burst; with ``spread=False`` it lets a backlog
burst up to the limit (the DocPlanner hourly GET budget).

:meth:`block_until` records an upstream "no request before T" (429, ``Retry-After``,
``X-RateLimit-Reset`` with nothing remaining). All times are ``time.monotonic()`` values
passed in by the caller, so tests drive it with a fake clock.
"""

from __future__ import annotations

import threading
from collections import deque

# ``window`` below is the effective one, slightly longer than the configured window.


class SlidingWindowBudget:
    def __init__(
        self, limit: int, window: float, spread: bool = False, margin: float = 0.01
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs limit >= 1 and window > 0")
        self.limit = limit
        # A small margin keeps us inside the upstream's own window despite clock skew
        # and request latency between our grant and its arrival.
        self.window = window * (1 + margin)
        self.spread = spread
        self._granted: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def _next_allowed_locked(self, now: float) -> float:
        while self._granted and self._granted[0] <= now - self.window:
            self._granted.popleft()
        earliest = max(now, self._blocked_until)
        if len(self._granted) >= self.limit:
            earliest = max(earliest, self._granted[-self.limit] + self.window)
        if self.spread and self._granted:
            earliest = max(earliest, self._granted[-1] + self.window / self.limit)
        return earliest

    def try_acquire(self, now: float) -> float:
        """Take one request now if allowed and return 0; else return seconds to wait."""
        with self._lock:
            earliest = self._next_allowed_locked(now)
            if earliest > now:
                return earliest - now
            self._granted.append(now)
            return 0.0

    def block_until(self, moment: float) -> None:
        """No request before ``moment`` (the upstream told us so)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, moment)

    def used(self, now: float) -> int:
        with self._lock:
            self._next_allowed_locked(now)
            return len(self._granted)
