"""``drainer_docplanner_oldest_event_age_seconds`` is computed at scrape time (SPEC §7)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry

from daemon.envelope.batch import PullExpander
from daemon.metrics import Metrics
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.spool import RawBatch

NAME = "drainer_docplanner_oldest_event_age_seconds"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def body(created: list[float], remaining: int) -> bytes:
    items = [
        {
            "name": "slot-booked",
            "data": {"facility": {}, "doctor": {}, "address": {}},
            "created_at": datetime.fromtimestamp(t, tz=UTC).isoformat(),
        }
        for t in created
    ]
    return json.dumps({"notifications": items, "remaining": remaining}).encode()


def scrape(registry: CollectorRegistry, account: str = "pl") -> float | None:
    return registry.get_sample_value(NAME, {"source": "docplanner", "account": account})


def setup(now: float) -> tuple[Clock, CollectorRegistry, Metrics, PullExpander]:
    clock = Clock(now)
    registry = CollectorRegistry()
    metrics = Metrics(registry, [("docplanner", "pl")], wall_clock=clock)
    expand = PullExpander("pl", "s", "dl", DocPlannerIntake(metrics, "pl"))
    return clock, registry, metrics, expand


def test_age_grows_between_scrapes_without_a_new_pull() -> None:
    """After a pull left remaining > 0, the age is now - newest created_at and keeps growing."""
    clock, registry, _, expand = setup(100_000.0)
    assert scrape(registry) == 0.0
    expand(RawBatch(100_000.0, "pull", body([90_000.0, 95_000.0], remaining=5), 2))
    assert scrape(registry) == 5_000.0
    clock.now += 3_600.0  # pulling blocked for an hour: no pull, no publish
    assert scrape(registry) == 8_600.0


def test_empty_queue_clears_the_age_and_a_stale_batch_does_not_bring_it_back() -> None:
    """remaining = 0 or a 404 sets 0; a batch pulled before that, published later, is ignored."""
    clock, registry, metrics, expand = setup(100_000.0)
    expand(RawBatch(99_000.0, "pull", body([90_000.0], remaining=3), 1))
    assert scrape(registry) == 10_000.0
    expand(RawBatch(99_500.0, "pull", body([91_000.0], remaining=0), 1))
    assert scrape(registry) == 0.0
    expand(RawBatch(99_100.0, "pull", body([90_500.0], remaining=2), 1))  # replayed late
    assert scrape(registry) == 0.0
    expand(RawBatch(99_600.0, "pull", body([92_000.0], remaining=1), 1))
    assert scrape(registry) == 8_000.0
    metrics.docplanner_expiry.emptied("pl", 99_700.0)
    clock.now += 10_000.0
    assert scrape(registry) == 0.0


def test_batch_without_valid_times_anchors_at_the_pull() -> None:
    """remaining > 0 but no valid created_at: the pull time is the anchor (still queued then)."""
    _, registry, _, expand = setup(50_000.0)
    expand(RawBatch(40_000.0, "pull", b'{"notifications": [{"bad": 1}], "remaining": 4}', 1))
    assert scrape(registry) == 10_000.0
