"""Prometheus metrics (SPEC §7) on an injected registry, labels pre-initialised.

Labels are bounded: ``source`` and ``account`` come from the configuration, ``endpoint``
from a fixed list, ``code`` from HTTP status classes we see, ``reason`` from the
dead-letter reasons below. Never an id.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

from daemon import __version__
from daemon.metrics.clients import ClientScheduleCollector
from daemon.metrics.collectors import ExpiryAge
from daemon.metrics.refusals import RefusalMetrics
from daemon.revision import revision

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
        self.myinvois_clients = ClientScheduleCollector()
        registry.register(self.myinvois_clients)
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
