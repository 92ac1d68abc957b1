"""The scheduler: due order, one tick per worker at a time, wake-ups, crashes, removal, stop."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from daemon.errors import InvariantError
from daemon.runtime.scheduler import Scheduler, Task, ThreadPool
from daemon.worker import Health, Wake
from tests.helpers import wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakePool:
    """Records submitted tasks; the test runs them when it wants."""

    def __init__(self) -> None:
        self.tasks: list[Task] = []

    def submit(self, task: Task) -> None:
        self.tasks.append(task)

    def waiting(self) -> int:
        return len(self.tasks)

    def run_next(self) -> None:
        self.tasks.pop(0)()

    def run_all(self) -> None:
        while self.tasks:
            self.run_next()


@dataclass(eq=False)
class Scripted:
    """A worker whose ticks return the scripted waits (or raise), then an hour."""

    name: str
    script: list[float | Exception] = field(default_factory=list)
    log: list[str] | None = None
    health: Health = field(default_factory=lambda: Health("docplanner", "w", "test"))
    ticks: int = 0

    def tick(self, now: float) -> float:
        self.ticks += 1
        if self.log is not None:
            self.log.append(self.name)
        step = self.script.pop(0) if self.script else 3600.0
        if isinstance(step, Exception):
            raise step
        return step


def make(clock: FakeClock | None = None) -> tuple[Scheduler, FakePool, FakeClock, list[object]]:
    clock = clock or FakeClock()
    pool, fatal = FakePool(), []
    return Scheduler("test", pool, clock, on_fatal=fatal.append), pool, clock, fatal


def test_due_ticks_are_handed_over_in_due_order_and_none_early() -> None:
    """Workers due at +5, +1, +3 s: nothing before +1, then all three in due order."""
    scheduler, pool, clock, _ = make()
    order: list[str] = []
    for name, delay in (("c", 5.0), ("a", 1.0), ("b", 3.0)):
        scheduler.add(Scripted(name, log=order), delay=delay)
    assert scheduler.dispatch(clock.now) == clock.now + 1.0 and not pool.tasks
    clock.now += 10
    assert scheduler.dispatch(clock.now) is None
    pool.run_all()
    assert order == ["a", "b", "c"]


def test_a_worker_is_rescheduled_at_now_plus_its_returned_wait() -> None:
    """A tick returning 7 s is due again exactly 7 s after it ended, not before."""
    scheduler, pool, clock, _ = make()
    worker = Scripted("w", [7.0])
    scheduler.add(worker)
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert scheduler.dispatch(clock.now + 6.9) == clock.now + 7.0 and not pool.tasks
    scheduler.dispatch(clock.now + 7.0)
    pool.run_all()
    assert worker.ticks == 2


def test_a_worker_is_never_handed_over_twice_while_its_tick_is_pending() -> None:
    """Dispatching and waking again while a tick is queued does not queue a second one."""
    scheduler, pool, clock, _ = make()
    worker = Scripted("w", [0.0])
    scheduler.add(worker)
    scheduler.dispatch(clock.now)
    scheduler.wake(worker)
    scheduler.dispatch(clock.now + 100)
    assert len(pool.tasks) == 1


def test_no_two_ticks_of_one_worker_overlap_on_a_real_pool() -> None:
    """Eight pool threads, one worker that always asks for more and is woken constantly:
    its ticks never overlap."""
    pool = ThreadPool("t", 8)
    scheduler = Scheduler("t", pool)
    lock, inside, overlaps, ticks = threading.Lock(), [0], [0], [0]

    class Busy:
        name = "busy"
        health = Health("docplanner", "w", "test")

        def tick(self, now: float) -> float:
            with lock:
                inside[0] += 1
                overlaps[0] += inside[0] > 1
            for _ in range(1000):
                pass  # let another thread try to get in
            with lock:
                inside[0] -= 1
                ticks[0] += 1
            return 0.0

    busy = Busy()
    others = [Scripted(f"o{n}", [0.0] * 50) for n in range(4)]
    scheduler.add(busy)
    for other in others:
        scheduler.add(other)
    scheduler.start()
    try:
        for _ in range(200):
            scheduler.wake(busy)
        wait_for(lambda: ticks[0] >= 500 and all(o.ticks > 50 for o in others), 30, "ticks")
    finally:
        assert scheduler.stop(10)
        pool.close()
    assert overlaps[0] == 0


def test_a_wake_makes_a_waiting_worker_due_at_once() -> None:
    """A worker waiting an hour is handed over as soon as its Wake is rung."""
    scheduler, pool, clock, _ = make()
    worker, wake = Scripted("w"), Wake()
    scheduler.add(worker, wake=wake)
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert scheduler.dispatch(clock.now) == clock.now + 3600
    wake.set()
    assert scheduler.dispatch(clock.now) is None
    pool.run_all()
    assert worker.ticks == 2


def test_a_wake_during_a_tick_runs_the_next_tick_right_after() -> None:
    """Rung while its tick runs, the worker ticks again at once instead of waiting an hour."""
    scheduler, pool, clock, _ = make()
    wake = Wake()

    class Ringing(Scripted):
        def tick(self, now: float) -> float:
            if self.ticks == 0:
                wake.set()  # e.g. a push spooled while the publisher was publishing
            return super().tick(now)

    worker = Ringing("w")
    scheduler.add(worker, wake=wake)
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert worker.ticks == 2


def test_a_tick_asking_for_more_yields_its_slot_when_others_wait() -> None:
    """A backlog (wait 0) runs back to back while alone, but queues behind a waiting tick."""
    scheduler, pool, clock, _ = make()
    order: list[str] = []
    first = Scripted("first", [0.0, 0.0, 0.0], log=order)
    scheduler.add(first)
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert order == ["first"] * 4  # alone: back to back on one pool thread
    order.clear()
    first.script = [0.0, 0.0]
    second = Scripted("second", log=order)
    scheduler.wake(first)
    scheduler.add(second)
    scheduler.dispatch(clock.now)
    pool.run_next()  # first's tick; second waits in the pool: first goes back to the heap
    assert order == ["first"] and len(pool.tasks) == 1
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert order[:2] == ["first", "second"] and order.count("first") == 3


def test_a_crashing_tick_is_survived_marked_failing_and_retried_after_a_pause() -> None:
    """An unexpected exception: health says so and the worker is due again after a backoff."""
    scheduler, pool, clock, fatal = make()
    worker = Scripted("w", [RuntimeError("boom")])
    scheduler.add(worker)
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert worker.health.last_error == "internal error: RuntimeError" and not fatal
    next_due = scheduler.dispatch(clock.now)
    assert next_due is not None and clock.now < next_due <= clock.now + 2.0
    scheduler.dispatch(clock.now + 2.0)
    pool.run_all()
    assert worker.ticks == 2


def test_a_broken_invariant_drops_the_worker_and_reports_it() -> None:
    """InvariantError: on_fatal gets it and the worker is never ticked again."""
    scheduler, pool, clock, fatal = make()
    worker = Scripted("w", [InvariantError("seq went backwards"), 0.0])
    scheduler.add(worker)
    scheduler.dispatch(clock.now)
    pool.run_all()
    assert [str(e) for e in fatal] == ["seq went backwards"]
    assert scheduler.dispatch(clock.now + 7200) is None and not pool.tasks and worker.ticks == 1


def test_remove_waits_for_the_tick_in_flight_and_stops_scheduling() -> None:
    """remove() during a tick: its event is set when the tick ends; no tick after that."""
    scheduler, pool, clock, _ = make()
    worker = Scripted("w", [0.0, 0.0])
    scheduler.add(worker)
    scheduler.dispatch(clock.now)
    done = scheduler.remove(worker)
    assert not done.is_set()  # handed to the pool, not finished
    pool.run_all()
    assert done.is_set() and worker.ticks == 0  # it had not started: it never will
    assert scheduler.dispatch(clock.now + 7200) is None and not pool.tasks


def test_stop_starts_no_tick_and_waits_for_those_in_flight() -> None:
    """After stop(), nothing is handed over and a queued tick does not run."""
    scheduler, pool, clock, _ = make()
    worker = Scripted("w")
    scheduler.add(worker)
    scheduler.dispatch(clock.now)
    assert not scheduler.stop(0.05)  # one tick handed over, not finished
    pool.run_all()
    assert worker.ticks == 0 and scheduler.stop(0.05)
    assert scheduler.dispatch(clock.now + 7200) is None and not pool.tasks


def test_the_scheduler_thread_sleeps_until_the_next_due_time() -> None:
    """With every worker an hour away, the scheduler thread does not loop (no busy wake-ups)."""
    pool = ThreadPool("t", 2)
    scheduler = Scheduler("t", pool)
    workers = [Scripted(f"w{n}") for n in range(100)]
    for worker in workers:
        scheduler.add(worker)
    calls = [0]
    real = scheduler.dispatch

    def counting(now: float) -> float | None:
        calls[0] += 1
        return real(now)

    scheduler.dispatch = counting  # type: ignore[method-assign]
    scheduler.start()
    try:
        wait_for(lambda: all(w.ticks == 1 for w in workers), 30, "first ticks")
        settled = calls[0]
        done = threading.Event()
        done.wait(0.5)  # an idle interval to observe (not a wait for a condition)
        assert calls[0] - settled <= 2
    finally:
        scheduler.stop(5)
        pool.close()


def test_wake_ups_do_not_grow_the_heap_without_bound() -> None:
    """Thousands of wakes of idle workers leave at most a bounded number of stale entries."""
    scheduler, pool, clock, _ = make()
    workers = [Scripted(f"w{n}") for n in range(10)]
    for worker in workers:
        scheduler.add(worker)
    scheduler.dispatch(clock.now)
    pool.run_all()  # each returns an hour: the scheduler thread would sleep that long
    for _ in range(1000):
        for worker in workers:
            scheduler.wake(worker)  # dispatched at once; that entry is stale now
        pool.run_all()
    assert len(scheduler._heap) <= 2 * len(workers) + 65
    assert all(w.ticks == 1001 for w in workers)  # the first dispatch, then one per wake


def test_a_stuck_tick_holds_one_slot_and_the_others_keep_their_schedule() -> None:
    """One worker blocked in its tick (a slow upstream): on a pool of 2, the rest tick on."""
    pool = ThreadPool("t", 2)
    scheduler = Scheduler("t", pool)
    release, entered = threading.Event(), threading.Event()

    class Stuck:
        name = "stuck"
        health = Health("myinvois", "slow", "test")

        def tick(self, now: float) -> float:
            entered.set()
            release.wait(30)
            return 3600.0

    others = [Scripted(f"o{n}", [0.01] * 20) for n in range(5)]
    scheduler.add(Stuck())
    for other in others:
        scheduler.add(other)
    scheduler.start()
    try:
        wait_for(entered.is_set, 10, "the stuck tick")
        wait_for(lambda: all(o.ticks == 21 for o in others), 30, "the others' ticks")
    finally:
        release.set()
        assert scheduler.stop(10)
        pool.close()


def test_a_wake_between_the_decision_and_the_reschedule_is_not_lost() -> None:
    """A wake landing after the tick decided "not due" (30 s) still makes it due at once."""
    scheduler, pool, clock, _ = make()
    worker = Scripted("publisher", [30.0])
    scheduler.add(worker)
    finish = scheduler._finish

    def wake_then_finish(job: object, delay: float | None) -> None:
        scheduler.wake(worker)  # the spool rang while the tick was ending
        finish(job, delay)  # type: ignore[arg-type]

    scheduler._finish = wake_then_finish  # type: ignore[method-assign]
    scheduler.dispatch(clock.now)
    pool.run_all()
    scheduler._finish = finish  # type: ignore[method-assign]
    scheduler.dispatch(clock.now)
    assert pool.tasks, "the woken worker is due now, not in 30 s"
    pool.run_all()
    assert worker.ticks == 2
