"""Refusal metrics: upstream answers an account keeps retrying but cannot fix by itself.

``drainer_upstream_refused{source,account,reason}`` is 1 while the account's last answer
of that kind was a refusal, 0 once an answer of that kind is good (an alert can use it);
``drainer_upstream_refusals_total`` counts every such answer. ``reason`` comes from the
fixed :data:`REFUSALS` table, so labels stay bounded; every series is pre-initialised.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REFUSALS = {
    # a 404 that is not the documented empty queue (wrong base_url, moved route); release 403
    "docplanner": ("not_found", "release_forbidden"),
    # a MyInvois 400 that does not name pageSize: the request is refused as it is
    "myinvois": ("bad_request",),
}


class RefusalMetrics:
    """The refusal gauge and counter, on the daemon's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        labels = ("source", "account", "reason")
        self.refused = Gauge(
            "drainer_upstream_refused",
            "1 while the account's last answer of this kind was a refusal it keeps retrying"
            " (not_found: a 404 that is not the empty queue; release_forbidden: release 403;"
            " bad_request: a MyInvois 400 not about pageSize); 0 once an answer is good.",
            labels,
            registry=registry,
        )
        self.refusals = Counter(
            "drainer_upstream_refusals_total",
            "Refusal answers, by reason (see drainer_upstream_refused).",
            labels,
            registry=registry,
        )

    def add_account(self, source: str, account: str) -> None:
        for reason in REFUSALS.get(source, ()):
            self.refused.labels(source=source, account=account, reason=reason)
            self.refusals.labels(source=source, account=account, reason=reason)

    def record(self, source: str, account: str, reason: str, refused: bool) -> None:
        """One answer of a refusal kind: refused (counted, gauge 1) or good (gauge 0)."""
        labels = {"source": source, "account": account, "reason": reason}
        if refused:
            self.refusals.labels(**labels).inc()
        self.refused.labels(**labels).set(1 if refused else 0)
