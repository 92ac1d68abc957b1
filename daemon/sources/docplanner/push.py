"""DocPlanner push mode: the receiver of ``POST /push/docplanner/<account>``.

:class:`PushReceiver` (one per account with ``mode = "push"`` or ``"both"``) checks the
push token (sent in the account's ``push_header``) in constant time (the HTTP server
asks :meth:`authorized` before it reads the body), parses the body as one notification and
appends it to the account's write-ahead spool (fsynced) before answering ``204``: a 204
means "durably spooled", not "on the stream yet"; the account's publisher, woken at
once, takes it from there (SPEC §2). The entry is the same as a pulled one except for
``delivery = "push"``; its ``event_id`` is derived from the content (SPEC §3), so a push,
DocPlanner's retry, a release re-dispatch and a pull (mode ``both``) of the same
notification give one stream entry. Invalid JSON or an invalid notification is
dead-lettered with its raw bytes and answered 400. When the spool cannot take it (full
or unwritable) or the daemon is shutting down, the answer is 503: DocPlanner counts the
push as failed and the next release re-dispatches it.

Synchronous gates (``slot-booking``, ``booking-moving``) are spooled and answered 204
like every other notification: the daemon always approves; it is not a gatekeeper.
"""

from __future__ import annotations

import hmac
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from daemon.envelope.codec import loads
from daemon.envelope.docplanner import check_docplanner, docplanner_entry
from daemon.envelope.entries import Invalid, StreamEntry, deadletter_entry
from daemon.errors import SpoolError, SpoolFullError
from daemon.metrics import Metrics
from daemon.spool import SpoolLog

log = structlog.get_logger("daemon.sources.docplanner.push")

Answer = tuple[int, dict[str, Any] | None]
NOTICE_EVERY = 60.0  # seconds between repeated log lines about rejected pushes


class PushReceiver:
    """The push endpoint of one DocPlanner account (see the module docstring)."""

    def __init__(
        self,
        account: str,
        token: str,
        spool: SpoolLog,
        metrics: Metrics,
        stream: str,
        deadletter_stream: str,
        accepting: threading.Event,
        on_spooled: Callable[[], None] = lambda: None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self._token = token.encode()
        self.spool = spool
        self.metrics = metrics
        self.stream = stream
        self.deadletter_stream = deadletter_stream
        self.accepting = accepting
        self.on_spooled = on_spooled
        self.wall_clock = wall_clock
        self._labels = {"source": "docplanner", "account": account}
        self._lock = threading.Lock()
        self._spool_failing = False
        self._unauthorized = 0
        self._last_notice = float("-inf")

    def handle(self, token: str | None, body: bytes) -> Answer:
        """Spool one pushed notification; see the module docstring for the answers."""
        if not self.authorized(token):
            return 401, {"error": "missing or wrong push token"}
        if not self.accepting.is_set():
            return 503, {"error": "shutting down; push again later"}
        wall = self.wall_clock()
        received_at = datetime.fromtimestamp(wall, tz=UTC)
        entry = self._entry(body, received_at)
        if isinstance(entry, Invalid):
            invalid = entry
            entry = deadletter_entry(
                self.deadletter_stream, "docplanner", self.account, invalid, received_at
            )
            if not self._spool(entry):
                return 503, {"error": "spool unavailable; push again later"}
            self.metrics.deadletter.labels(**self._labels, reason=invalid.reason).inc()
            log.warning(
                "docplanner.push_deadlettered",
                account=self.account,
                reason=invalid.reason,
                detail=invalid.detail[:200],
                bytes=len(body),
            )
            return 400, {"error": invalid.reason, "detail": invalid.detail[:500]}
        if not self._spool(entry):
            return 503, {"error": "spool unavailable; push again later"}
        self.metrics.events_received.labels(**self._labels).inc()
        self.metrics.last_success.labels(**self._labels).set(wall)
        return 204, None

    def _entry(self, body: bytes, received_at: datetime) -> StreamEntry | Invalid:
        """The stream entry of one pushed body, or why it is not a notification."""
        try:
            document = loads(body)
        except (ValueError, RecursionError) as exc:
            return Invalid("invalid_json", f"push body is not JSON: {exc}", body)
        problem = check_docplanner(document)
        if problem is not None:
            return Invalid("invalid_notification", problem, body)
        try:
            return docplanner_entry(self.stream, self.account, document, received_at, "push")
        except (ValueError, RecursionError) as exc:  # parsed, but cannot be re-encoded
            return Invalid("invalid_notification", str(exc), body)
        except Exception as exc:  # a poison item: dead-lettered, never a 500 (SPEC §2)
            log.exception("docplanner.item_not_normalised", account=self.account)
            return Invalid("invalid_notification", f"cannot be normalised: {exc!r}", body)

    def authorized(self, token: str | None) -> bool:
        """Whether ``token`` is this account's push token; a refusal is counted and logged.

        The HTTP server asks this as soon as the headers are in, before reading the body.
        """
        # compare_digest on bytes: constant time whatever the contents.
        given = (token or "").encode("utf-8", errors="replace")
        if token is not None and hmac.compare_digest(given, self._token):
            return True
        self._note_unauthorized()
        return False

    def _spool(self, entry: StreamEntry) -> bool:
        """Append and fsync one entry (SpoolLog is thread-safe); False when it cannot."""
        try:
            self.spool.append([entry])
        except (SpoolFullError, SpoolError) as exc:
            with self._lock:
                first = not self._spool_failing
                self._spool_failing = True
            if first:
                log.error("docplanner.push_spool_failed", account=self.account, error=str(exc))
            return False
        if self._spool_failing:
            with self._lock:
                recovered, self._spool_failing = self._spool_failing, False
            if recovered:
                log.info("docplanner.push_spool_recovered", account=self.account)
        self.on_spooled()
        return True

    def _note_unauthorized(self) -> None:
        """One log line per minute at most, with the count since the last one."""
        now = time.monotonic()
        with self._lock:
            self._unauthorized += 1
            if now - self._last_notice < NOTICE_EVERY:
                return
            count, self._unauthorized = self._unauthorized, 0
            self._last_notice = now
        log.warning("docplanner.push_unauthorized", account=self.account, rejected=count)
