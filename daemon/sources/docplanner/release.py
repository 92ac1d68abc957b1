"""DocPlanner release: ``POST /notifications/release`` on a cadence, one scheduler per push account.

:class:`ReleaseScheduler` calls release once per ``release_interval`` (the first call right
after start): 204 is success; 429 waits for its ``Retry-After``; 403 (the client is not in
push mode) stops the calls for good and makes ``/readyz`` name the account; other failures
back off. Its budget is separate from the GET budget (see ``UpstreamClient``), so a
release 429 (up to an hour) never pauses pulling.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from daemon.errors import AuthError, RateLimitedError, TransientError
from daemon.metrics import Metrics
from daemon.settings import DocPlannerAccount
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.worker import Backoff, Health

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
        self.forbidden = False
        self.next_at: float | None = None  # monotonic time of the next call; None = now
        self._backoff = Backoff(base=5.0, cap=600.0)
        self._labels = {"source": "docplanner", "account": account.name}

    def tick(self, now: float) -> float:
        if self.forbidden:
            return 3600.0
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
        except (TransientError, AuthError) as exc:
            self.health.failed(f"release: {exc}", now)
            self.next_at = now + self._backoff.next()
            return self.next_at - now
        if status in (200, 204):
            self._backoff.reset()
            wall = self.wall_clock()
            self.health.succeeded(wall)
            self.metrics.last_success.labels(**self._labels).set(wall)
            self.next_at = now + self.account.release_interval
            log.info("docplanner.released", account=self.account.name)
            return self.account.release_interval
        if status == 403:
            self.forbidden = True
            reason = (
                "release forbidden: DocPlanner answered 403 (client not in push mode or "
                "not enabled); release calls stopped until restart"
            )
            self.health.set_detail("not_ready", reason)
            self.health.failed(reason, now)
            log.error("docplanner.release_forbidden", account=self.account.name)
            return 3600.0
        self.health.failed(f"release answered {status}", now)
        self.next_at = now + self._backoff.next()
        return self.next_at - now
