"""DocPlanner release: ``POST /notifications/release`` on a cadence, one scheduler per push account.

:class:`ReleaseScheduler` calls release once per ``release_interval`` (the first call right
after start): 204 is success; 429 waits for its ``Retry-After``; other failures back off.
A 403 ("API client is not using PUSH communication model or API client is not enabled")
can change (an operator enables the client): it is named in ``/readyz`` (``not_ready``),
counted in ``drainer_upstream_refused{reason="release_forbidden"}``, and retried every
min(release_interval, REFUSED_CAP) = 5 min at most, 2.5 min at least (DocPlanner allows
one release an hour; seconds-apart retries would break that) until a 204 clears it.
Its budget is separate from the GET budget (see ``UpstreamClient``), so a release 429
(up to an hour) never pauses pulling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from daemon.errors import AuthError, NotFoundError, RateLimitedError, TransientError
from daemon.metrics import Metrics
from daemon.settings import DocPlannerAccount
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.worker import REFUSED_CAP, Backoff, Health, refused_backoff

log = structlog.get_logger("daemon.sources.docplanner.release")


class ReleaseScheduler:
    """Calls DocPlanner's release for one push account; one ``tick`` = at most one call."""

    def __init__(
        self,
        account: DocPlannerAccount,
        api: DocPlannerApi,
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.name = f"docplanner:{account.name}:release"
        self.account = account
        self.api = api
        self.metrics = metrics
        self.wall_clock = wall_clock
        self.health = Health("docplanner", account.name, "release")
        self.forbidden = False  # the last answer was 403 (retried with self._forbidden)
        self.next_at: float | None = None  # monotonic time of the next call; None = now
        self._backoff = Backoff(base=5.0, cap=600.0)
        # DocPlanner allows one release an hour: a 403 is retried no sooner than the cap
        # (the client may be enabled at any time), not seconds later.
        self._forbidden = refused_backoff(min(account.release_interval, REFUSED_CAP))
        self._labels = {"source": "docplanner", "account": account.name}

    def tick(self, now: float) -> float:
        if self.next_at is not None and now < self.next_at:
            return self.next_at - now
        try:
            status = self.api.release()
        except RateLimitedError as exc:
            # Expected after a restart inside the hour: not a failure, just wait.
            self.next_at = max(exc.retry_at, now + 1.0)
            log.info(
                "docplanner.release_rate_limited",
                account=self.account.name,
                retry_in=round(self.next_at - now, 1),
            )
            return self.next_at - now
        except (TransientError, AuthError, NotFoundError) as exc:
            self.health.failed(f"release: {exc}", now)
            self.next_at = now + self._backoff.next()
            return self.next_at - now
        if status in (200, 204):
            self._backoff.reset()
            self._forbidden.reset()
            if self.forbidden:
                self.forbidden = False
                self.health.clear_detail("not_ready")
                self.metrics.refusals.record(
                    "docplanner", self.account.name, "release_forbidden", False
                )
            wall = self.wall_clock()
            self.health.succeeded(wall)
            self.metrics.last_success.labels(**self._labels).set(wall)
            self.next_at = now + self.account.release_interval
            log.info("docplanner.released", account=self.account.name)
            return self.account.release_interval
        if status == 403:
            if not self.forbidden:
                log.error("docplanner.release_forbidden", account=self.account.name)
            self.forbidden = True
            self.metrics.refusals.record("docplanner", self.account.name, "release_forbidden", True)
            reason = (
                "release forbidden: DocPlanner answered 403 (client not in push mode or "
                "not enabled)"
            )
            self.health.refused(reason, now)  # not_ready, with the backoff's cap
            self.next_at = now + self._forbidden.next()
            return self.next_at - now
        self.health.failed(f"release answered {status}", now)
        self.next_at = now + self._backoff.next()
        return self.next_at - now
