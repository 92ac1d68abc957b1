"""HTTP server metrics: responses by status code, open connections, worker pool saturation.

Counters are updated by the server (``daemon.server.strict``); the gauges are read from
each listener at scrape time, so they cost nothing between scrapes.

- ``drainer_http_responses_total{listener,route,code}`` (route: push, metrics, healthz,
  readyz, other) — server-made answers (400, 401, 408, 413, 431, 501) included;
- ``drainer_http_request_deadline_closes_total{listener}``;
- ``drainer_http_connections_closed_total{listener,reason}``: closed by the server before
  a response: ``idle`` (no request begun within ``idle_timeout``), ``evicted`` (idle, closed
  to make room at ``connection_limit``), ``per_source`` (refused
  at accept: the peer holds ``max_connections_per_source``), ``descriptors`` (accept()
  failed for want of file descriptors);
- ``drainer_http_push_refusals_total{reason}``: pushes answered before the body:
  ``forbidden_source`` (403), ``unauthorized`` (401), ``rate_limited`` (429);
- ``drainer_push_allowlist_published_networks{account}``: networks of DocPlanner's last
  good published list (0 until a fetch succeeds);
- ``drainer_http_open_connections{listener}``, ``drainer_http_workers{listener}``,
  ``drainer_http_workers_busy{listener}``, ``drainer_http_queue_depth{listener}`` (complete
  requests waiting for a worker), ``drainer_process_threads``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.server.apps import ROUTES

PUSH_CODES = ("204", "400", "401", "403", "413", "429", "503")
CLOSE_REASONS = ("idle", "evicted", "per_source", "descriptors")
REFUSAL_REASONS = (
    "forbidden_source",
    "unauthorized",
    "rate_limited",
)  # pre-initialised for the push route

Stats = Callable[[], dict[str, float]]
_GAUGES = {
    "open": ("drainer_http_open_connections", "Open client connections"),
    "workers": ("drainer_http_workers", "Worker threads in the pool"),
    "busy": ("drainer_http_workers_busy", "Worker threads running a request"),
    "queue": ("drainer_http_queue_depth", "Complete requests waiting for a worker"),
}


class HttpMetrics(Collector):
    """The HTTP server's metrics on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.responses = Counter(
            "drainer_http_responses",
            "HTTP responses by listener, route and status code",
            ["listener", "route", "code"],
            registry=registry,
        )
        self.deadline_closes = Counter(
            "drainer_http_request_deadline_closes",
            "Connections closed because a request was not received within the deadline",
            ["listener"],
            registry=registry,
        )
        self.closed = Counter(
            "drainer_http_connections_closed",
            "Connections closed by the server without a response, by reason",
            ["listener", "reason"],
            registry=registry,
        )
        self.refusals = Counter(
            "drainer_http_push_refusals",
            "Pushes refused before the body was read, by reason",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS:
            self.refusals.labels(reason)
        self._listeners: dict[str, Stats] = {}
        self.published: Callable[[], dict[str, int]] = dict
        registry.register(self)

    def add_listener(self, name: str, stats: Stats) -> None:
        for code in PUSH_CODES:
            self.responses.labels(name, "push", code)
        for route in ROUTES[1:4]:
            self.responses.labels(name, route, "200")
        self.deadline_closes.labels(name)
        for reason in CLOSE_REASONS:
            self.closed.labels(name, reason)
        self._listeners[name] = stats

    def on_response(self, listener: str) -> Callable[[str, str], None]:
        return lambda route, code: self.responses.labels(listener, route, code).inc()

    def on_close(self, listener: str) -> Callable[[str], None]:
        return lambda reason: self.closed.labels(listener, reason).inc()

    def on_refusal(self, reason: str) -> None:
        self.refusals.labels(reason).inc()

    def on_deadline(self, listener: str) -> Callable[[], None]:
        return lambda: self.deadline_closes.labels(listener).inc()

    def collect(self) -> Iterator[Metric]:
        families = {
            key: GaugeMetricFamily(name, text, labels=["listener"])
            for key, (name, text) in _GAUGES.items()
        }
        for name, stats in list(self._listeners.items()):
            for key, value in stats().items():
                families[key].add_metric([name], value)
        yield from families.values()
        published = GaugeMetricFamily(
            "drainer_push_allowlist_published_networks",
            "Networks in the last good list DocPlanner publishes (0 until one is fetched)",
            labels=["account"],
        )
        for account, count in self.published().items():
            published.add_metric([account], count)
        yield published
        yield GaugeMetricFamily(
            "drainer_process_threads",
            "Python threads in the daemon",
            value=threading.active_count(),
        )
