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

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import structlog

from daemon.budget import SlidingWindowBudget
from daemon.envelope import (
    Invalid,
    StreamEntry,
    check_myinvois,
    deadletter_entry,
    loads,
    myinvois_entry,
    myinvois_order_key,
    rfc3339,
    to_raw,
)
from daemon.errors import (
    AuthError,
    ForbiddenError,
    RateLimitedError,
    SinkError,
    TransientError,
    UpstreamError,
)
from daemon.metrics import Metrics
from daemon.settings import MyInvoisAccount
from daemon.sink import RedisSink
from daemon.upstream import TokenCache, UpstreamClient, token_from
from daemon.worker import Backoff, Health

if TYPE_CHECKING:
    from daemon.runtime import Context

log = structlog.get_logger("daemon.myinvois")

TOKEN_PATH = "/connect/token"  # noqa: S105 - a URL path, not a secret
NOTIFICATIONS_PATH = "/api/v1.0/notifications/taxpayer"
SAFETY_LAG = 5.0  # dateTo stays this far behind "now": upstream may still be writing
MAX_WINDOW = 86400.0  # a large gap is read in windows of at most one day of new time
DEFAULT_LOOKBACK = 86400.0  # first start without start_at: from one day ago
PUBLISH_CHUNK = 500  # entries per atomic sink call


class TokenRejectedError(TransientError):
    """A 401 with a cached token: it was dropped; the next tick fetches a fresh one."""


def iso_z(moment: datetime) -> str:
    """The MyInvois date format: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def whole_seconds(timestamp: float) -> datetime:
    return datetime.fromtimestamp(math.floor(timestamp), tz=UTC)


class MyInvoisApi:
    """Token and Get Notifications calls of one MyInvois client (taxpayer or intermediary)."""

    def __init__(self, account: MyInvoisAccount, http: UpstreamClient) -> None:
        if http.budget is None:
            raise ValueError("a MyInvois client needs a rate budget")
        self.account = account
        self.http = http
        self.budget: SlidingWindowBudget = http.budget
        self.tokens = TokenCache(self._fetch_token, http.clock)
        self._rejected = False  # the last page request got 401

    def _fetch_token(self) -> tuple[str, float]:
        response = self.http.send(
            "POST",
            f"{self.account.base_url}{TOKEN_PATH}",
            "token",
            data={
                "client_id": self.account.client_id,
                "client_secret": self.account.secret(),
                "grant_type": "client_credentials",
                "scope": "InvoicingAPI",
            },
        )
        return token_from(response, f"myinvois {self.account.name}")

    def get_page(
        self, date_from: datetime, date_to: datetime, page_no: int, page_size: int
    ) -> bytes:
        """The raw body of one page. The caller has taken the budget for it.

        A 401 drops the token and raises :class:`TokenRejectedError` (the next call logs
        in again, through the budget); a second 401 in a row raises AuthError.
        """
        headers = {"Authorization": f"Bearer {self.tokens.get()}", "Accept": "application/json"}
        if self.account.on_behalf_of:
            headers["onbehalfof"] = self.account.on_behalf_of
        params = {
            "dateFrom": iso_z(date_from),
            "dateTo": iso_z(date_to),
            "pageNo": str(page_no),
            "pageSize": str(min(max(page_size, 1), 100)),
        }
        response = self.http.send(
            "GET",
            f"{self.account.base_url}{NOTIFICATIONS_PATH}",
            "notifications",
            headers=headers,
            params=params,
        )
        code = response.status_code
        name = self.account.name
        if code == 401:
            self.tokens.invalidate()
            if self._rejected:
                raise AuthError(f"myinvois {name}: 401 after a fresh token")
            self._rejected = True
            raise TokenRejectedError(f"myinvois {name}: 401, token refreshed")
        self._rejected = False
        if code == 200:
            return response.content
        if code == 403:
            raise ForbiddenError(f"myinvois {name}: 403 (check on_behalf_of and the client)")
        raise TransientError(f"myinvois {name}: notifications answered {code}")


def parse_page(body: bytes, page_size: int) -> tuple[list[Any], bool]:
    """``(result, hasNext)`` of one page; TransientError when it is not one.

    Reading again is harmless, so a page that does not parse is retried, never
    dead-lettered. A missing ``hasNext`` means "another page" when this one was full.
    """
    try:
        document = loads(body)
    except (ValueError, RecursionError):
        raise TransientError(f"notifications page is not JSON ({len(body)} bytes)") from None
    if not isinstance(document, dict) or not isinstance(document.get("result"), list):
        raise TransientError("notifications page has no 'result' list")
    items: list[Any] = document["result"]
    metadata = document.get("metadata")
    has_next = metadata.get("hasNext") if isinstance(metadata, dict) else None
    if not isinstance(has_next, bool):
        has_next = len(items) >= page_size
    return items, has_next and bool(items)


# --- windows ----------------------------------------------------------------------------


@dataclass
class WindowBatch:
    """What one window publishes: notifications oldest first, then dead letters."""

    entries: list[StreamEntry]
    notifications: int
    deadletters: int


@dataclass
class Window:
    """The in-progress read of ``[date_from, date_to]``, kept between ticks."""

    date_from: datetime
    date_to: datetime
    bounded: bool = False  # date_to was cut at MAX_WINDOW: more time is waiting behind it
    started: float = 0.0  # monotonic, set by the poller: the next poll is due interval later
    page_no: int = 1
    pages: int = 0
    complete: bool = False  # the last page said hasNext = false
    received: list[tuple[list[Any], datetime]] = field(default_factory=list)
    oldest_seen: datetime | None = None  # pages are newest first: read progress
    batch: WindowBatch | None = None
    next_entry: int = 0  # entries of ``batch`` already published
    published: int = 0
    duplicates: int = 0

    def add_page(self, items: list[Any], has_next: bool, received_at: datetime) -> None:
        self.received.append((items, received_at))
        self.pages += 1
        self.page_no += 1
        self.complete = not has_next
        for item in items:
            if check_myinvois(item) is None:
                created = myinvois_order_key(item)[0]
                if self.oldest_seen is None or created < self.oldest_seen:
                    self.oldest_seen = created


def build_batch(account: str, stream: str, deadletter_stream: str, window: Window) -> WindowBatch:
    """Pure: the window's items -> entries, de-duplicated by notificationId, oldest first."""
    valid: dict[str, tuple[dict[str, Any], datetime]] = {}
    dead: list[StreamEntry] = []
    position = 0
    for items, received_at in window.received:
        for item in items:
            problem = check_myinvois(item)
            if problem is None:
                valid.setdefault(item["notificationId"], (item, received_at))
                continue
            raw = to_raw(item)
            invalid = Invalid("invalid_notification", problem, raw)
            entry = deadletter_entry(
                deadletter_stream, "myinvois", account, invalid, received_at, position
            )
            # The overlap reads the same bad item again: key it on its bytes alone.
            digest = hashlib.sha256(raw).hexdigest()[:32]
            dead.append(replace(entry, event_id=f"deadletter:myinvois:{account}:{digest}"))
            position += 1
    ordered = sorted(valid.values(), key=lambda pair: myinvois_order_key(pair[0]))
    entries = [myinvois_entry(stream, account, item, received) for item, received in ordered]
    return WindowBatch([*entries, *dead], len(entries), len(dead))


class Cursor(Protocol):
    """Where the windows of a poller come from and what finishing one means."""

    def next_window(self) -> Window | None:
        """The next window to read, or None when there is nothing to read now."""
        ...

    def window_done(self, window: Window) -> bool:
        """Record a published window (may raise SinkError); True if more is due at once."""
        ...


class WatermarkCursor:
    """The live poll: windows from the watermark stored in Redis beside the stream."""

    def __init__(
        self,
        account: MyInvoisAccount,
        sink: RedisSink,
        stream: str,
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
        safety_lag: float = SAFETY_LAG,
        max_window: float = MAX_WINDOW,
    ) -> None:
        self.account = account
        self.sink = sink
        self.stream = stream
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.safety_lag = safety_lag
        self.max_window = max_window
        self.watermark: datetime | None = None

    def next_window(self) -> Window | None:
        stored = self.sink.get_watermark(self.stream, self.account.name)
        limit = whole_seconds(self.wall_clock() - self.safety_lag)
        if stored is None:
            start = self.account.start_at or whole_seconds(self.wall_clock() - DEFAULT_LOOKBACK)
            date_from = start  # nothing was read before start_at: no overlap to re-read
        else:
            self._note(stored)
            start = stored
            date_from = whole_seconds(stored.timestamp() - self.account.overlap)
        bound = start + timedelta(seconds=self.max_window)
        date_to = min(limit, bound)
        if date_to <= start:
            return None  # start_at in the future, or polled again within the safety lag
        return Window(date_from, date_to, bounded=bound < limit)

    def window_done(self, window: Window) -> bool:
        self.sink.advance_watermark(self.stream, self.account.name, window.date_to)
        self._note(window.date_to)
        return window.bounded

    def _note(self, watermark: datetime) -> None:
        self.watermark = watermark
        labels = {"source": "myinvois", "account": self.account.name}
        self.metrics.myinvois_watermark.labels(**labels).set(watermark.timestamp())


class RangeCursor:
    """``drainer backfill``: ``[since, until]`` in bounded windows; no watermark."""

    def __init__(self, since: datetime, until: datetime, max_window: float = MAX_WINDOW) -> None:
        self.since = since
        self.until = until
        self.max_window = max_window
        self.position = since
        self.windows = 0

    @property
    def finished(self) -> bool:
        return self.position >= self.until

    def next_window(self) -> Window | None:
        if self.finished:
            return None
        date_to = min(self.until, self.position + timedelta(seconds=self.max_window))
        return Window(self.position, date_to)

    def window_done(self, window: Window) -> bool:
        self.position = window.date_to
        self.windows += 1
        return not self.finished

    def covered(self, window: Window | None) -> float:
        """Seconds of ``[since, until]`` read so far (pages are newest first)."""
        done = (self.position - self.since).total_seconds()
        if window is not None and window.oldest_seen is not None:
            done += max(
                0.0, (window.date_to - max(window.oldest_seen, window.date_from)).total_seconds()
            )
        return done

    @property
    def total(self) -> float:
        return max(1.0, (self.until - self.since).total_seconds())


# --- the worker -------------------------------------------------------------------------


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
