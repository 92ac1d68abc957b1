"""DocPlanner: the Integrations API client and the pull drain (SPEC §1, §2).

A pull is destructive, so a pulled batch goes to the spool (fsynced) before anything
else, and the next pull waits until it is there. :class:`DocPlannerPuller` never pulls
when the spool could not take a full batch; if an append still fails, the batch is kept
in memory and re-appended before any further pull.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog

from daemon.budget import SlidingWindowBudget
from daemon.envelope import (
    Invalid,
    StreamEntry,
    check_docplanner,
    deadletter_entry,
    docplanner_entry,
    parse_pull_body,
    parse_time,
    to_raw,
)
from daemon.errors import (
    AuthError,
    ForbiddenError,
    RateLimitedError,
    SpoolError,
    SpoolFullError,
    TransientError,
)
from daemon.metrics import Metrics
from daemon.settings import DocPlannerAccount
from daemon.spool import RawBatch, SpoolBudget, SpoolLog
from daemon.upstream import TokenCache, UpstreamClient, token_from
from daemon.worker import Backoff, Health

log = structlog.get_logger("daemon.docplanner")

MEDIA_TYPE = "application/vnd.docplanner+json"
ACCEPT = f"{MEDIA_TYPE}; charset=UTF-8,application/vnd.error+docplanner+json"
SPOOL_HEADROOM = 4 * 1024 * 1024  # never pull unless the spool can take this much


@dataclass(frozen=True, slots=True)
class PullResponse:
    """``body`` is None when the queue is empty (404 "No notifications found")."""

    body: bytes | None


class DocPlannerApi:
    """Token, pull and release calls of one DocPlanner client."""

    def __init__(self, account: DocPlannerAccount, http: UpstreamClient) -> None:
        self.account = account
        self.http = http
        self.api_url = f"{account.base_url}/api/v3/integration"
        self.token_url = f"{account.base_url}/oauth/v2/token"
        self.tokens = TokenCache(self._fetch_token, http.clock)

    def _fetch_token(self) -> tuple[str, float]:
        response = self.http.send(
            "POST",
            self.token_url,
            "token",
            data={"grant_type": "client_credentials", "scope": "integration"},
            auth=(self.account.client_id, self.account.secret()),
        )
        return token_from(response, f"docplanner {self.account.name}")

    def _authorized(self, method: str, path: str, endpoint: str, accept: str) -> bytes | int:
        """Send with a bearer token; on 401 refresh the token once and retry."""
        for attempt in (1, 2):
            headers = {"Authorization": f"Bearer {self.tokens.get()}", "Accept": accept}
            response = self.http.send(method, f"{self.api_url}{path}", endpoint, headers=headers)
            if response.status_code == 401 and attempt == 1:
                self.tokens.invalidate()
                continue
            if response.status_code == 401:
                raise AuthError(f"docplanner {self.account.name}: 401 after a fresh token")
            if response.status_code == 200:
                return response.content
            return response.status_code
        raise AssertionError("unreachable")

    def pull(self, limit: int) -> PullResponse:
        limit = min(max(limit, 1), 100)
        result = self._authorized(
            "GET", f"/notifications/multiple?limit={limit}", "notifications", ACCEPT
        )
        if isinstance(result, bytes):
            return PullResponse(result)
        if result == 404:
            return PullResponse(None)
        if result == 403:
            raise ForbiddenError(f"docplanner {self.account.name}: 403 on pull")
        raise TransientError(f"docplanner {self.account.name}: pull answered {result}")

    def release(self) -> int:
        """``POST /notifications/release``: returns 204 or 403 (429 raises)."""
        result = self._authorized(
            "POST", "/notifications/release", "release", "application/vnd.error+docplanner+json"
        )
        return 200 if isinstance(result, bytes) else result


def build_entries(
    account: str,
    stream: str,
    deadletter_stream: str,
    items: list[object],
    received_at: datetime,
    delivery: str,
) -> tuple[list[StreamEntry], dict[str, int], list[datetime]]:
    """Valid items -> stream entries, invalid ones -> dead-letter entries, order kept.

    Returns the entries, the dead-letter count per reason and the ``created_at`` times.
    """
    entries: list[StreamEntry] = []
    reasons: dict[str, int] = {}
    created: list[datetime] = []
    for position, item in enumerate(items):
        problem = check_docplanner(item)
        if problem is None:
            assert isinstance(item, dict)
            try:
                entries.append(docplanner_entry(stream, account, item, received_at, delivery))
            except ValueError as exc:
                problem = str(exc)
            else:
                moment = parse_time(item["created_at"])
                if moment is not None:
                    created.append(moment)
        if problem is not None:
            try:
                raw = to_raw(item)
            except (ValueError, RecursionError):
                raw = b"<item nested too deeply to re-encode>"
            invalid = Invalid("invalid_notification", problem, raw)
            entries.append(
                deadletter_entry(
                    deadletter_stream, "docplanner", account, invalid, received_at, position
                )
            )
            reasons["invalid_notification"] = reasons.get("invalid_notification", 0) + 1
    return entries, reasons, created


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
        self.forbidden = False

    def tick(self, now: float) -> float:
        if self._unspooled is not None and not self._spool(self._unspooled, now):
            return self._backoff.next()
        if self.forbidden:
            return 3600.0
        if self.spool_budget.max_bytes - self.spool_budget.used < SPOOL_HEADROOM:
            reason = "spool full: pulling paused until Redis takes the backlog"
            self.health.detail["not_ready"] = reason
            self.health.failed(reason, now)
            return 1.0
        self.health.detail.pop("not_ready", None)
        wait = self.budget.try_acquire(now)
        if wait > 0:
            return wait
        try:
            response = self.api.pull(self.account.batch_size)
        except RateLimitedError as exc:
            self.health.failed(str(exc), now)
            return max(0.0, exc.retry_at - now)
        except ForbiddenError as exc:
            self.forbidden = True
            self.health.failed(f"{exc}: pulling stopped for this account", now)
            return 3600.0
        except (TransientError, AuthError) as exc:
            self.health.failed(str(exc), now)
            return self._backoff.next()
        if response.body is None:
            self.metrics.docplanner_queue_remaining.labels(**self._labels).set(0)
            self.metrics.docplanner_oldest_age.labels(**self._labels).set(0)
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
        wall = self.wall_clock()
        self.health.succeeded(wall)
        self.metrics.last_success.labels(**self._labels).set(wall)

    def _spool(self, raw: RawBatch, now: float) -> bool:
        try:
            self.spool.append_raw(raw)
        except SpoolFullError as exc:
            self._unspooled = raw
            self.health.failed(str(exc), now)
            return False
        except SpoolError as exc:
            self._unspooled = raw
            self.health.failed(str(exc), now)
            log.error("docplanner.spool_write_failed", account=self.account.name, error=str(exc))
            return False
        self._unspooled = None
        self.on_spooled()
        return True


class PullExpander:
    """Turns a spooled raw pull body into stream entries (runs in the publisher thread).

    Deterministic for a given record (``received_at`` is stored with it), so a replay
    after a crash yields the same event ids. Updates the intake metrics as it goes.
    """

    def __init__(
        self,
        account: str,
        stream: str,
        deadletter_stream: str,
        metrics: Metrics,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.account = account
        self.stream = stream
        self.deadletter_stream = deadletter_stream
        self.metrics = metrics
        self.wall_clock = wall_clock
        self._labels = {"source": "docplanner", "account": account}

    def __call__(self, raw: RawBatch) -> list[StreamEntry]:
        received_at = datetime.fromtimestamp(raw.received_at, tz=UTC)
        parsed = parse_pull_body(raw.body)
        if isinstance(parsed, Invalid):
            # Popped upstream already: the raw body is the only copy left. Dead-letter it whole.
            self.metrics.deadletter.labels(**self._labels, reason=parsed.reason).inc()
            log.error(
                "docplanner.unparseable_body",
                account=self.account,
                bytes=len(raw.body),
                detail=parsed.detail,
            )
            return [
                deadletter_entry(
                    self.deadletter_stream, "docplanner", self.account, parsed, received_at
                )
            ]
        entries, reasons, created = build_entries(
            self.account,
            self.stream,
            self.deadletter_stream,
            parsed.items,
            received_at,
            raw.delivery,
        )
        for reason, count in reasons.items():
            self.metrics.deadletter.labels(**self._labels, reason=reason).inc(count)
        self.metrics.events_received.labels(**self._labels).inc(len(created))
        self.metrics.docplanner_queue_remaining.labels(**self._labels).set(parsed.remaining)
        if created:
            age = max(0.0, self.wall_clock() - min(created).timestamp())
            self.metrics.docplanner_oldest_age.labels(**self._labels).set(age)
        return entries
