"""drive(): the loop around tick() — stop flag, wake-ups, crashes and broken invariants."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from daemon.errors import InvariantError
from daemon.worker import Backoff, Health, drive
from tests.helpers import wait_for


@dataclass
class Scripted:
    """A worker whose ticks follow a script of waits or exceptions."""

    script: list[float | Exception]
    name: str = "test:w"
    health: Health = field(default_factory=lambda: Health("docplanner", "w", "test"))
    ticks: int = 0

    def tick(self, now: float) -> float:
        self.ticks += 1
        step = self.script.pop(0) if self.script else 3600.0
        if isinstance(step, Exception):
            raise step
        return step


def run(worker: Scripted, wake: threading.Event | None = None, **kw: object) -> threading.Event:
    stop = threading.Event()
    thread = threading.Thread(target=drive, args=(worker, stop, wake), kwargs=kw, daemon=True)
    thread.start()
    worker.thread = thread  # type: ignore[attr-defined]
    return stop


def test_stop_ends_a_long_wait_promptly() -> None:
    """A worker waiting an hour stops as soon as the stop flag is set."""
    worker = Scripted([3600.0])
    stop = run(worker, slice_seconds=0.01)
    wait_for(lambda: worker.ticks == 1, 5, "first tick")
    stop.set()
    worker.thread.join(timeout=5)  # type: ignore[attr-defined]
    assert not worker.thread.is_alive()  # type: ignore[attr-defined]


def test_a_wake_event_cuts_the_wait_short() -> None:
    """Setting the wake event starts the next tick without waiting out the delay."""
    wake = threading.Event()
    worker = Scripted([3600.0, 3600.0])
    stop = run(worker, wake, slice_seconds=0.01)
    wait_for(lambda: worker.ticks == 1, 5, "first tick")
    wake.set()
    wait_for(lambda: worker.ticks == 2, 5, "woken tick")
    stop.set()


def test_an_unexpected_exception_is_survived_and_marked_failing() -> None:
    """A crashing tick does not kill the thread: health says so, and the next tick runs."""
    worker = Scripted([RuntimeError("boom"), 3600.0])
    stop = run(worker, slice_seconds=0.01)
    wait_for(lambda: worker.ticks == 2, 10, "tick after the crash")
    assert worker.health.last_error == "internal error: RuntimeError"
    stop.set()


def test_a_broken_invariant_ends_the_worker_and_reports_it() -> None:
    """InvariantError: on_fatal gets it, the thread ends, no further tick."""
    seen: list[InvariantError] = []
    worker = Scripted([InvariantError("seq went backwards"), 0.0])
    run(worker, slice_seconds=0.01, on_fatal=seen.append)
    worker.thread.join(timeout=5)  # type: ignore[attr-defined]
    assert [str(e) for e in seen] == ["seq went backwards"] and worker.ticks == 1


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
