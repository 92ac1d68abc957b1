"""The threads, signals and shutdown order of ``drainer run``.

Two schedulers (``daemon.runtime.scheduler``) run every worker's ticks on fixed pools:
intake (pullers, pollers, release schedulers, retention; ``[runtime] workers``) and
publishers (``[runtime] publishers``), so publishing never waits behind intake and the
thread count does not grow with the number of accounts. Start: open every spool (its
pending records are published first), start the publishers, the HTTP server, then
intake; READY=1. The main loop pings the systemd watchdog, watches the stop flag (which
only the signal handlers set) and, on SIGHUP, reloads the accounts
(``daemon.runtime.reload``). Stop, in this order: STOPPING=1 -> stop intake (pullers
finish and spool their in-flight batch; push answers 503) -> publish what is spooled ->
close the HTTP server last. A second signal forces an immediate exit.
"""

from __future__ import annotations

import gc
import sys
import time
from collections.abc import Callable
from typing import Any

import structlog

from daemon.errors import EXIT_FATAL, EXIT_OK, InvariantError
from daemon.runtime import leased
from daemon.runtime.parts import Account, Parts
from daemon.runtime.reload import Reloader
from daemon.runtime.scheduler import Scheduler, ThreadPool
from daemon.runtime.signals import SignalFlag
from daemon.runtime.systemd import Notifier
from daemon.runtime.wiring import detect_durability
from daemon.server.listener import HttpFront
from daemon.server.logbridge import install_process_logging
from daemon.settings import Settings
from daemon.worker import Worker

log = structlog.get_logger("daemon.runtime.run")

STOP_BUDGET = 20.0  # SPEC §5: exit within 20 s of SIGTERM
# A pull in flight at SIGTERM gets this long to be answered and spooled (fsynced; published
# now or at the next start). Its read timeout is 60 s (a slow answer abandoned is a batch
# lost), so one answered later than this is cut off by the exit: SPEC §2's "in flight when
# the process is killed". The publishers keep publishing meanwhile; 5 s stay for the rest.
INTAKE_JOIN = 15.0
WATCHDOG_EVERY = 2.0
MAIN_SLICE = 0.2
SWITCH_INTERVAL = 0.001
GC_THRESHOLDS = (10_000, 20, 20)  # Python's default is (700, 10, 10)


class Runtime:
    """Owns the schedulers, pools and HTTP server of ``drainer run``."""

    def __init__(
        self,
        parts: Parts,
        notifier: Notifier,
        load: Callable[[], Settings] | None = None,
    ) -> None:
        self.parts = parts
        self.notifier = notifier
        self.signals = SignalFlag()  # counted by the signal handlers (see daemon.runtime.signals)
        self.fatal: InvariantError | None = None  # set by a pool thread; read by run()
        self.stopping = False
        self._last_loop = time.monotonic()
        parts.metrics.ready.set_function(lambda: float(self.readiness()[0]))
        settings = parts.settings
        self._pools: list[ThreadPool] = []
        self.intake = self._scheduler("intake", settings.runtime.workers)
        self.publishing = self._scheduler("publish", settings.runtime.publishers)
        self.reloader = Reloader(self, load)
        install_process_logging()  # stdlib loggers and crashed threads into the JSON log
        self.server = HttpFront(
            settings.server,
            parts.registry,
            self.alive,
            self.readiness,
            parts.push,
            accounts=settings.docplanner,
        )
        detect_durability(parts.sink)  # once the listeners are bound: a busy port is one line

    def _scheduler(self, name: str, size: int) -> Scheduler:
        pool = ThreadPool(name, size)
        self._pools.append(pool)
        return Scheduler(name, pool, self.parts.clock, on_fatal=self._on_fatal)

    # --- health --------------------------------------------------------------------------

    def alive(self) -> bool:
        return time.monotonic() - self._last_loop < 30.0

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: dict[str, Any] = {}
        redis_down = self.parts.probe.not_ready()  # cached: never waits on Redis
        if redis_down is not None:
            reasons["redis"] = redis_down
        now = self.parts.clock()
        workers: list[Worker] = [*self.parts.intake, *self.parts.publishers]
        for worker in workers:
            health = worker.health.snapshot()
            if health.overdue(now):
                reasons[worker.name] = health.last_error or "failing"
            if health.detail.get("not_ready"):
                reasons[worker.name] = str(health.detail["not_ready"])
        if self.stopping:
            reasons["shutdown"] = "stopping"
        detail: dict[str, Any] = {"not_ready": reasons} if reasons else {}
        if self.parts.settings.redis.leases:
            detail["leases"] = leased.holders(self.parts.leases)
        return (not reasons, detail)

    # --- accounts (start and reload) -----------------------------------------------------

    def start_account(self, account: Account) -> None:
        """Count ``account`` in and schedule its publisher (when new) and its intake."""
        new_publisher = account.publisher not in self.parts.publishers
        self.parts.metrics.add_account(*account.key)
        self.parts.attach(account)
        if new_publisher:
            self.publishing.add(account.publisher, wake=account.publisher.wake)
        for worker in account.intake:
            self.intake.add(worker)

    def _on_fatal(self, exc: InvariantError) -> None:
        self.fatal = exc  # a plain assignment: the main loop notices within MAIN_SLICE

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        parts = self.parts
        # The puller waits on the network and must get the GIL back at once when its
        # response arrives, not after the publisher's 5 ms default time slice.
        sys.setswitchinterval(SWITCH_INTERVAL)
        # Parsed notifications hold no reference cycles: reference counting frees them. The
        # cyclic collector's default pass every 700 net allocations took ~6 % of the publish
        # path's CPU (measured with gc.callbacks); start-up objects are frozen out of it.
        gc.freeze()
        gc.set_threshold(*GC_THRESHOLDS)
        parts.metrics.up.set(1)
        for publisher in parts.publishers:
            self.publishing.add(publisher, wake=publisher.wake)
        self.publishing.start()
        self.server.start()
        parts.accepting.set()
        for worker in parts.intake:
            self.intake.add(worker)
        self.intake.start()
        self.reloader.started()
        self.notifier.notify("READY=1")
        log.info(
            "runtime.started",
            listen=f"{parts.settings.server.host}:{self.server.port}",
            push_port=self.server.push_port,
            docplanner=[a.name for a in parts.settings.docplanner],
            myinvois=[a.name for a in parts.settings.myinvois],
            intake_pool=parts.settings.runtime.workers,
            publisher_pool=parts.settings.runtime.publishers,
        )
        last_watchdog = 0.0
        while not self.signals.count and not self.fatal:
            self._last_loop = time.monotonic()
            if self._last_loop - last_watchdog >= WATCHDOG_EVERY:
                self.notifier.notify("WATCHDOG=1")
                last_watchdog = self._last_loop
            self.reloader.poll(self.signals.reloads)
            self.signals.sleep(MAIN_SLICE)
        self.stopping = True
        return self.shutdown()

    def shutdown(self) -> int:
        started = time.monotonic()
        self.notifier.notify("STOPPING=1")
        log.info("runtime.stopping")
        self.parts.accepting.clear()
        self.intake.stop(INTAKE_JOIN)
        # The other node takes over at once instead of waiting for the TTL.
        leased.release_all(self.parts.leases)
        self.reloader.close()
        deadline = started + STOP_BUDGET - 2.0
        # A publish call may be blocked up to the Redis socket timeout: let it finish, so
        # that drain() below never ticks a publisher a pool thread is still ticking.
        self.publishing.stop(max(0.1, deadline - 1.0 - time.monotonic()))
        left = 0
        for publisher in self.parts.publishers:
            if self.publishing.busy(publisher):
                log.warning("publisher.still_busy", worker=publisher.name)
                left += publisher.spool.pending_events
                continue
            try:
                drained = publisher.drain(deadline)
            except InvariantError as exc:
                log.exception("publisher.invariant_broken", worker=publisher.name)
                self.fatal = self.fatal or exc  # ends the run with exit 1, as in the main loop
                drained = False
            if not drained:
                left += publisher.spool.pending_events
        self.parts.metrics.up.set(0)
        self.server.stop()
        for client in self.parts.clients:
            client.close()
        self.parts.redis.close()
        for pool in self._pools:
            pool.close()
        log.info(
            "runtime.stopped",
            seconds=round(time.monotonic() - started, 3),
            unpublished_left_in_spool=left,
        )
        if self.fatal is not None:
            log.error("runtime.fatal", error=str(self.fatal))
            return EXIT_FATAL
        return EXIT_OK
