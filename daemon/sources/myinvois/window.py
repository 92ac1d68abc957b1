"""MyInvois windows: what one poll reads, how it is published, where windows come from.

A :class:`Window` is ``[dateFrom, dateTo]`` fixed when it starts plus the pages read so
far. :func:`build_batch` orders a finished window oldest first. A :class:`Cursor` hands
out windows: :class:`WatermarkCursor` (the live poll, from the watermark the publisher
keeps in Redis beside the stream) or :class:`RangeCursor` (``drainer backfill``: a fixed
range, watermark untouched). A cursor never writes: a finished window is spooled with the
watermark it earns (:meth:`Cursor.commit`), and the publisher advances it once the window
is in Redis.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from daemon.envelope.codec import to_raw
from daemon.envelope.entries import Invalid, StreamEntry, deadletter_entry, parse_time
from daemon.envelope.myinvois import check_myinvois, myinvois_created, myinvois_entry
from daemon.metrics import Metrics
from daemon.settings import MyInvoisAccount
from daemon.sources.myinvois.api import whole_seconds

log = structlog.get_logger("daemon.sources.myinvois.window")

SAFETY_LAG = 5.0  # dateTo stays this far behind "now": upstream may still be writing
MAX_WINDOW = 86400.0  # a large gap is read in windows of at most one day of new time
DEFAULT_LOOKBACK = 86400.0  # first start without start_at: from one day ago


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
    oldest_seen: datetime | None = None  # pages are newest sent first: read progress
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
                # Pages are filtered and sorted by the date sent (receivedDateTime).
                sent = parse_time(item.get("receivedDateTime"))
                moment = sent if sent is not None else myinvois_created(item)
                if self.oldest_seen is None or moment < self.oldest_seen:
                    self.oldest_seen = moment


def build_batch(account: str, stream: str, deadletter_stream: str, window: Window) -> WindowBatch:
    """Pure: the window's items -> entries, de-duplicated by notificationId, oldest first.

    Each item is normalised on its own: one that cannot be (a poison item, SPEC §2) is
    dead-lettered with its reason and the rest of the window goes on.
    """
    valid: dict[str, tuple[StreamEntry, tuple[datetime, str]]] = {}
    dead: list[StreamEntry] = []
    for items, received_at in window.received:
        for item in items:
            normalised = normalise_item(stream, account, item, received_at)
            if isinstance(normalised, StreamEntry):
                key = (myinvois_created(item), str(item["notificationId"]))
                valid.setdefault(item["notificationId"], (normalised, key))
                continue
            raw = to_raw(item)
            invalid = Invalid("invalid_notification", normalised, raw)
            entry = deadletter_entry(deadletter_stream, "myinvois", account, invalid, received_at)
            # The overlap reads the same bad item again: key it on its bytes alone.
            digest = hashlib.sha256(raw).hexdigest()[:32]
            dead.append(replace(entry, event_id=f"deadletter:myinvois:{account}:{digest}"))
    ordered = sorted(valid.values(), key=lambda pair: pair[1])
    entries = [entry for entry, _ in ordered]
    return WindowBatch([*entries, *dead], len(entries), len(dead))


def normalise_item(
    stream: str, account: str, item: Any, received_at: datetime
) -> StreamEntry | str:
    """The stream entry of one MyInvois item, or why it cannot be one (never raises).

    :func:`check_myinvois` names what it knows to be wrong; anything else that raises while
    the entry is built is a poison item too: logged with its traceback, dead-lettered.
    """
    problem = check_myinvois(item)
    if problem is not None:
        return problem
    try:
        myinvois_created(item)
        return myinvois_entry(stream, account, item, received_at)
    except Exception as exc:  # a poison item must not stall the window (SPEC §2)
        log.exception("myinvois.item_not_normalised", account=account)
        return f"notification cannot be normalised: {type(exc).__name__}: {exc}"[:500]


class Cursor(Protocol):
    """Where the windows of a poller come from and what finishing one means."""

    def next_window(self) -> Window | None:
        """The next window to read, or None when there is nothing to read now."""
        ...

    def commit(self, window: Window) -> float | None:
        """The watermark a finished window earns once published (None: leave it alone)."""
        ...

    def window_done(self, window: Window) -> bool:
        """Note a finished (spooled) window; True if more is due at once."""
        ...


class WatermarkCursor:
    """The live poll: windows from the watermark stored in Redis beside the stream.

    ``load`` reads the stored watermark (the publisher's :meth:`read_watermark`; SinkError
    when Redis is down). The poller asks for a window only once the previous one is
    published, so the stored watermark is always the latest one.
    """

    def __init__(
        self,
        account: MyInvoisAccount,
        load: Callable[[], datetime | None],
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
        safety_lag: float = SAFETY_LAG,
        max_window: float = MAX_WINDOW,
    ) -> None:
        self.account = account
        self.load = load
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.safety_lag = safety_lag
        self.max_window = max_window
        self.watermark: datetime | None = None

    def next_window(self) -> Window | None:
        stored = self.load()
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

    def commit(self, window: Window) -> float | None:
        return window.date_to.timestamp()

    def window_done(self, window: Window) -> bool:
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

    def commit(self, window: Window) -> float | None:
        return None  # a backfill never moves the live watermark

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
