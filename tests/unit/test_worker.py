"""What every worker shares: backoff with full jitter and the health bookkeeping.

The loop around ``tick()`` (wake-ups, crashes, broken invariants) is the scheduler's:
tests/unit/test_scheduler.py.
"""

from __future__ import annotations

from daemon.worker import Backoff, Health, Wake


def test_an_unconnected_wake_does_nothing_and_a_connected_one_calls_its_target() -> None:
    """Sources ring publisher.wake whether or not a scheduler listens (backfill, tests)."""
    wake, rung = Wake(), []
    wake.set()
    wake.connect(lambda: rung.append(1))
    wake.set()
    assert rung == [1]


def test_backoff_grows_with_full_jitter_and_resets() -> None:
    """Waits stay within [ceiling/2, ceiling], the ceiling doubles up to the cap, reset restarts."""
    backoff = Backoff(base=1.0, cap=8.0)
    waits = [backoff.next() for _ in range(6)]
    ceilings = [2.0, 4.0, 8.0, 8.0, 8.0, 8.0]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    backoff.reset()
    assert backoff.next() <= 2.0


def test_health_snapshot_is_a_consistent_copy() -> None:
    """A snapshot does not change when the worker updates its health afterwards."""
    health = Health("myinvois", "acme", "poller")
    health.set_detail("watermark", "2026-11-02T10:00:00Z")
    health.failed("503", 10.0)
    snap = health.snapshot()
    health.succeeded(20.0)
    health.clear_detail("watermark")
    assert snap.failing_since == 10.0 and snap.detail == {"watermark": "2026-11-02T10:00:00Z"}
    assert snap.overdue(10.0 + 301) and not health.overdue(10.0 + 301)
