"""HTTP server metrics: responses by status code, open connections, worker pool saturation.

Counters are updated by the server (``daemon.server.strict``); the gauges are read from
each listener at scrape time, so they cost nothing between scrapes.

- ``drainer_http_responses_total{listener,route,code}`` (route: push, metrics, healthz,
  readyz, other) — server-made answers (400, 401, 408, 413, 431, 501) included;
- ``drainer_http_request_deadline_closes_total{listener}``;
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

PUSH_CODES = ("204", "400", "401", "413", "503")  # pre-initialised for the push route

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
        self._listeners: dict[str, Stats] = {}
        registry.register(self)

    def add_listener(self, name: str, stats: Stats) -> None:
        for code in PUSH_CODES:
            self.responses.labels(name, "push", code)
        for route in ROUTES[1:4]:
            self.responses.labels(name, route, "200")
        self.deadline_closes.labels(name)
        self._listeners[name] = stats

    def on_response(self, listener: str) -> Callable[[str, str], None]:
        return lambda route, code: self.responses.labels(listener, route, code).inc()

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
        yield GaugeMetricFamily(
            "drainer_process_threads",
            "Python threads in the daemon",
            value=threading.active_count(),
        )
