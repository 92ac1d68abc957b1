"""MyInvois: the Get Notifications client and the date-window poller (SPEC §1, §2).

A MyInvois read is not destructive (the history stays upstream), so there is no spool:
a window that was not published is simply read again. One window::

    dateFrom = watermark - overlap          (first start: start_at, else now - 1 day)
    dateTo   = min(now - SAFETY_LAG, watermark + MAX_WINDOW)   fixed when the window starts
    GET pageNo=1,2,... (pageSize <= 100)    one page per tick, until hasNext is false
    publish oldest first                    (creationDateTime, then notificationId)
    advance the watermark to dateTo         only after the whole window is in Redis

Pages are newest first and shift while we read them (late arrivals push older items
down), so an item can be seen twice; ``event_id = myinvois:<account>:<notificationId>``
and the sink's atomic de-duplication make every re-read harmless. Invalid items are
dead-lettered with the window (with a content-derived id, so the overlap re-reading
the same bad item does not dead-letter it again); an unparseable page is a transient
error and the same page is asked for again.

:class:`MyInvoisPoller` is one ``tick`` = at most one page request. Where its windows
come from is a :class:`Cursor`: :class:`WatermarkCursor` (the live poll, watermark in
Redis beside the stream) or :class:`RangeCursor` (``drainer backfill``: a fixed range,
the watermark left alone). The rate budget lives in the account's UpstreamClient and is
taken before every page request; token requests (about one an hour, on the identity
endpoint) are not counted against it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from daemon.budget import SlidingWindowBudget
from daemon.envelope import (
    rfc3339,
)
from daemon.errors import (
    RateLimitedError,
    SinkError,
    UpstreamError,
)
from daemon.metrics import Metrics
from daemon.myinvois_api import MyInvoisApi, TokenRejectedError, parse_page
from daemon.myinvois_window import Cursor, WatermarkCursor, Window, WindowBatch, build_batch
from daemon.settings import MyInvoisAccount
from daemon.sink import RedisSink
from daemon.upstream import UpstreamClient
from daemon.worker import Backoff, Health

if TYPE_CHECKING:
    from daemon.runtime import Context

log = structlog.get_logger("daemon.myinvois")

log = structlog.get_logger("daemon.myinvois")

PUBLISH_CHUNK = 500  # entries per atomic sink call


class MyInvoisPoller:
    """One account's poll: one ``tick`` sends at most one page request."""

    def __init__(
        self,
        account: MyInvoisAccount,
        api: MyInvoisApi,
        sink: RedisSink,
        metrics: Metrics,
        stream: str,
        deadletter_stream: str,
        cursor: Cursor | None = None,
        wall_clock: Callable[[], float] = time.time,
        role: str = "poller",
        backoff: Backoff | None = None,
    ) -> None:
        self.name = f"myinvois:{account.name}:{role}"
        self.account = account
        self.api = api
        self.sink = sink
        self.metrics = metrics
        self.stream = stream
        self.deadletter_stream = deadletter_stream
        self.cursor: Cursor = cursor or WatermarkCursor(account, sink, stream, metrics, wall_clock)
        self.wall_clock = wall_clock
        self.health = Health("myinvois", account.name, role)
        self.window: Window | None = None
        self.last_error: Exception | None = None
        # Counters for tests, ``drainer backfill`` and the benchmark.
        self.requests = 0
        self.windows_completed = 0
        self.notifications = 0
        self.published = 0
        self.duplicates = 0
        self.caught_up = False
        self._labels = {"source": "myinvois", "account": account.name}
        self._backoff = backoff or Backoff(base=0.5, cap=60.0)
        self._next_poll = 0.0

    def tick(self, now: float) -> float:
        if self.window is None:
            if now < self._next_poll:
                return self._next_poll - now
            try:
                self.window = self.cursor.next_window()
            except SinkError as exc:
                return self._failed(exc, now)
            if self.window is None:
                self._next_poll = now + self.account.interval
                return self.account.interval
            self.window.started = now
        if not self.window.complete:
            wait = self._read_page(self.window, now)
            if not self.window.complete:
                return wait
        return self._publish(self.window, now)

    def _failed(self, exc: Exception, now: float) -> float:
        self.last_error = exc
        self.health.failed(str(exc), now)
        if isinstance(exc, RateLimitedError):
            return max(0.0, exc.retry_at - now)
        return self._backoff.next()

    def _read_page(self, window: Window, now: float) -> float:
        wait = self.api.budget.try_acquire(now)
        if wait > 0:
            return wait
        self.requests += 1
        try:
            body = self.api.get_page(
                window.date_from, window.date_to, window.page_no, self.account.page_size
            )
            items, has_next = parse_page(body, self.account.page_size)
        except TokenRejectedError:
            log.info("myinvois.token_rejected", account=self.account.name)
            return 0.0
        except UpstreamError as exc:
            return self._failed(exc, now)
        window.add_page(items, has_next, datetime.fromtimestamp(self.wall_clock(), tz=UTC))
        self._backoff.reset()  # the next fault starts from a short backoff again
        return 0.0

    def _publish(self, window: Window, now: float) -> float:
        if window.batch is None:
            window.batch = build_batch(
                self.account.name, self.stream, self.deadletter_stream, window
            )
            window.received = []  # the batch holds everything now
            self.metrics.events_received.labels(**self._labels).inc(window.batch.notifications)
        batch = window.batch
        try:
            while window.next_entry < len(batch.entries):
                chunk = batch.entries[window.next_entry : window.next_entry + PUBLISH_CHUNK]
                started = time.perf_counter()
                result = self.sink.publish(chunk)
                self.metrics.redis_publish_duration.labels(**self._labels).observe(
                    time.perf_counter() - started
                )
                events = sum(1 for entry in chunk if entry.stream == self.stream)
                published = result.published_by_stream.get(self.stream, 0)
                dead = result.published_by_stream.get(self.deadletter_stream, 0)
                if self.deadletter_stream == self.stream:
                    dead = 0
                window.published += published
                window.duplicates += events - published
                self.metrics.events_published.labels(**self._labels).inc(published)
                self.metrics.events_duplicate.labels(**self._labels).inc(events - published)
                if dead:
                    self.metrics.deadletter.labels(
                        **self._labels, reason="invalid_notification"
                    ).inc(dead)
                window.next_entry += len(chunk)
            more = self.cursor.window_done(window)
        except SinkError as exc:
            return self._failed(exc, now)
        self._completed(window, batch)
        self.window = None
        self.caught_up = not more
        if more:
            return 0.0
        # Polls start every ``interval``; one that paged longer than that is followed at once.
        self._next_poll = window.started + self.account.interval
        return max(0.0, self._next_poll - now)

    def _completed(self, window: Window, batch: WindowBatch) -> None:
        self._backoff.reset()
        self.last_error = None
        wall = self.wall_clock()
        self.health.succeeded(wall)
        self.health.detail["watermark"] = rfc3339(window.date_to)
        self.metrics.last_success.labels(**self._labels).set(wall)
        self.windows_completed += 1
        self.notifications += batch.notifications
        self.published += window.published
        self.duplicates += window.duplicates
        log.info(
            "myinvois.window_completed",
            account=self.account.name,
            date_from=rfc3339(window.date_from),
            date_to=rfc3339(window.date_to),
            pages=window.pages,
            notifications=batch.notifications,
            published=window.published,
            duplicates=window.duplicates,
            deadletters=batch.deadletters,
        )


def build_api(
    account: MyInvoisAccount,
    metrics: Metrics,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    requests_per_minute: int | None = None,
) -> MyInvoisApi:
    """The account's API client with its own spread per-minute budget."""
    rate = requests_per_minute or account.requests_per_minute
    budget = SlidingWindowBudget(rate, 60.0, spread=True)
    http = UpstreamClient("myinvois", account.name, metrics, budget, clock, wall_clock)
    return MyInvoisApi(account, http)


def install(ctx: Context) -> None:
    """Add a poller per ``[[myinvois]]`` account to a runtime Context (no spool)."""
    settings = ctx.settings
    for account in settings.myinvois:
        api = build_api(account, ctx.metrics, ctx.clock, ctx.wall_clock)
        ctx.clients.append(api.http)
        cursor = WatermarkCursor(
            account, ctx.sink, settings.streams.myinvois, ctx.metrics, ctx.wall_clock
        )
        ctx.intake.append(
            MyInvoisPoller(
                account,
                api,
                ctx.sink,
                ctx.metrics,
                settings.streams.myinvois,
                settings.streams.deadletter,
                cursor,
                ctx.wall_clock,
            )
        )
