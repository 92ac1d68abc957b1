"""DocPlanner pull drain: one account's puller (SPEC §1, §2).

A pull is destructive, so a pulled batch goes to the spool (fsynced) before anything
else, and the next pull waits until it is there. :class:`DocPlannerPuller` never pulls
when the spool could not take a full batch (:data:`SPOOL_HEADROOM`). A pulled batch that
finds the spool full all the same (several accounts pulled into the last headroom at
once, or one body larger than the headroom) is written past ``spool.max_bytes``, logged
as ``docplanner.spool_over_budget``: it was popped upstream, so it is never held in
memory where a SIGTERM would drop it. Only a write the disk refuses (ENOSPC, EIO) keeps
the batch in memory, re-appended before any further pull.

A 403 on a pull does not stop the account (a queue that is not pulled expires after
72 h): it backs off up to REFUSED_CAP (5 min), is named in /readyz while it lasts, is counted
in ``drainer_upstream_forbidden_total``, and pulling resumes by itself once it stops.

A 404 is an empty queue only with the documented body (see ``api.is_empty_queue``). Any
other 404, on the pull or the token endpoint (a wrong ``base_url``, a moved route), is a
failing state handled like a 403: named in /readyz at once, counted in
``drainer_upstream_refused{reason="not_found"}``, retried with the same capped backoff.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from daemon.errors import (
    AuthError,
    ForbiddenError,
    NotFoundError,
    RateLimitedError,
    SpoolError,
    SpoolFullError,
    TransientError,
)
from daemon.metrics import Metrics
from daemon.settings import PULL_HEADROOM, DocPlannerAccount
from daemon.sources.budget import SlidingWindowBudget
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.spool import RawBatch, SpoolBudget, SpoolLog
from daemon.worker import Backoff, Health, refused_backoff

log = structlog.get_logger("daemon.sources.docplanner.pull")

SPOOL_HEADROOM = PULL_HEADROOM  # never pull unless the spool can take this much


class DocPlannerPuller:
    """The pull drain of one account: one ``tick`` = at most one pull."""

    def __init__(
        self,
        account: DocPlannerAccount,
        api: DocPlannerApi,
        spool: SpoolLog,
        spool_budget: SpoolBudget,
        metrics: Metrics,
        stream: str,
        deadletter_stream: str,
        budget: SlidingWindowBudget,
        on_spooled: Callable[[], None] = lambda: None,
        wall_clock: Callable[[], float] = time.time,
        forbidden_backoff: Backoff | None = None,
    ) -> None:
        self.name = f"docplanner:{account.name}:puller"
        self.account = account
        self.api = api
        self.spool = spool
        self.spool_budget = spool_budget
        self.metrics = metrics
        self.stream = stream
        self.deadletter_stream = deadletter_stream
        self.budget = budget
        self.on_spooled = on_spooled
        self.wall_clock = wall_clock
        self.health = Health("docplanner", account.name, "puller")
        self._labels = {"source": "docplanner", "account": account.name}
        self._backoff = Backoff(base=0.5, cap=60.0)
        self._unspooled: RawBatch | None = None
        self._forbidden = forbidden_backoff or refused_backoff()

    def tick(self, now: float) -> float:
        if self._unspooled is not None and not self._spool(self._unspooled, now):
            return self._backoff.next()
        if self.spool_budget.max_bytes - self.spool_budget.used < SPOOL_HEADROOM:
            reason = "spool full: pulling paused until Redis takes the backlog"
            self.health.set_detail("not_ready", reason)
            self.health.failed(reason, now)
            return 1.0
        if str(self.health.snapshot().detail.get("not_ready", "")).startswith("spool full"):
            self.health.clear_detail("not_ready")
        wait = self.budget.try_acquire(now)
        if wait > 0:
            return wait
        try:
            response = self.api.pull(self.account.batch_size)
        except RateLimitedError as exc:
            self.health.failed(str(exc), now)
            return max(0.0, exc.retry_at - now)
        except ForbiddenError as exc:
            self.metrics.upstream_forbidden.labels(**self._labels).inc()
            self.health.refused(str(exc), now)
            return self._forbidden.next()
        except NotFoundError as exc:
            self.metrics.refusals.record("docplanner", self.account.name, "not_found", True)
            self.health.refused(str(exc), now)
            return self._forbidden.next()
        except (TransientError, AuthError) as exc:
            self.health.failed(str(exc), now)
            return self._backoff.next()
        if response.body is None:
            self.metrics.docplanner_queue_remaining.labels(**self._labels).set(0)
            self.metrics.docplanner_expiry.emptied(self.account.name, self.wall_clock())
            self._done(now)
            return self.account.idle_interval
        # Popped upstream: make it durable before anything else, parse it later (publisher).
        # One C-speed scan estimates the batch size for the spool gauges (no parsing here).
        estimate = response.body.count(b'"created_at"')
        if not self._spool(RawBatch(self.wall_clock(), "pull", response.body, estimate), now):
            return self._backoff.next()
        self._done(now)
        return 0.0  # pull again at once; an empty queue answers 404

    def _done(self, now: float) -> None:
        self._backoff.reset()
        self._forbidden.reset()
        self.metrics.refusals.record("docplanner", self.account.name, "not_found", False)
        self.health.clear_detail("not_ready")
        wall = self.wall_clock()
        self.health.succeeded(wall)
        self.metrics.last_success.labels(**self._labels).set(wall)

    def _spool(self, raw: RawBatch, now: float) -> bool:
        try:
            try:
                self.spool.append_raw(raw)
            except SpoolFullError as exc:
                # Popped upstream already: to disk past the budget, never held in memory.
                self.spool.append_raw(raw, over_budget=True)
                log.warning(
                    "docplanner.spool_over_budget",
                    account=self.account.name,
                    bytes=len(raw.body),
                    max_bytes=self.spool_budget.max_bytes,
                    error=str(exc),
                )
        except SpoolError as exc:
            self._unspooled = raw
            self.health.failed(str(exc), now)
            log.error("docplanner.spool_write_failed", account=self.account.name, error=str(exc))
            return False
        self._unspooled = None
        self.on_spooled()
        return True
