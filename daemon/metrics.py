"""Prometheus metrics (SPEC §7) on an injected registry, labels pre-initialised.

Labels are bounded: ``source`` and ``account`` come from the configuration, ``endpoint``
from a fixed list, ``code`` from HTTP status classes we see, ``reason`` from the
dead-letter reasons below. Never an id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon import __version__

DEADLETTER_REASONS = (
    "unparseable_body",
    "invalid_json",
    "invalid_notification",
    "too_large",
)
ENDPOINTS = {
    "docplanner": ("token", "notifications", "release"),
    "myinvois": ("token", "notifications"),
}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

Account = tuple[str, str]  # (source, account name)


class Metrics:
    """Every metric the daemon exports, on one registry (a fresh one per test)."""

    def __init__(self, registry: CollectorRegistry, accounts: Iterable[Account] = ()) -> None:
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
        self.docplanner_oldest_age = Gauge(
            "drainer_docplanner_oldest_event_age_seconds",
            "Age of the oldest notification pulled in the last cycle (72 h = upstream expiry).",
            labels,
            registry=registry,
        )
        self.myinvois_watermark = Gauge(
            "drainer_myinvois_watermark_timestamp_seconds",
            "The MyInvois watermark: everything created before it has been published.",
            labels,
            registry=registry,
        )
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
        self.build_info = Gauge(
            "drainer_build_info",
            "Build information; the value is always 1.",
            ("version",),
            registry=registry,
        )
        self.build_info.labels(version=__version__).set(1)
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
            self.spool_pending,
            self.spool_bytes,
            self.last_success,
        ):
            metric.labels(source=source, account=account)
        for reason in DEADLETTER_REASONS:
            self.deadletter.labels(source=source, account=account, reason=reason)
        for endpoint in ENDPOINTS[source]:
            self.upstream_duration.labels(source=source, account=account, endpoint=endpoint)
        if source == "docplanner":
            self.docplanner_queue_remaining.labels(source=source, account=account)
            self.docplanner_oldest_age.labels(source=source, account=account)
        else:
            self.myinvois_watermark.labels(source=source, account=account)


class StreamLengthCollector(Collector):
    """``drainer_stream_length`` read from Redis at scrape time (never cached)."""

    def __init__(self, lengths: Callable[[], Iterable[tuple[str, int]]]) -> None:
        self._lengths = lengths

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "drainer_stream_length", "Entries in each Redis stream (XLEN).", labels=["stream"]
        )
        try:
            for stream, length in self._lengths():
                family.add_metric([stream], float(length))
        except Exception:  # a scrape must not fail because Redis is down
            return
        yield family


def exported_names(registry: CollectorRegistry) -> set[str]:
    """Every sample name the registry exports (for dashboard and alert-rule tests)."""
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        for sample in family.samples:
            names.add(sample.name)
    return names
