"""Collectors computed at scrape time: the DocPlanner expiry age, the stream lengths.

Neither blocks a scrape: the expiry age is arithmetic on the last observations, the stream
lengths come from the background Redis probe's cache.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon.errors import SinkError

log = structlog.get_logger("daemon.metrics")


class ExpiryAge(Collector):
    """``drainer_docplanner_oldest_event_age_seconds``, computed at scrape time (SPEC §7).

    The anchor is ``created_at`` of the newest notification of the last pull that left
    ``remaining > 0``; the value is now minus the anchor, so it keeps growing while pulling
    is blocked (403, 429, full spool, upstream down). An empty queue clears it to 0.
    Observations carry the pull's own time, and one older than the last is ignored: a
    spooled batch published after a later empty pull must not bring a stale anchor back.
    """

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._anchor: dict[str, float | None] = {}
        self._pulled_at: dict[str, float] = {}

    def add(self, account: str) -> None:
        with self._lock:
            self._anchor.setdefault(account, None)

    def observe(self, account: str, pulled_at: float, remaining: int, newest: float | None) -> None:
        """One pull: its time, the ``remaining`` it reported, its newest ``created_at``."""
        with self._lock:
            if pulled_at < self._pulled_at.get(account, float("-inf")):
                return
            self._pulled_at[account] = pulled_at
            if remaining <= 0:
                self._anchor[account] = None
            elif newest is not None:
                self._anchor[account] = newest
            elif self._anchor.get(account) is None:
                # No valid created_at in the batch: what is still queued was queued
                # before this pull, so the pull's own time is a safe anchor.
                self._anchor[account] = pulled_at

    def emptied(self, account: str, pulled_at: float) -> None:
        """A pull found the queue empty (404): the age is 0 from now on."""
        self.observe(account, pulled_at, 0, None)

    def value(self, account: str) -> float:
        with self._lock:
            anchor = self._anchor.get(account)
        return 0.0 if anchor is None else max(0.0, self._wall_clock() - anchor)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "drainer_docplanner_oldest_event_age_seconds",
            "While the last pull left remaining > 0: now - created_at of the newest"
            " notification it returned (72 h = upstream expiry); 0 after an empty queue.",
            labels=["source", "account"],
        )
        with self._lock:
            accounts = sorted(self._anchor)
        for account in accounts:
            family.add_metric(["docplanner", account], self.value(account))
        yield family


class StreamLengthCollector(Collector):
    """``drainer_stream_length`` and ``drainer_redis_up`` (1 when Redis answered, else 0).

    ``lengths`` must not block on Redis: the daemon passes the cache of its background
    probe (``daemon.sink.health.RedisProbe.lengths``), which raises SinkError when stale.
    """

    def __init__(self, lengths: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._lengths = lengths  # raises SinkError when Redis is not answering
        self._failing = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "drainer_stream_length", "Entries in each Redis stream (XLEN).", labels=["stream"]
        )
        redis_up = GaugeMetricFamily(
            "drainer_redis_up",
            "1 when Redis answered the daemon's background probe (PING, XLEN) within the last"
            " few seconds, else 0 (down or hanging).",
        )
        try:
            for stream, length in self._lengths():
                family.add_metric([stream], float(length))
        except SinkError as exc:  # a scrape must not fail because Redis is down
            if not self._failing:
                log.warning("metrics.stream_length_unavailable", error=str(exc))
            self._failing = True
            redis_up.add_metric([], 0.0)
            yield redis_up
            return
        redis_up.add_metric([], 1.0)
        yield redis_up
        if self._failing:
            log.info("metrics.stream_length_available")
        self._failing = False
        yield family
