"""A sliding-window request log: at most ``limit`` hits in any ``window`` seconds."""

from __future__ import annotations

from collections import deque


class SlidingWindow:
    """Not thread-safe on its own: the owning simulator holds its lock around calls."""

    def __init__(self, limit: int, window: float) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("a rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window = window
        self._hits: deque[float] = deque()

    def _prune(self, now: float) -> None:
        while self._hits and self._hits[0] <= now - self.window:
            self._hits.popleft()

    def hit(self, now: float) -> bool:
        """Count one request at ``now`` if the window has room; False (not counted) if full."""
        self._prune(now)
        if len(self._hits) >= self.limit:
            return False
        self._hits.append(now)
        return True

    def used(self, now: float) -> int:
        self._prune(now)
        return len(self._hits)

    def remaining(self, now: float) -> int:
        return max(self.limit - self.used(now), 0)

    def reset_at(self, now: float) -> float:
        """When the oldest counted request leaves the window (a slot frees up)."""
        self._prune(now)
        return self._hits[0] + self.window if self._hits else now + self.window

    def retry_after(self, now: float) -> float:
        """Seconds until the next request would be allowed (0 if allowed now)."""
        self._prune(now)
        if len(self._hits) < self.limit:
            return 0.0
        return max(self._hits[0] + self.window - now, 0.0)
