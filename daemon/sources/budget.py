"""Rate budgets: hard ceilings over a sliding window (SPEC §2), shared by what they limit.

:class:`SlidingWindowBudget` never grants more than ``limit`` requests in any ``window``
seconds. With ``spread=True`` it also spaces requests evenly (``window / limit`` apart),
so a minute's budget is never spent in one burst; with ``spread=False`` it lets a backlog
burst up to the limit (the DocPlanner hourly GET budget).

:meth:`block_until` records an upstream "no request before T" (429, ``Retry-After``,
``X-RateLimit-Reset`` with nothing remaining). All times are ``time.monotonic()`` values
passed in by the caller, so tests drive it with a fake clock.

:class:`FairBudget` lets many callers (the taxpayers of one MyInvois Client ID) share one
budget without blocking and in turn; :class:`SharedBudgets` hands every account the
shared object of the upstream's unit of limiting (STYLE: a limiter is named by what the
upstream limits, not by the account).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

# ``window`` below is the effective one, slightly longer than the configured window.


class SlidingWindowBudget:
    def __init__(
        self,
        limit: int,
        window: float,
        spread: bool = False,
        margin: float = 0.01,
        burst: int = 1,
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a budget needs limit >= 1 and window > 0")
        self.limit = limit
        # A small margin keeps us inside the upstream's own window despite clock skew
        # and request latency between our grant and its arrival.
        self.window = window * (1 + margin)
        self.spread = spread
        # With spread: at most ``burst`` requests closer than window/limit apart, so a
        # grant taken late (a busy machine) can be caught up without breaking the pace.
        self.burst = max(1, burst)
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
            k = min(self.burst, len(self._granted))
            earliest = max(earliest, self._granted[-k] + k * self.window / self.limit)
        return earliest

    def try_acquire(self, now: float) -> float:
        """Take one request now if allowed and return 0; else return seconds to wait."""
        with self._lock:
            earliest = self._next_allowed_locked(now)
            if earliest > now:
                return earliest - now
            self._granted.append(now)
            return 0.0

    def try_acquire_wait(self, now: float) -> float:
        """Seconds until a request would be granted (0: now); takes nothing."""
        with self._lock:
            return max(0.0, self._next_allowed_locked(now) - now)

    def block_until(self, moment: float) -> None:
        """No request before ``moment`` (the upstream told us so)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, moment)

    def used(self, now: float) -> int:
        with self._lock:
            self._next_allowed_locked(now)
            return len(self._granted)


class FairBudget:
    """A :class:`SlidingWindowBudget` shared by many callers, served first come, first served.

    ``try_acquire(now, who)`` never blocks: it grants now (0) or returns the wait. A caller
    that has to wait is given a place in line (a moment one ``window / limit`` after the
    place before it) and is served at the head of the line, so callers that share a budget
    take turns: a busy caller asking again at once queues behind everyone already waiting
    instead of racing them. A caller late for its turn (a busy machine) keeps its place and
    goes first while it keeps asking; a head that stops asking for ``patience`` seconds past
    its moment is passed by those behind it, and a place nobody asked for within ``grace``
    seconds is dropped (its caller stopped);
    :meth:`forget` drops one at once (an account removed on reload).
    """

    def __init__(
        self, budget: SlidingWindowBudget, grace: float = 120.0, patience: float | None = None
    ) -> None:
        self.budget = budget
        self.grace = grace  # a place not asked for this long after its moment is dropped
        self._spacing = budget.window / budget.limit
        self.patience = max(1.0, 2 * self._spacing) if patience is None else patience
        self._line: dict[str, float] = {}  # caller -> its moment; moments grow in line order
        self._seen: dict[str, float] = {}  # caller in line -> when it last asked
        self._lock = threading.Lock()

    @property
    def limit(self) -> int:
        return self.budget.limit

    def try_acquire(self, now: float, who: str) -> float:
        """Take one request for ``who`` now (0.0), or return the seconds until its turn."""
        with self._lock:
            self._drop_lost(now)
            mine = self._line.get(who)
            head = next(iter(self._line.items()), None)
            if mine is None and head is not None:
                return self._queue(who, now)  # others are waiting: behind them
            if mine is not None:
                self._seen[who] = now
            if mine is not None and head is not None and head[0] != who:
                if now < mine:
                    return mine - now
                # The head is late. While it is still asking (or not yet overdue by
                # ``patience``), it goes first; a head that stopped asking is passed.
                expected = max(head[1], self._seen.get(head[0], head[1]))
                if now <= expected + self.patience:
                    return max(self._spacing, min(mine - head[1], self.patience))
            wait = self.budget.try_acquire(now)
            if wait > 0:
                return wait if mine is not None else self._queue(who, now)
            self._line.pop(who, None)
            self._seen.pop(who, None)
            return 0.0

    def _queue(self, who: str, now: float) -> float:
        last = next(reversed(self._line.values()), None)
        earliest = now + self.budget.try_acquire_wait(now)
        moment = earliest if last is None else max(earliest, last + self._spacing)
        self._line[who] = moment
        return moment - now

    def _drop_lost(self, now: float) -> None:
        for who, moment in list(self._line.items()):
            if now - max(moment, self._seen.get(who, moment)) <= self.grace:
                return
            del self._line[who]
            self._seen.pop(who, None)

    def forget(self, who: str) -> None:
        with self._lock:
            self._line.pop(who, None)
            self._seen.pop(who, None)

    def block_until(self, moment: float) -> None:
        self.budget.block_until(moment)

    def used_ratio(self, now: float) -> float:
        """Share of the window's requests already taken (1.0: the budget is spent)."""
        return self.budget.used(now) / self.budget.limit

    def waiting(self) -> int:
        with self._lock:
            return len(self._line)


class SharedBudgets:
    """Things shared by every account that an upstream limits as one, by key.

    Built once (in wiring) and passed to whatever builds the accounts' API clients: the
    first account with a key creates the shared object, the others get the same one. Keys
    name what the upstream limits, e.g. ``myinvois:<identity host>:<client_id>``.
    """

    def __init__(self) -> None:
        self._shared: dict[str, object] = {}
        self._lock = threading.Lock()

    def get(self, key: str, kind: type[T], make: Callable[[], T]) -> T:
        with self._lock:
            found = self._shared.get(key)
            if found is None:
                found = self._shared[key] = make()
        if not isinstance(found, kind):
            raise TypeError(f"shared budget {key!r} holds a {type(found).__name__}")
        return found

    def keys(self) -> list[str]:
        with self._lock:
            return list(self._shared)
