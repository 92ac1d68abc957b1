"""Threads, signals and the shutdown order of ``drainer run``.

Start: open every spool (its pending records are published first), start the publishers,
the HTTP server, then the intake workers (pullers, pollers, release schedulers); READY=1.
The main loop pings the systemd watchdog and watches the stop flag, which only the
signal handlers set. Stop, in this order: STOPPING=1 -> stop intake (pullers finish and
spool their in-flight batch; push answers 503) -> publish what is spooled -> close the
HTTP server last. A second signal forces an immediate exit.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry

from daemon import lease, retention
from daemon.budget import SlidingWindowBudget
from daemon.docplanner import DocPlannerApi, DocPlannerPuller, PullExpander
from daemon.errors import EXIT_FATAL, EXIT_OK, InvariantError
from daemon.metrics import Metrics, StreamLengthCollector
from daemon.publisher import Publisher
from daemon.redisconn import RedisClient
from daemon.server import DrainerHTTPServer, PushEndpoint
from daemon.settings import DocPlannerAccount, Settings
from daemon.signals import SignalFlag
from daemon.sink import RedisSink, connect
from daemon.spool import SpoolBudget, SpoolLog
from daemon.systemd import Notifier
from daemon.upstream import UpstreamClient
from daemon.worker import Worker, drive

log = structlog.get_logger("daemon.runtime")

STOP_BUDGET = 20.0  # SPEC §5: exit within 20 s of SIGTERM
INTAKE_JOIN = 12.0  # an in-flight pull has a 10 s read timeout
WATCHDOG_EVERY = 2.0
MAIN_SLICE = 0.2
SWITCH_INTERVAL = 0.001


def spool_dir(settings: Settings, source: str, account: str) -> Path:
    return settings.spool.dir / f"{source}-{account}"


@dataclass
class Context:
    """Everything the workers of one process share."""

    settings: Settings
    metrics: Metrics
    registry: CollectorRegistry
    redis: RedisClient
    sink: RedisSink
    spool_budget: SpoolBudget
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    publishers: dict[str, Publisher] = field(default_factory=dict)
    spools: dict[str, SpoolLog] = field(default_factory=dict)
    push: dict[str, PushEndpoint] = field(default_factory=dict)
    docplanner_apis: dict[str, DocPlannerApi] = field(default_factory=dict)
    intake: list[Worker] = field(default_factory=list)
    clients: list[UpstreamClient] = field(default_factory=list)
    accepting: threading.Event = field(default_factory=threading.Event)


def build_context(settings: Settings, registry: CollectorRegistry | None = None) -> Context:
    registry = registry or CollectorRegistry()
    accounts = [("docplanner", a.name) for a in settings.docplanner]
    accounts += [("myinvois", a.name) for a in settings.myinvois]
    metrics = Metrics(registry, accounts)
    client = connect(settings.redis)
    sink = RedisSink(client, settings.redis.dedupe_window, settings.redis.stream_maxlen)
    streams = settings.streams
    registry.register(
        StreamLengthCollector(
            lambda: sink.stream_lengths([streams.docplanner, streams.myinvois, streams.deadletter])
        )
    )
    ctx = Context(settings, metrics, registry, client, sink, SpoolBudget(settings.spool.max_bytes))
    for account in settings.docplanner:
        _add_docplanner(ctx, account)
    _add_extensions(ctx)
    lease.install(ctx)  # leases = true: intake works only while holding its lease
    retention.install(ctx)
    return ctx


def _add_docplanner(ctx: Context, account: DocPlannerAccount) -> None:
    settings = ctx.settings
    spool = SpoolLog(spool_dir(settings, "docplanner", account.name), ctx.spool_budget)
    publisher = Publisher(
        "docplanner",
        account.name,
        spool,
        ctx.sink,
        ctx.metrics,
        settings.streams.deadletter,
        ctx.wall_clock,
        expand=PullExpander(
            account.name,
            settings.streams.docplanner,
            settings.streams.deadletter,
            ctx.metrics,
            ctx.wall_clock,
        ),
    )
    ctx.spools[account.name] = spool
    ctx.publishers[f"docplanner:{account.name}"] = publisher
    if spool.pending_events:
        log.info("spool.replay", account=account.name, pending_events=spool.pending_events)
    budget = SlidingWindowBudget(account.requests_per_hour, 3600.0)
    http = UpstreamClient(
        "docplanner", account.name, ctx.metrics, budget, ctx.clock, budgeted={"notifications"}
    )
    ctx.clients.append(http)
    api = DocPlannerApi(account, http)
    ctx.docplanner_apis[account.name] = api
    if account.pulls:
        ctx.intake.append(
            DocPlannerPuller(
                account,
                api,
                spool,
                ctx.spool_budget,
                ctx.metrics,
                settings.streams.docplanner,
                settings.streams.deadletter,
                budget,
                on_spooled=publisher.wake.set,
                wall_clock=ctx.wall_clock,
            )
        )


def _add_extensions(ctx: Context) -> None:
    """Sources that live in their own modules: push/release and MyInvois."""
    for name in ("daemon.push", "daemon.myinvois"):
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:
            continue
        module.install(ctx)


class Runtime:
    """Owns the threads of ``drainer run``."""

    def __init__(self, ctx: Context, notifier: Notifier) -> None:
        self.ctx = ctx
        self.notifier = notifier
        self.signals = SignalFlag()  # counted by the signal handlers (see daemon.signals)
        self.fatal: InvariantError | None = None  # set by a worker thread; read by run()
        self.stop_requested = threading.Event()
        self.intake_stop = threading.Event()
        self.publish_stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._publisher_threads: list[threading.Thread] = []
        self._last_loop = time.monotonic()
        settings = ctx.settings
        self.server = DrainerHTTPServer(
            (settings.server.host, settings.server.port),
            ctx.registry,
            self.alive,
            self.readiness,
            ctx.push,
        )

    # --- health --------------------------------------------------------------------------

    def alive(self) -> bool:
        return time.monotonic() - self._last_loop < 30.0

    def readiness(self) -> tuple[bool, dict[str, Any]]:
        reasons: dict[str, Any] = {}
        if not self.ctx.sink.ping():
            reasons["redis"] = "redis is not answering"
        now = self.ctx.clock()
        workers: list[Worker] = [*self.ctx.intake, *self.ctx.publishers.values()]
        for worker in workers:
            if worker.health.overdue(now):
                reasons[worker.name] = worker.health.last_error or "failing"
            if worker.health.detail.get("not_ready"):
                reasons[worker.name] = str(worker.health.detail["not_ready"])
        if self.stop_requested.is_set():
            reasons["shutdown"] = "stopping"
        detail: dict[str, Any] = {"not_ready": reasons} if reasons else {}
        if self.ctx.settings.redis.leases:
            detail["leases"] = lease.holders(self.ctx)
        return (not reasons, detail)

    # --- lifecycle -----------------------------------------------------------------------

    def _spawn(self, worker: Worker, stop: threading.Event, wake: threading.Event | None) -> None:
        thread = threading.Thread(
            target=drive,
            args=(worker, stop, wake, self.ctx.clock),
            kwargs={"on_fatal": self._on_fatal},
            name=worker.name,
            daemon=True,
        )
        thread.start()
        (self._publisher_threads if stop is self.publish_stop else self._threads).append(thread)

    def _on_fatal(self, exc: InvariantError) -> None:
        self.fatal = exc  # a plain assignment: the main loop notices within MAIN_SLICE

    def run(self) -> int:
        ctx = self.ctx
        # The puller waits on the network and must get the GIL back at once when its
        # response arrives, not after the publisher's 5 ms default time slice.
        sys.setswitchinterval(SWITCH_INTERVAL)
        ctx.metrics.up.set(1)
        for publisher in ctx.publishers.values():
            self._spawn(publisher, self.publish_stop, publisher.wake)
        self.server.start()
        ctx.accepting.set()
        for worker in ctx.intake:
            self._spawn(worker, self.intake_stop, None)
        self.notifier.notify("READY=1")
        log.info(
            "runtime.started",
            listen=f"{ctx.settings.server.host}:{self.server.port}",
            docplanner=[a.name for a in ctx.settings.docplanner],
            myinvois=[a.name for a in ctx.settings.myinvois],
        )
        last_watchdog = 0.0
        while not self.stop_requested.is_set() and not self.signals.count and not self.fatal:
            self._last_loop = time.monotonic()
            if self._last_loop - last_watchdog >= WATCHDOG_EVERY:
                self.notifier.notify("WATCHDOG=1")
                last_watchdog = self._last_loop
            self.signals.sleep(MAIN_SLICE)
        self.stop_requested.set()
        return self.shutdown()

    def shutdown(self) -> int:
        started = time.monotonic()
        self.notifier.notify("STOPPING=1")
        log.info("runtime.stopping")
        self.ctx.accepting.clear()
        self.intake_stop.set()
        for thread in self._threads:
            thread.join(timeout=max(0.1, started + INTAKE_JOIN - time.monotonic()))
        lease.release_all(self.ctx)  # the other node takes over without waiting for the TTL
        self.publish_stop.set()
        for thread in self._publisher_threads:
            thread.join(timeout=2.0)
        left = 0
        deadline = started + STOP_BUDGET - 2.0
        for publisher in self.ctx.publishers.values():
            try:
                drained = publisher.drain(deadline)
            except InvariantError:
                drained = False
            if not drained:
                left += publisher.spool.pending_events
        self.ctx.metrics.up.set(0)
        self.server.stop()
        for client in self.ctx.clients:
            client.close()
        self.ctx.redis.close()
        log.info(
            "runtime.stopped",
            seconds=round(time.monotonic() - started, 3),
            unpublished_left_in_spool=left,
        )
        if self.fatal is not None:
            log.error("runtime.fatal", error=str(self.fatal))
            return EXIT_FATAL
        return EXIT_OK
