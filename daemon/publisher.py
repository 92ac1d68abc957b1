"""Spool -> sink: publishes one account's spooled records to Redis, in order.

The one path to Redis for every source: DocPlanner pulls and pushes, and MyInvois windows.
Runs on the publishers' pool beside the account's intake worker, so publishing batch N
overlaps the pull of batch N+1 while the per-account order stays the spool's order. A record
is marked published only after Redis accepted all of it (and, for a MyInvois window, after
the account's watermark was advanced to the one the record carries) and, as
``[redis] durability`` asks, the replicas (or the AOF) acknowledged the writes: the
watermark is written only after the window's entries are durable, and waited for too. Redis
trouble, a failover or a wait that times out leaves the record pending and the publisher
retries with backoff (intake keeps spooling meanwhile). A command Redis refuses for good
(WRONGTYPE on our key) is logged with its traceback, counted and named in /readyz at once.

Poison records (SPEC §2): a record that keeps failing for a reason other than Redis being
away (Redis refuses it, or expanding its body raises) is retried alone, and after
:data:`SET_ASIDE_AFTER` attempts it is set aside so that the spool moves on: each entry is
published on its own, the ones Redis still refuses go to the dead-letter stream (reason
``publish_refused``, the notification as ``raw``), a body that cannot be expanded goes there
whole (``expand_failed``); counted in ``drainer_spool_records_set_aside_total``. An
operator sends them back with ``drainer deadletter redrive`` once the cause is fixed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from daemon.envelope.entries import Invalid, StreamEntry, deadletter_entry, parse_time
from daemon.errors import DurabilityError, InvariantError, RedisCommandError, SinkError
from daemon.metrics import Metrics
from daemon.sink import RedisSink, WatermarkUpdate
from daemon.spool import RawBatch, Record, SpoolLog
from daemon.worker import Backoff, Health, Wake

log = structlog.get_logger("daemon.publisher")

Expand = Callable[[RawBatch], list[StreamEntry]]

IDLE_WAIT = 30.0  # a safety net only: every source rings publisher.wake when it spools
MAX_EVENTS_PER_CALL = 1000
DURABILITY_GRACE = 30.0  # unacknowledged writes this long make /readyz name the publisher
SET_ASIDE_AFTER = 3  # failed attempts of one record (Redis not away) before it is set aside


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
        watermark_stream: str | None = None,
        count_deadletters: bool = False,
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
        self.watermark_stream = watermark_stream  # MyInvois: where the watermark lives
        # MyInvois dead letters are counted when they reach Redis (the overlap re-reads a
        # bad item, and only its first copy is new); DocPlanner's when they are expanded.
        self.count_deadletters = count_deadletters
        self.published = 0  # totals, for ``drainer backfill`` and tests
        self.duplicates = 0
        self._expanded: dict[int, list[StreamEntry]] = {}
        self.health = Health(source, account, "publisher")
        self.wake = Wake()  # rung by the account's sources when they spool
        self._backoff = Backoff(base=0.25, cap=10.0)
        self._refused = Backoff(base=5.0, cap=60.0)  # RedisCommandError: slow, loud retries
        self._labels = {"source": source, "account": account}
        self._isolate_to = 0  # records up to this seq are published one at a time
        self._failures: tuple[int, int] = (0, 0)  # (seq, attempts) of the record failing alone
        self.update_gauges()

    def tick(self, now: float) -> float:
        """Publish up to ~1000 pending events; 0 when more is pending."""
        records = self.spool.pending(MAX_EVENTS_PER_CALL)
        if not records:
            self.update_gauges()
            return IDLE_WAIT
        if records[0].seq <= self._isolate_to:
            records = records[:1]  # a batch failed: find the record that fails, one by one
        entries: list[StreamEntry] = []
        for index, record in enumerate(records):
            try:
                entries.extend(self._entries(record))
            except InvariantError:
                raise
            except Exception as exc:  # a body that cannot be expanded: a poison record
                if index:
                    records = records[:index]  # publish the records before it first
                    break
                log.exception(f"{self.source}.expand_failed", account=self.account, seq=record.seq)
                return self._record_failed(record, None, f"{type(exc).__name__}: {exc}", now)
        watermark = next((r.watermark for r in reversed(records) if r.watermark is not None), None)
        started = time.perf_counter()
        try:
            result = self.sink.publish(entries, self._watermark_update(watermark))
        except SinkError as exc:
            self.health.failed(str(exc), now)
            if isinstance(exc, DurabilityError):
                self.metrics.redis_durability_timeouts.labels(**self._labels).inc()
                since = self.health.failing_since
                if since is not None and now - since >= DURABILITY_GRACE:
                    self.health.set_detail("not_ready", f"for {now - since:.0f}s: {exc}")
            self.update_gauges()
            return self._backoff.next()
        except RedisCommandError as exc:
            log.exception(f"{self.source}.publish_refused", account=self.account, error=str(exc))
            self.metrics.redis_command_errors.labels(**self._labels).inc()
            self.health.failed(str(exc), now)
            self.health.set_detail("not_ready", str(exc))
            self.update_gauges()
            if len(records) > 1:
                self._isolate_to = records[-1].seq
                return self._refused.next()
            return self._record_failed(records[0], entries, str(exc), now)
        self._failures = (0, 0)
        self.health.clear_detail("not_ready")
        self._refused.reset()
        if watermark is not None:
            self.metrics.myinvois_watermark.labels(**self._labels).set(watermark)
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
        self.published += published
        dead = result.published_by_stream.get(self.deadletter_stream, 0)
        if self.count_deadletters and dead:
            self.metrics.deadletter.labels(**self._labels, reason="invalid_notification").inc(dead)
        self.duplicates += len(events) - published
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

    def _record_failed(
        self, record: Record, entries: list[StreamEntry] | None, error: str, now: float
    ) -> float:
        """One more failed attempt of ``record`` alone; set aside after SET_ASIDE_AFTER."""
        self.health.failed(error, now)
        seq, attempts = self._failures
        attempts = attempts + 1 if seq == record.seq else 1
        self._failures = (record.seq, attempts)
        self._isolate_to = max(self._isolate_to, record.seq)
        if attempts < SET_ASIDE_AFTER:
            return self._refused.next()
        try:
            self._set_aside(record, entries, error, attempts)
        except SinkError as exc:
            self.health.failed(str(exc), now)
            return self._backoff.next()
        except RedisCommandError as exc:  # the dead-letter stream refuses too: keep it
            log.exception(f"{self.source}.set_aside_refused", account=self.account, error=str(exc))
            self.health.failed(str(exc), now)
            return self._refused.next()
        self._failures = (0, 0)
        self._refused.reset()
        self.health.clear_detail("not_ready")
        self.health.succeeded(self.wall_clock())
        self.update_gauges()
        return 0.0

    def _set_aside(
        self, record: Record, entries: list[StreamEntry] | None, error: str, attempts: int
    ) -> None:
        """Publish what Redis takes of ``record`` one entry at a time, dead-letter the rest."""
        wall = datetime.fromtimestamp(self.wall_clock(), tz=UTC)
        dead: list[StreamEntry] = []
        published = 0
        if entries is None:  # the body could not be expanded: dead-letter it whole
            assert record.raw is not None, "only a raw record is expanded"
            received = datetime.fromtimestamp(record.raw.received_at, tz=UTC)
            invalid = Invalid("expand_failed", error, record.raw.body)
            dead.append(
                deadletter_entry(
                    self.deadletter_stream, self.source, self.account, invalid, received
                )
            )
        else:
            for entry in entries:
                if entry.stream == self.deadletter_stream:
                    dead.append(entry)
                    continue
                try:
                    result = self.sink.publish([entry])
                except RedisCommandError as exc:
                    dead.append(self._refused_entry(entry, str(exc), wall))
                    continue
                published += result.published_by_stream.get(entry.stream, 0)
        self.sink.publish(dead, self._watermark_update(record.watermark))
        self.spool.mark_published(record.seq)
        self._expanded.pop(record.seq, None)
        self.published += published
        self.metrics.events_published.labels(**self._labels).inc(published)
        self.metrics.spool_set_aside.labels(**self._labels).inc()
        refused = sum(
            1 for e in dead if e.fields.get("reason") in ("publish_refused", "expand_failed")
        )
        reason = "expand_failed" if entries is None else "publish_refused"
        self.metrics.deadletter.labels(**self._labels, reason=reason).inc(refused)
        log.error(
            f"{self.source}.record_set_aside",
            account=self.account,
            seq=record.seq,
            attempts=attempts,
            error=error[:500],
            published=published,
            deadlettered=refused,
        )

    def _refused_entry(self, entry: StreamEntry, error: str, wall: datetime) -> StreamEntry:
        """The dead-letter entry of a stream entry Redis refuses: its notification as ``raw``."""
        raw = entry.fields.get("payload", "").encode("utf-8", errors="replace")
        received = parse_time(entry.fields.get("received_at")) or wall
        invalid = Invalid("publish_refused", error, raw)
        dead = deadletter_entry(
            self.deadletter_stream, self.source, self.account, invalid, received
        )
        # A set-aside repeated after a crash writes the same dead letter once.
        return StreamEntry(dead.stream, f"deadletter:{entry.event_id}", dead.fields)

    def _watermark_update(self, watermark: float | None) -> WatermarkUpdate | None:
        if watermark is None:
            return None
        if self.watermark_stream is None:
            raise InvariantError(f"{self.name}: a watermark record without a watermark stream")
        moment = datetime.fromtimestamp(watermark, tz=UTC)
        return WatermarkUpdate(self.watermark_stream, self.account, moment)

    def read_watermark(self) -> datetime | None:
        """The account's stored watermark (MyInvois); SinkError when Redis is not answering."""
        if self.watermark_stream is None:
            return None
        return self.sink.get_watermark(self.watermark_stream, self.account)

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
