"""The DocPlanner intake counts: what each spooled pull body gave, into the registry."""

from __future__ import annotations

from daemon.envelope.batch import Expansion
from daemon.metrics.registry import Metrics


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
