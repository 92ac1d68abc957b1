"""Prometheus metrics (SPEC §7) on an injected registry, labels pre-initialised.

Labels are bounded: ``source`` and ``account`` come from the configuration, ``endpoint``
from a fixed list, ``code`` from HTTP status classes we see, ``reason`` from the
dead-letter reasons below. Never an id.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon import __version__
from daemon.envelope.batch import Expansion
from daemon.errors import SinkError
from daemon.metrics_refusals import RefusalMetrics
from daemon.revision import revision

log = structlog.get_logger("daemon.metrics")

# No `<counter>_created` / `<histogram>_created` series: a fifth of every scrape's samples
# (49 of 241 with three accounts), read by nothing here (the rules use rate/increase, which
# handle resets). Process-wide in prometheus_client, so it covers every registry the daemon
# builds (metrics, HTTP server, leases, consumer groups).
disable_created_metrics()  # type: ignore[no-untyped-call]

DEADLETTER_REASONS = (
    "unparseable_body",
    "invalid_json",
    "invalid_notification",
    "too_large",
    "publish_refused",  # an entry Redis kept refusing: set aside from its spool record
    "expand_failed",  # a spooled body that kept raising while it was expanded
)
ENDPOINTS = {
    "docplanner": ("token", "notifications", "release"),
    "myinvois": ("token", "notifications"),
}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Account = tuple[str, str]  # (source, account name)


class Metrics:
    """Every metric the daemon exports, on one registry (a fresh one per test)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        accounts: Iterable[Account] = (),
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        labels = ("source", "account")
        self.events_received = Counter(
            "drainer_events_received_total",
            "Notifications received from upstream (pull, push or poll).",
            labels,
            registry=registry,
        )
        self.events_published = Counter(
            "drainer_events_published_total",
            "Notifications newly appended to the Redis stream.",
            labels,
            registry=registry,
        )
        self.events_duplicate = Counter(
            "drainer_events_duplicate_total",
            "Notifications skipped because their event_id was seen inside the dedupe window.",
            labels,
            registry=registry,
        )
        self.deadletter = Counter(
            "drainer_deadletter_total",
            "Inputs written to the dead-letter stream, by reason.",
            (*labels, "reason"),
            registry=registry,
        )
        self.upstream_requests = Counter(
            "drainer_upstream_requests_total",
            "Upstream HTTP requests by endpoint and status code (or 'error' when none).",
            (*labels, "endpoint", "code"),
            registry=registry,
        )
        self.upstream_duration = Histogram(
            "drainer_upstream_request_duration_seconds",
            "Upstream HTTP request latency.",
            (*labels, "endpoint"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.rate_limited = Counter(
            "drainer_rate_limited_total",
            "429 answers received from upstream.",
            labels,
            registry=registry,
        )
        self.redis_publish_duration = Histogram(
            "drainer_redis_publish_duration_seconds",
            "Duration of one atomic publish call to Redis (one batch).",
            labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.redis_durability_timeouts = Counter(
            "drainer_redis_durability_timeouts_total",
            "Publish calls whose entries too few replicas (or AOF fsyncs) acknowledged in time;"
            " the records stay spooled and are republished.",
            labels,
            registry=registry,
        )
        self.redis_command_errors = Counter(
            "drainer_redis_command_errors_total",
            "Publish calls Redis refused for good (WRONGTYPE, script error): an operator must act.",
            labels,
            registry=registry,
        )
        self.spool_set_aside = Counter(
            "drainer_spool_records_set_aside_total",
            "Spool records that kept failing for a reason other than Redis being away, set"
            " aside to the dead-letter stream so that the spool moves on.",
            labels,
            registry=registry,
        )
        self.spool_pending = Gauge(
            "drainer_spool_pending_events",
            "Events in the local spool not yet published to Redis.",
            labels,
            registry=registry,
        )
        self.spool_bytes = Gauge(
            "drainer_spool_bytes",
            "Bytes used by the local spool.",
            labels,
            registry=registry,
        )
        self.docplanner_queue_remaining = Gauge(
            "drainer_docplanner_queue_remaining",
            "The 'remaining' count of the last DocPlanner pull.",
            labels,
            registry=registry,
        )
        self.docplanner_expiry = ExpiryAge(wall_clock)
        registry.register(self.docplanner_expiry)
        self.myinvois_watermark = Gauge(
            "drainer_myinvois_watermark_timestamp_seconds",
            "The MyInvois watermark: everything created before it has been published.",
            labels,
            registry=registry,
        )
        self.upstream_forbidden = Counter(
            "drainer_upstream_forbidden_total",
            "403 answers on a pull or a page; the account backs off and retries.",
            labels,
            registry=registry,
        )
        self.myinvois_page_size_reduced = Counter(
            "drainer_myinvois_page_size_reduced_total",
            "Times MyInvois refused our pageSize (a 400 naming it) and the page size was halved.",
            labels,
            registry=registry,
        )
        self.refusals = RefusalMetrics(registry)  # drainer_upstream_refused{reason}
        self.last_success = Gauge(
            "drainer_last_success_timestamp_seconds",
            "Unix time of the last successful cycle of the account.",
            labels,
            registry=registry,
        )
        self.up = Gauge(
            "drainer_up",
            "1 while the daemon's main loop is running.",
            registry=registry,
        )
        self.ready = Gauge(
            "drainer_ready",
            "1 when /readyz answers 200: Redis answers and no account is failing past its"
            " deadline (computed at scrape time; a quiet account is ready).",
            registry=registry,
        )
        self.unclean_exits = Counter(
            "drainer_unclean_exits",
            "Previous runs of the daemon on this spool directory that did not end in an orderly"
            " way (crash, SIGKILL, watchdog, OOM kill, power loss), read at start from"
            " spool.dir/drainer.lock; deliberate restarts and config errors do not count.",
            registry=registry,
        )
        self.build_info = Gauge(
            "drainer_build_info",
            "Build information: the package version and the git revision it was built from;"
            " the value is always 1.",
            ("version", "revision"),
            registry=registry,
        )
        self.build_info.labels(version=__version__, revision=revision()).set(1)
        self.trimmed_unread = Counter(
            "drainer_retention_trimmed_unread_total",
            "Entries retention trimmed (hard cap stream_maxlen) before every consumer group "
            "had acknowledged them.",
            ("stream",),
            registry=registry,
        )
        self.config_reload_failures = Counter(
            "drainer_config_reload_failures_total",
            "SIGHUP reloads whose config failed validation; the running config stayed.",
            registry=registry,
        )
        self.config_last_reload_success = Gauge(
            "drainer_config_last_reload_success_timestamp_seconds",
            "Unix time the running config was loaded: at start, then at each good reload.",
            registry=registry,
        )
        for source, account in accounts:
            self.add_account(source, account)

    def add_account(self, source: str, account: str) -> None:
        """Pre-initialise every labelled series of one account so dashboards see zeros."""
        for metric in (
            self.events_received,
            self.events_published,
            self.events_duplicate,
            self.rate_limited,
            self.redis_publish_duration,
            self.redis_durability_timeouts,
            self.redis_command_errors,
            self.spool_set_aside,
            self.spool_pending,
            self.spool_bytes,
            self.last_success,
            self.upstream_forbidden,
        ):
            metric.labels(source=source, account=account)
        self.refusals.add_account(source, account)
        for reason in DEADLETTER_REASONS:
            self.deadletter.labels(source=source, account=account, reason=reason)
        for endpoint in ENDPOINTS[source]:
            self.upstream_duration.labels(source=source, account=account, endpoint=endpoint)
        if source == "docplanner":
            self.docplanner_queue_remaining.labels(source=source, account=account)
            self.docplanner_expiry.add(account)
        else:
            self.myinvois_watermark.labels(source=source, account=account)
            self.myinvois_page_size_reduced.labels(source=source, account=account)


class ExpiryAge(Collector):
    """``drainer_docplanner_oldest_event_age_seconds``, computed at scrape time (SPEC §7).

    The anchor is ``created_at`` of the newest notification of the last pull that left
    ``remaining > 0``; the value is now minus the anchor, so it keeps growing while pulling
    is blocked (403, 429, full spool, upstream down). An empty queue clears it to 0.
    Observations carry the pull's own time, and one older than the last is ignored: a
    spooled batch published after a later empty pull must not bring a stale anchor back.
    """

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._anchor: dict[str, float | None] = {}
        self._pulled_at: dict[str, float] = {}

    def add(self, account: str) -> None:
        with self._lock:
            self._anchor.setdefault(account, None)

    def observe(self, account: str, pulled_at: float, remaining: int, newest: float | None) -> None:
        """One pull: its time, the ``remaining`` it reported, its newest ``created_at``."""
        with self._lock:
            if pulled_at < self._pulled_at.get(account, float("-inf")):
                return
            self._pulled_at[account] = pulled_at
            if remaining <= 0:
                self._anchor[account] = None
            elif newest is not None:
                self._anchor[account] = newest
            elif self._anchor.get(account) is None:
                # No valid created_at in the batch: what is still queued was queued
                # before this pull, so the pull's own time is a safe anchor.
                self._anchor[account] = pulled_at

    def emptied(self, account: str, pulled_at: float) -> None:
        """A pull found the queue empty (404): the age is 0 from now on."""
        self.observe(account, pulled_at, 0, None)

    def value(self, account: str) -> float:
        with self._lock:
            anchor = self._anchor.get(account)
        return 0.0 if anchor is None else max(0.0, self._wall_clock() - anchor)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "drainer_docplanner_oldest_event_age_seconds",
            "While the last pull left remaining > 0: now - created_at of the newest"
            " notification it returned (72 h = upstream expiry); 0 after an empty queue.",
            labels=["source", "account"],
        )
        with self._lock:
            accounts = sorted(self._anchor)
        for account in accounts:
            family.add_metric(["docplanner", account], self.value(account))
        yield family


class StreamLengthCollector(Collector):
    """``drainer_stream_length`` and ``drainer_redis_up`` (1 when Redis answered, else 0).

    ``lengths`` must not block on Redis: the daemon passes the cache of its background
    probe (``daemon.sink.health.RedisProbe.lengths``), which raises SinkError when stale.
    """

    def __init__(self, lengths: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._lengths = lengths  # raises SinkError when Redis is not answering
        self._failing = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "drainer_stream_length", "Entries in each Redis stream (XLEN).", labels=["stream"]
        )
        redis_up = GaugeMetricFamily(
            "drainer_redis_up",
            "1 when Redis answered the daemon's background probe (PING, XLEN) within the last"
            " few seconds, else 0 (down or hanging).",
        )
        try:
            for stream, length in self._lengths():
                family.add_metric([stream], float(length))
        except SinkError as exc:  # a scrape must not fail because Redis is down
            if not self._failing:
                log.warning("metrics.stream_length_unavailable", error=str(exc))
            self._failing = True
            redis_up.add_metric([], 0.0)
            yield redis_up
            return
        redis_up.add_metric([], 1.0)
        yield redis_up
        if self._failing:
            log.info("metrics.stream_length_available")
        self._failing = False
        yield family


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exports (for dashboard and alert-rule tests)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    return names


class DocPlannerIntake:
    """Counts what each spooled DocPlanner pull body gave (the ``observe`` callback of
    :class:`daemon.envelope.batch.PullExpander`): received, dead letters, the queue left
    upstream and the expiry age's anchor."""

    def __init__(self, metrics: Metrics, account: str) -> None:
        self.metrics = metrics
        self.account = account
        self._labels = {"source": "docplanner", "account": account}

    def __call__(self, expansion: Expansion) -> None:
        for reason, count in expansion.reasons.items():
            self.metrics.deadletter.labels(**self._labels, reason=reason).inc(count)
        if expansion.remaining is None:  # unreadable whole: dead-lettered, nothing counted
            return
        self.metrics.events_received.labels(**self._labels).inc(expansion.received)
        self.metrics.docplanner_queue_remaining.labels(**self._labels).set(expansion.remaining)
        self.metrics.docplanner_expiry.observe(
            self.account, expansion.pulled_at, expansion.remaining, expansion.newest
        )
