"""MyInvois: the date-window poller (SPEC §1, §2).

A MyInvois read is not destructive (the history stays upstream): a window that was not
published is simply read again. One window::

    dateFrom = watermark - overlap          (first start: start_at, else now - 1 day)
    dateTo   = min(now - SAFETY_LAG, watermark + MAX_WINDOW)   fixed when the window starts
    GET pageNo=1,2,... (pageSize <= 100)    one page per tick, until hasNext is false
    spool the window oldest first           (creationDateTime, then notificationId)
                                            with the watermark it earns (dateTo)
    the publisher publishes it, then advances the watermark in Redis

The next window starts only once the previous one is published, so when Redis is down
polling pauses (SPEC §2) and the stored watermark is always the latest.

Pages are newest first and shift while we read them (late arrivals push older items
down), so an item can be seen twice; ``event_id = myinvois:<account>:<notificationId>``
and the sink's atomic de-duplication make every re-read harmless. Invalid items are
dead-lettered with the window (with a content-derived id, so the overlap re-reading
the same bad item does not dead-letter it again); an unparseable page is a transient
error and the same page is asked for again.

:class:`MyInvoisPoller` is one ``tick`` = at most one page request. Where its windows
come from is a :class:`Cursor`: :class:`WatermarkCursor` (the live poll) or
:class:`RangeCursor` (``drainer backfill``: a fixed range, the watermark left alone).
The budgets are the Client ID's, shared with every taxpayer of that client
(:mod:`daemon.sources.myinvois.shared`): the login budget before a login, the
notifications budget before every page. A tick never waits for them: it returns the
wait, and its place in line is kept, so taxpayers sharing a client take turns and a busy
one's backlog (one page per tick) cannot starve the quiet ones.

Refusals: a 403 backs off (capped at REFUSED_CAP, named in /readyz while it lasts,
counted in ``drainer_upstream_forbidden_total``) and the same page is asked for again, so
the account resumes by itself. A 400 naming ``pageSize`` halves the account's page size
(logged once per change, counted in ``drainer_myinvois_page_size_reduced_total``) and
the window is read again from page 1. Any other 400 is a failing state named in /readyz
and ``drainer status``, retried with the same capped backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from daemon.envelope.entries import rfc3339
from daemon.errors import (
    BadRequestError,
    ForbiddenError,
    PageSizeRefusedError,
    RateLimitedError,
    SinkError,
    SpoolError,
    SpoolFullError,
    UpstreamError,
)
from daemon.metrics import Metrics
from daemon.settings import MyInvoisAccount
from daemon.sources.budget import SharedBudgets
from daemon.sources.http import UpstreamClient
from daemon.sources.myinvois.api import MyInvoisApi, TokenRejectedError, parse_page
from daemon.sources.myinvois.shared import shared_client
from daemon.sources.myinvois.window import Cursor, Window, WindowBatch, build_batch
from daemon.spool import SpoolLog
from daemon.worker import Backoff, Health
from daemon.worker import refused_backoff as new_refused_backoff

log = structlog.get_logger("daemon.sources.myinvois.poll")

PUBLISHED_WAIT = 0.2  # how often to look whether the previous window is published


class MyInvoisPoller:
    """One account's poll: one ``tick`` sends at most one page request."""

    def __init__(
        self,
        account: MyInvoisAccount,
        api: MyInvoisApi,
        spool: SpoolLog,
        metrics: Metrics,
        stream: str,
        deadletter_stream: str,
        cursor: Cursor,
        wall_clock: Callable[[], float] = time.time,
        role: str = "poller",
        backoff: Backoff | None = None,
        on_spooled: Callable[[], None] = lambda: None,
        refused_backoff: Backoff | None = None,
    ) -> None:
        self.name = f"myinvois:{account.name}:{role}"
        self.account = account
        self.api = api
        self.spool = spool
        self.on_spooled = on_spooled
        self.metrics = metrics
        self.stream = stream
        self.deadletter_stream = deadletter_stream
        self.cursor = cursor
        self.wall_clock = wall_clock
        self.health = Health("myinvois", account.name, role)
        self.window: Window | None = None
        self.last_error: Exception | None = None
        # Counters for tests, ``drainer backfill`` and the benchmark.
        self.requests = 0
        self.windows_completed = 0
        self.notifications = 0
        self.caught_up = False
        self._labels = {"source": "myinvois", "account": account.name}
        self._backoff = backoff or Backoff(base=0.5, cap=60.0)
        self._refused = refused_backoff or new_refused_backoff()
        self.page_size = account.page_size  # halved when the server refuses it
        self._next_poll = 0.0
        # Turns: since when the next request is due, whether it waits for its turn in the
        # shared budget, and the longest such wait (for tests and the benchmark).
        self.due_at = 0.0
        self.waiting_turn = False
        self.longest_wait = 0.0
        if role == "poller":
            api.shared.join(account.name, self.schedule_lag)

    def schedule_lag(self, now: float) -> float:
        """Seconds this taxpayer is behind its interval: the current window should have
        been finished (or the next one started) ``interval`` after the last one started.

        Budget-bound taxpayers sit at about N/B - interval; a backlog the budget cannot
        read makes it grow. Read from the metrics thread: plain attribute reads.
        """
        window = self.window
        if window is not None:
            due = window.started + self.account.interval
        elif self._next_poll > 0:
            due = self._next_poll
        else:
            return 0.0
        return max(0.0, now - due)

    def tick(self, now: float) -> float:
        if self.window is None:
            if now < self._next_poll:
                return self._next_poll - now
            if self.spool.pending_records:
                return PUBLISHED_WAIT  # the previous window is not in Redis yet
            try:
                self.window = self.cursor.next_window()
            except SinkError as exc:
                return self._failed(exc, now)
            if self.window is None:
                self._next_poll = now + self.account.interval
                return self.account.interval
            self.window.started = now
            self.due_at = self._next_poll if 0 < self._next_poll <= now else now
        if not self.window.complete:
            wait = self._read_page(self.window, now)
            if not self.window.complete:
                return wait
        return self._publish(self.window, now)

    def _failed(self, exc: Exception, now: float) -> float:
        self.last_error = exc
        self.health.failed(str(exc), now)
        if isinstance(exc, RateLimitedError):
            wait = max(0.0, exc.retry_at - now)
        else:
            wait = self._backoff.next()
        self.due_at = now + wait
        return wait

    def _take_turn(self, now: float) -> float:
        """Log in if needed and take one page from the shared budget; 0 or the wait."""
        who = self.account.name
        if self.api.needs_login():
            wait = self.api.logins.try_acquire(now, who)
            if wait > 0:
                self.waiting_turn = True
                return wait
            self.api.login()  # one login per (client, TIN) and token lifetime
        wait = self.api.budget.try_acquire(now, who)
        if wait > 0:
            self.waiting_turn = True
            return wait
        if self.waiting_turn:
            self.longest_wait = max(self.longest_wait, now - self.due_at)
        self.waiting_turn = False
        return 0.0

    def _read_page(self, window: Window, now: float) -> float:
        try:
            wait = self._take_turn(now)
        except UpstreamError as exc:  # the login failed
            return self._failed(exc, now)
        if wait > 0:
            return wait
        self.requests += 1
        try:
            body = self.api.get_page(
                window.date_from, window.date_to, window.page_no, self.page_size
            )
            items, has_next = parse_page(body, self.page_size)
        except TokenRejectedError:
            log.info("myinvois.token_rejected", account=self.account.name)
            return 0.0
        except PageSizeRefusedError as exc:
            if self.page_size > 1:
                return self._smaller_pages(window)
            return self._refused_state(exc, now)
        except (ForbiddenError, BadRequestError) as exc:
            return self._refused_state(exc, now)
        except UpstreamError as exc:
            return self._failed(exc, now)
        window.add_page(items, has_next, datetime.fromtimestamp(self.wall_clock(), tz=UTC))
        self.due_at = now  # the next page is due at once; it queues for its turn
        self._backoff.reset()  # the next fault starts from a short backoff again
        self._refused.reset()
        self.metrics.refusals.record("myinvois", self.account.name, "bad_request", False)
        self.health.clear_detail("not_ready")
        return 0.0

    def _smaller_pages(self, window: Window) -> float:
        """The server's maximum page size is below ours: halve it, read the window again."""
        old, self.page_size = self.page_size, max(1, self.page_size // 2)
        self.metrics.myinvois_page_size_reduced.labels(**self._labels).inc()
        log.warning(
            "myinvois.page_size_reduced",
            account=self.account.name,
            page_size=self.page_size,
            was=old,
        )
        window.page_no = 1  # offsets changed with the size; re-reads are de-duplicated
        return 0.0

    def _refused_state(self, exc: Exception, now: float) -> float:
        """403 or a 400 we cannot fix: named in /readyz, capped backoff, retried."""
        if isinstance(exc, ForbiddenError):
            self.metrics.upstream_forbidden.labels(**self._labels).inc()
        else:  # a 400 (its upstream text is in the message): for the alert
            self.metrics.refusals.record("myinvois", self.account.name, "bad_request", True)
        self.last_error = exc
        self.health.refused(str(exc), now)
        wait = self._refused.next()
        self.due_at = now + wait
        return wait

    def _publish(self, window: Window, now: float) -> float:
        """Spool the finished window with the watermark it earns; the publisher does the rest."""
        if window.batch is None:
            window.batch = build_batch(
                self.account.name, self.stream, self.deadletter_stream, window
            )
            window.received = []  # the batch holds everything now
            self.metrics.events_received.labels(**self._labels).inc(window.batch.notifications)
        batch = window.batch
        watermark = self.cursor.commit(window)
        try:
            if batch.entries or watermark is not None:
                self.spool.append(batch.entries, watermark)
        except SpoolFullError as exc:
            self.health.failed(str(exc), now)
            return PUBLISHED_WAIT * 5  # kept in memory; appended once the spool has room
        except SpoolError as exc:
            return self._failed(exc, now)
        self.on_spooled()
        more = self.cursor.window_done(window)
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
        self.health.clear_detail("not_ready")
        self.last_error = None
        wall = self.wall_clock()
        self.health.succeeded(wall)
        self.health.set_detail("watermark", rfc3339(window.date_to))
        self.metrics.last_success.labels(**self._labels).set(wall)
        self.windows_completed += 1
        self.notifications += batch.notifications
        log.info(
            "myinvois.window_completed",
            account=self.account.name,
            date_from=rfc3339(window.date_from),
            date_to=rfc3339(window.date_to),
            pages=window.pages,
            notifications=batch.notifications,
            deadletters=batch.deadletters,
        )


def build_api(
    account: MyInvoisAccount,
    metrics: Metrics,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
    requests_per_minute: int | None = None,
    budgets: SharedBudgets | None = None,
) -> MyInvoisApi:
    """The account's API client, on its Client ID's shared budgets and tokens.

    ``budgets`` is the process's one :class:`SharedBudgets` (built once in wiring); without
    it (``drainer backfill``, tests) the account gets a client of its own.
    """
    shared = shared_client(account, budgets or SharedBudgets(), metrics, clock, requests_per_minute)
    http = UpstreamClient(
        "myinvois",
        account.name,
        metrics,
        shared.notifications.budget,
        clock,
        wall_clock,
        endpoint_budgets={"token": shared.logins.budget},
    )
    return MyInvoisApi(account, http, shared)
