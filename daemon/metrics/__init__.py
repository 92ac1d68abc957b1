"""Prometheus metrics (SPEC §7) on an injected registry, labels pre-initialised.

``registry`` (the names: :class:`Metrics`), ``collectors`` (computed at scrape time: the
DocPlanner expiry age, the stream lengths), ``docplanner`` (the intake counts of a pull
body), ``groups`` (consumer-group families), ``process`` (process_* series), ``refusals``.
"""

from daemon.metrics.registry import Metrics

__all__ = ["Metrics"]
