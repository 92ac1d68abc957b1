"""Per MyInvois Client ID metrics, read at scrape time (one collector on the registry).

``drainer_myinvois_client_budget_used_ratio{client}`` and
``drainer_myinvois_schedule_lag_seconds{client}``: see :class:`ClientScheduleCollector`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector


class ClientScheduleCollector(Collector):
    """Per MyInvois Client ID, read at scrape time: the share of its notifications budget
    used in the last minute and how far behind its interval its most overdue taxpayer is.

    ``client`` is the configured ``client_id`` (not a secret; one per configured client, so
    bounded); the same id on a second identity host is shown as ``<client_id>@2``.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readers: dict[str, Callable[[], tuple[float, float]]] = {}

    def add(self, client: str, read: Callable[[], tuple[float, float]]) -> str:
        """Export one client; ``read()`` returns ``(budget used ratio, lag seconds)``."""
        with self._lock:
            label, n = client, 1
            while label in self._readers:
                n += 1
                label = f"{client}@{n}"
            self._readers[label] = read
        return label

    def collect(self) -> Iterator[GaugeMetricFamily]:
        used = GaugeMetricFamily(
            "drainer_myinvois_client_budget_used_ratio",
            "Share of the MyInvois Client ID's requests_per_minute used in the last minute"
            " (shared by every taxpayer of the client).",
            labels=["client"],
        )
        lag = GaugeMetricFamily(
            "drainer_myinvois_schedule_lag_seconds",
            "How far behind its interval the most overdue taxpayer of the Client ID is (its"
            " window should have finished interval after it started); about N/B - interval"
            " when the shared budget is the limit, growing when the budget is too small.",
            labels=["client"],
        )
        with self._lock:
            readers = sorted(self._readers.items())
        for label, read in readers:
            ratio, seconds = read()
            used.add_metric([label], ratio)
            lag.add_metric([label], seconds)
        yield used
        yield lag
