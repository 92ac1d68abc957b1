"""One scheduler thread and a fixed pool run every worker's ``tick(now)`` (STYLE: bounded).

The scheduler keeps the next due time of every worker in a heap and hands each due tick to
a pool of ``size`` threads; it sleeps until the earliest due time or a wake-up, so an idle
daemon costs nothing per account. A worker is never ticked twice at once: it is out of the
heap while its tick runs and is put back at ``now + returned wait`` when the tick ends.
:meth:`Scheduler.wake` (a spooled batch for a publisher) makes a worker due at once; a
wake that lands while its tick runs makes the next tick follow straight after.

A tick that returns 0 (a DocPlanner queue with a backlog, a spool with more to publish)
runs again at once on the same pool thread while no other tick waits for a slot, so a
draining account pulls back to back as it did with a thread of its own; when others wait,
it queues behind them. A slow upstream call holds one slot, never the schedule.

An unexpected exception in a tick is logged with its traceback and the worker carries on
after a pause (backoff); a broken invariant (:class:`InvariantError`) drops the worker and
is handed to ``on_fatal`` so the process exits 1. Tests drive :meth:`Scheduler.dispatch`
with a fake clock and a fake pool (any ``submit(callable)``).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from daemon.errors import InvariantError
from daemon.worker import Backoff, Wake, Worker

log = structlog.get_logger("daemon.runtime.scheduler")

Task = Callable[[], None]


class Pool(Protocol):
    def submit(self, task: Task) -> None: ...

    def waiting(self) -> int:
        """Tasks submitted that no thread has taken yet."""
        ...


class ThreadPool:
    """``size`` daemon threads taking tasks from one queue (no thread per task or worker)."""

    def __init__(self, name: str, size: int) -> None:
        self._queue: queue.SimpleQueue[Task | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True) for n in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, task: Task) -> None:
        self._queue.put(task)

    def waiting(self) -> int:
        return self._queue.qsize()

    def _run(self) -> None:
        while (task := self._queue.get()) is not None:
            task()

    def close(self) -> None:
        """Let every thread end once it is idle (daemon threads: a stuck call never blocks exit)."""
        for _ in self._threads:
            self._queue.put(None)


@dataclass(eq=False)
class Job:
    """One worker as the scheduler sees it."""

    worker: Worker
    due: float = 0.0
    entry: int = 0  # the heap entry that is current (older entries are stale)
    running: bool = False
    woken: bool = False
    removed: bool = False
    done: threading.Event = field(default_factory=threading.Event)  # set when nothing runs
    pause: Backoff = field(default_factory=lambda: Backoff(base=1.0, cap=30.0))

    def __post_init__(self) -> None:
        self.done.set()


class Scheduler:
    """Runs the ticks of many workers on one pool (see the module docstring)."""

    def __init__(
        self,
        name: str,
        pool: Pool,
        clock: Callable[[], float] = time.monotonic,
        on_fatal: Callable[[InvariantError], None] = lambda exc: None,
    ) -> None:
        self.name = name
        self.pool = pool
        self.clock = clock
        self.on_fatal = on_fatal
        self._heap: list[tuple[float, int, Job]] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._stopping = False
        self._running = 0
        self._thread: threading.Thread | None = None
        self.jobs: dict[int, Job] = {}  # by id(worker): a job holds its worker

    # --- membership ----------------------------------------------------------------------

    def add(self, worker: Worker, wake: Wake | None = None, delay: float = 0.0) -> Job:
        """Schedule ``worker`` (due after ``delay``); ``wake`` rings :meth:`wake` for it."""
        with self._cond:
            job = Job(worker)
            self.jobs[id(worker)] = job
            self._push(job, self.clock() + delay)
        if wake is not None:
            wake.connect(lambda: self.wake(worker))
        return job

    def remove(self, worker: Worker) -> threading.Event:
        """Tick ``worker`` no more; the event is set once its in-flight tick (if any) ended."""
        with self._cond:
            job = self.jobs.pop(id(worker), None)
            if job is None:
                done = threading.Event()
                done.set()
                return done
            job.removed = True
            return job.done

    def wake(self, worker: Worker) -> None:
        """Make ``worker`` due at once (thread-safe; never blocks on a tick).

        An idle worker goes straight to the pool (no hop through the scheduler thread:
        a publisher starts on a spooled batch at once); a running one ticks again after.
        """
        with self._cond:
            job = self.jobs.get(id(worker))
            if job is None or job.removed or self._stopping:
                return
            if job.running:
                job.woken = True
                return
            job.entry = next(self._seq)  # its heap entry is stale from now on
            job.running = True
            job.done.clear()
            self._running += 1
        self.pool.submit(functools.partial(self._run, job))

    def _push(self, job: Job, due: float) -> None:
        job.due = due
        job.entry = next(self._seq)
        heapq.heappush(self._heap, (due, job.entry, job))
        if len(self._heap) > 2 * len(self.jobs) + 64:  # wakes leave stale entries behind
            self._heap = [e for e in self._heap if e[1] == e[2].entry and not e[2].removed]
            heapq.heapify(self._heap)
        if self._heap[0][1] == job.entry:  # the new earliest: the scheduler thread must know
            self._cond.notify()

    # --- dispatch ------------------------------------------------------------------------

    def dispatch(self, now: float) -> float | None:
        """Hand every due tick to the pool; return when the next one is due (None: none)."""
        due: list[Job] = []
        next_due: float | None = None
        with self._cond:
            while self._heap and not self._stopping:
                when, entry, job = self._heap[0]
                if job.removed or job.running or entry != job.entry:
                    heapq.heappop(self._heap)  # stale: re-pushed, running or removed
                    continue
                if when > now:
                    next_due = when
                    break
                heapq.heappop(self._heap)
                job.running = True
                job.done.clear()
                self._running += 1
                due.append(job)
        for job in due:
            self.pool.submit(functools.partial(self._run, job))
        return next_due

    def _run(self, job: Job) -> None:
        """One tick of ``job`` on a pool thread, then again at once while it asks for 0."""
        while True:
            if job.removed or self._stopping:
                self._finish(job, None)
                return
            delay = self._tick(job)
            if delay is None or not self._again(job, delay):
                return

    def _tick(self, job: Job) -> float | None:
        worker = job.worker
        try:
            delay = worker.tick(self.clock())
            job.pause.reset()
            return max(0.0, delay)
        except InvariantError as exc:
            log.exception("worker.invariant_broken", worker=worker.name)
            worker.health.failed(f"broken invariant: {exc}", self.clock())
            with self._cond:
                job.removed = True
                self.jobs.pop(id(worker), None)
            self._finish(job, None)
            self.on_fatal(exc)
            return None
        except Exception as exc:  # one bad iteration never stops an account
            log.exception("worker.tick_crashed", worker=worker.name)
            worker.health.failed(f"internal error: {type(exc).__name__}", self.clock())
            return job.pause.next()

    def _again(self, job: Job, delay: float) -> bool:
        """True to tick ``job`` again on this thread now; else it is re-scheduled (or done)."""
        with self._cond:
            now_due = delay <= 0 or job.woken
            if now_due and not job.removed and not self._stopping and not self.pool.waiting():
                job.woken = False
                return True
        self._finish(job, 0.0 if now_due else delay)
        return False

    def _finish(self, job: Job, delay: float | None) -> None:
        with self._cond:
            job.running = False
            self._running -= 1
            if delay is not None and not job.removed:
                if job.woken:  # a wake that landed after _again decided: honour it now
                    delay = 0.0
                job.woken = False
                self._push(job, self.clock() + delay)
            job.done.set()
            if self._stopping:
                self._cond.notify_all()  # stop() waits for the last tick in flight

    # --- the scheduler thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name=f"{self.name}-sched", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            next_due = self.dispatch(self.clock())
            with self._cond:
                if self._stopping:
                    return
                if self._heap and (next_due is None or self._heap[0][0] < next_due):
                    continue  # pushed between dispatch() and here: its notify was missed
                timeout = None if next_due is None else max(0.0, next_due - self.clock())
                self._cond.wait(timeout)

    def stop(self, timeout: float) -> bool:
        """Start no tick any more; wait up to ``timeout`` for those in flight (True: none)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
            while self._running:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            idle = not self._running
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
        return idle

    def busy(self, worker: Worker) -> bool:
        """Whether a tick of ``worker`` is running now."""
        with self._cond:
            job = self.jobs.get(id(worker))
            return job is not None and job.running
