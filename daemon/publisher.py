"""Spool -> sink: publishes one account's spooled records to Redis, in order.

Runs in its own thread beside the account's puller, so publishing batch N overlaps the
pull of batch N+1 while the per-account order stays the spool's order. A record is
marked published only after Redis accepted all of it; Redis trouble leaves it pending
and the publisher retries with backoff (the puller keeps spooling meanwhile).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog

from daemon.envelope import StreamEntry
from daemon.errors import InvariantError, SinkError
from daemon.metrics import Metrics
from daemon.sink import RedisSink
from daemon.spool import RawBatch, Record, SpoolLog
from daemon.worker import Backoff, Health

log = structlog.get_logger("daemon.publisher")

Expand = Callable[[RawBatch], list[StreamEntry]]

IDLE_WAIT = 1.0
MAX_EVENTS_PER_CALL = 1000


class Publisher:
    """Publishes the pending records of one spool log; one per account."""

    def __init__(
        self,
        source: str,
        account: str,
        spool: SpoolLog,
        sink: RedisSink,
        metrics: Metrics,
        deadletter_stream: str,
        wall_clock: Callable[[], float] = time.time,
        expand: Expand | None = None,
    ) -> None:
        self.name = f"{source}:{account}:publisher"
        self.source = source
        self.account = account
        self.spool = spool
        self.sink = sink
        self.metrics = metrics
        self.deadletter_stream = deadletter_stream
        self.wall_clock = wall_clock
        self.expand = expand
        self._expanded: dict[int, list[StreamEntry]] = {}
        self.health = Health(source, account, "publisher")
        self.wake = threading.Event()
        self._backoff = Backoff(base=0.25, cap=10.0)
        self._labels = {"source": source, "account": account}
        self.update_gauges()

    def tick(self, now: float) -> float:
        """Publish up to ~1000 pending events; 0 when more is pending."""
        records = self.spool.pending(MAX_EVENTS_PER_CALL)
        if not records:
            self.update_gauges()
            return IDLE_WAIT
        entries = [entry for record in records for entry in self._entries(record)]
        started = time.perf_counter()
        try:
            result = self.sink.publish(entries)
        except SinkError as exc:
            self.health.failed(str(exc), now)
            self.update_gauges()
            return self._backoff.next()
        self.metrics.redis_publish_duration.labels(**self._labels).observe(
            time.perf_counter() - started
        )
        self.spool.mark_published(records[-1].seq)
        for record in records:
            self._expanded.pop(record.seq, None)
        events = [e for e in entries if e.stream != self.deadletter_stream]
        published = sum(
            n
            for stream, n in result.published_by_stream.items()
            if stream != self.deadletter_stream
        )
        self.metrics.events_published.labels(**self._labels).inc(published)
        self.metrics.events_duplicate.labels(**self._labels).inc(len(events) - published)
        self._backoff.reset()
        self.health.succeeded(self.wall_clock())
        self.update_gauges()
        log.debug(
            f"{self.source}.batch_published",
            account=self.account,
            published=published,
            duplicates=len(events) - published,
            deadletters=len(entries) - len(events),
        )
        return 0.0 if self.spool.pending_records else IDLE_WAIT

    def _entries(self, record: Record) -> list[StreamEntry] | tuple[StreamEntry, ...]:
        """A record's entries; a raw body is expanded once (kept until it is published)."""
        if record.raw is None:
            return record.entries
        expanded = self._expanded.get(record.seq)
        if expanded is None:
            if self.expand is None:
                raise InvariantError(f"{self.name}: raw spool record without an expander")
            expanded = self._expanded[record.seq] = self.expand(record.raw)
        return expanded

    def update_gauges(self) -> None:
        self.metrics.spool_pending.labels(**self._labels).set(self.spool.pending_events)
        self.metrics.spool_bytes.labels(**self._labels).set(self.spool.bytes)

    def drain(self, deadline: float, clock: Callable[[], float] = time.monotonic) -> bool:
        """Publish everything pending before ``deadline``; True when nothing is left."""
        while self.spool.pending_records and clock() < deadline:
            delay = self.tick(clock())
            if delay > 0 and self.spool.pending_records:
                time.sleep(min(delay, max(0.0, deadline - clock()), 0.5))
        return not self.spool.pending_records
