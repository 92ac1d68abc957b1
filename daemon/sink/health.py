"""Redis health and Redis-derived figures, collected off the request path (SPEC §6).

``/healthz`` never touches Redis; ``/readyz`` (3 s) and ``/metrics`` (5 s) must answer in
time while Redis hangs, and a Redis command can block for ``socket_timeout``. So a
:class:`RedisProbe` worker, ticked like any other worker, asks Redis every
:data:`PROBE_EVERY` seconds for ``PING`` and the stream lengths (``XLEN``), and every
:data:`GROUPS_EVERY` seconds for the consumer groups; the request handlers read only what
it cached. The cache is *stale* when Redis has not answered for :data:`STALE_AFTER`
seconds (it hangs, or is down): ``/readyz`` then says redis is not answering,
``drainer_redis_up`` is 0 and the stream-length and consumer-group series are absent;
``drainer_redis_probe_age_seconds`` says how long ago Redis last answered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon.errors import SinkError
from daemon.metrics.groups import StreamGroups
from daemon.sink.connect import RedisClient
from daemon.sink.failures import REDIS_ERRORS
from daemon.sink.groups import read_groups
from daemon.worker import Health

log = structlog.get_logger("daemon.sink.health")

PROBE_EVERY = 1.0
GROUPS_EVERY = 5.0
STALE_AFTER = 5.0  # seconds without an answer before Redis counts as not answering


@dataclass(frozen=True, slots=True)
class Figures:
    """What Redis said at its last answer (monotonic time)."""

    answered_at: float
    lengths: tuple[tuple[str, int], ...]
    groups: tuple[StreamGroups, ...] | None  # None until the first group read


class RedisProbe:
    """A worker that asks Redis how it is; request handlers read its cache only."""

    def __init__(
        self,
        client: RedisClient,
        streams: Sequence[str],
        group_limit: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        stale_after: float = STALE_AFTER,
        refresh: Callable[[], None] | None = None,
    ) -> None:
        self.name = "redis:probe"
        self.health = Health("redis", "probe", "health")
        self._client = client
        self._streams = list(streams)
        self._group_limit = group_limit
        self._clock = clock
        self._wall_clock = wall_clock
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._figures: Figures | None = None
        self._error: str | None = "redis has not answered yet"
        self._groups_due = 0.0
        self._refresh = refresh  # more to ask Redis on the group cadence (replication)

    # --- the worker ----------------------------------------------------------------------

    def tick(self, now: float) -> float:
        groups: tuple[StreamGroups, ...] | None = None
        try:
            self._client.ping()
            lengths = tuple((s, int(self._client.xlen(s))) for s in self._streams)
            if now >= self._groups_due:
                groups = tuple(
                    read_groups(self._client, self._streams, self._group_limit, self._wall_clock)
                )
                self._groups_due = now + GROUPS_EVERY
                self._refresh_quietly()
        except REDIS_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                changed, self._error = self._error != error, error
            if changed:
                log.warning("redis.probe_failed", error=error)
            return PROBE_EVERY
        with self._lock:
            if groups is None and self._figures is not None:
                groups = self._figures.groups
            self._figures = Figures(self._clock(), lengths, groups)
            recovered, self._error = self._error is not None, None
        if recovered:
            log.info("redis.probe_answered")
        self.health.succeeded(self._wall_clock())
        return PROBE_EVERY

    def _refresh_quietly(self) -> None:
        if self._refresh is None:
            return
        try:
            self._refresh()
        except REDIS_ERRORS as exc:  # e.g. INFO refused by an ACL: the publishes still report
            log.debug("redis.probe_refresh_failed", error=f"{type(exc).__name__}: {exc}")

    # --- readers (any thread, never blocking on Redis) -----------------------------------

    def fresh(self) -> Figures | None:
        """The cached figures when Redis answered within ``stale_after`` seconds, else None."""
        with self._lock:
            figures, error = self._figures, self._error
        if figures is None or error is not None:
            return None
        if self._clock() - figures.answered_at > self.stale_after:
            return None
        return figures

    def not_ready(self) -> str | None:
        """Why Redis counts as not answering (for /readyz), or None when it answers."""
        if self.fresh() is not None:
            return None
        with self._lock:
            error = self._error
        return f"redis is not answering ({error or f'no answer for {self.stale_after:g}s'})"

    def age(self) -> float | None:
        """Seconds since Redis last answered the probe; None if it never did."""
        with self._lock:
            figures = self._figures
        return None if figures is None else max(0.0, self._clock() - figures.answered_at)

    def lengths(self) -> Iterable[tuple[str, int]]:
        """For ``StreamLengthCollector``: SinkError when stale."""
        figures = self.fresh()
        if figures is None:
            raise SinkError(self.not_ready() or "redis is not answering")
        return figures.lengths

    def groups(self) -> Iterable[StreamGroups]:
        """For ``ConsumerGroupCollector``: SinkError when stale or not read yet."""
        figures = self.fresh()
        if figures is None or figures.groups is None:
            raise SinkError(self.not_ready() or "consumer groups not read yet")
        return figures.groups


class ProbeAgeCollector(Collector):
    """``drainer_redis_probe_age_seconds``: how old the Redis-derived series are."""

    def __init__(self, probe: RedisProbe) -> None:
        self._probe = probe

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "drainer_redis_probe_age_seconds",
            "Seconds since Redis last answered the background probe that feeds /readyz,"
            " drainer_redis_up and the stream-length and consumer-group series (absent"
            f" when older than {STALE_AFTER:g}s).",
        )
        age = self._probe.age()
        if age is not None:
            family.add_metric([], age)
        yield family
