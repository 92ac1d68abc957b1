"""Builds every part of ``drainer run`` from the one ``Settings`` object, with plain imports.

Per DocPlanner account: a spool, a publisher (spool -> sink), an API client, a puller
(``mode`` pull/both), a push receiver and a release scheduler (``mode`` push/both).
Per MyInvois account: a spool, a publisher that also advances the watermark, an API
client and a poller. Then, as configured: leases around the intake workers, and a
retention worker. Nothing is loaded by name: a missing module is an ImportError at start.

Every source hands its batches to its spool; only publishers (through the sink) and the
sink's lease and retention workers talk to Redis.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from prometheus_client import CollectorRegistry

from daemon.errors import ConfigError, RedisCommandError, SinkError
from daemon.metrics import Metrics, StreamLengthCollector
from daemon.metrics_groups import ConsumerGroupCollector
from daemon.metrics_process import register_process_metrics
from daemon.publisher import Publisher
from daemon.settings import DocPlannerAccount, MyInvoisAccount, Settings
from daemon.sink import RedisSink, connect, lease
from daemon.sink.connect import RedisClient
from daemon.sink.groups import read_groups
from daemon.sink.lease import Lease
from daemon.sink.retention import RetentionWorker
from daemon.sources.budget import SharedBudgets, SlidingWindowBudget
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.docplanner.expand import PullExpander
from daemon.sources.docplanner.pull import DocPlannerPuller
from daemon.sources.docplanner.push import PushReceiver
from daemon.sources.docplanner.release import ReleaseScheduler
from daemon.sources.http import UpstreamClient
from daemon.sources.myinvois.poll import MyInvoisPoller, build_api
from daemon.sources.myinvois.window import WatermarkCursor
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import Worker

log = structlog.get_logger("daemon.runtime.wiring")


@dataclass
class Parts:
    """Everything the threads of one process share; built once by :func:`build`."""

    settings: Settings
    metrics: Metrics
    registry: CollectorRegistry
    redis: RedisClient
    sink: RedisSink
    spool_budget: SpoolBudget
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    publishers: list[Publisher] = field(default_factory=list)
    push: dict[str, PushReceiver] = field(default_factory=dict)
    intake: list[Worker] = field(default_factory=list)
    clients: list[UpstreamClient] = field(default_factory=list)
    leases: dict[str, Lease] = field(default_factory=dict)
    accepting: threading.Event = field(default_factory=threading.Event)
    # Budgets by the upstream's unit of limiting (a MyInvois Client ID), shared by accounts.
    budgets: SharedBudgets = field(default_factory=SharedBudgets)


def detect_durability(sink: RedisSink) -> None:
    """Say at start what durability is in force; decided at the first publish if Redis is down."""
    try:
        sink.detect()
    except SinkError as exc:
        log.warning("redis.durability_pending", reason=str(exc))
    except RedisCommandError as exc:  # e.g. durability = "aof" on a server without WAITAOF
        raise ConfigError(str(exc)) from None


def build(settings: Settings, registry: CollectorRegistry | None = None) -> Parts:
    registry = registry or CollectorRegistry()
    accounts = [("docplanner", a.name) for a in settings.docplanner]
    accounts += [("myinvois", a.name) for a in settings.myinvois]
    metrics = Metrics(registry, accounts)
    register_process_metrics(registry)  # process_resident_memory_bytes vs. the unit's MemoryMax
    client = connect(settings.redis)
    streams = settings.streams
    sink = RedisSink.configured(client, settings)
    all_streams = [streams.docplanner, streams.myinvois, streams.deadletter]
    registry.register(StreamLengthCollector(lambda: sink.stream_lengths(all_streams)))
    limit = settings.redis.group_metrics_limit
    registry.register(ConsumerGroupCollector(lambda: read_groups(client, all_streams, limit)))
    for stream in all_streams:
        metrics.trimmed_unread.labels(stream=stream)
    parts = Parts(settings, metrics, registry, client, sink, SpoolBudget(settings.spool.max_bytes))
    for account in settings.docplanner:
        _add_docplanner(parts, account)
    for invois in settings.myinvois:
        _add_myinvois(parts, invois)
    if settings.redis.leases:  # intake works only while holding its account's lease
        parts.intake, parts.leases = lease.wrap(
            parts.intake,
            client,
            {"docplanner": streams.docplanner, "myinvois": streams.myinvois},
            settings.redis.lease_ttl,
            registry,
            parts.clock,
        )
    if settings.redis.retention != "maxlen":
        parts.intake.append(
            RetentionWorker(
                client,
                [streams.docplanner, streams.myinvois, streams.deadletter],
                settings.redis.retention,
                settings.redis.retention_age,
                wall_clock=parts.wall_clock,
                maxlen=settings.redis.stream_maxlen,
                on_trimmed_unread=lambda stream, n: metrics.trimmed_unread.labels(stream).inc(n),
            )
        )
    return parts


def _spool_and_publisher(
    parts: Parts,
    source: str,
    name: str,
    expand: PullExpander | None = None,
    watermark_stream: str | None = None,
) -> tuple[SpoolLog, Publisher]:
    spool = SpoolLog(parts.settings.spool.account_dir(source, name), parts.spool_budget)
    publisher = Publisher(
        source,
        name,
        spool,
        parts.sink,
        parts.metrics,
        parts.settings.streams.deadletter,
        parts.wall_clock,
        expand=expand,
        watermark_stream=watermark_stream,
        count_deadletters=watermark_stream is not None,
    )
    parts.publishers.append(publisher)
    if spool.pending_events:
        log.info("spool.replay", source=source, account=name, pending_events=spool.pending_events)
    return spool, publisher


def _add_docplanner(parts: Parts, account: DocPlannerAccount) -> None:
    streams = parts.settings.streams
    expand = PullExpander(
        account.name, streams.docplanner, streams.deadletter, parts.metrics, parts.wall_clock
    )
    spool, publisher = _spool_and_publisher(parts, "docplanner", account.name, expand=expand)
    budget = SlidingWindowBudget(account.requests_per_hour, 3600.0)
    # The GET budget governs only the pulls (see UpstreamClient): a release 429 waits for
    # release alone.
    http = UpstreamClient(
        "docplanner", account.name, parts.metrics, budget, parts.clock, budgeted={"notifications"}
    )
    parts.clients.append(http)
    api = DocPlannerApi(account, http)
    if account.pulls:
        parts.intake.append(
            DocPlannerPuller(
                account,
                api,
                spool,
                parts.spool_budget,
                parts.metrics,
                streams.docplanner,
                streams.deadletter,
                budget,
                on_spooled=publisher.wake.set,
                wall_clock=parts.wall_clock,
            )
        )
    if account.pushes:
        assert account.push_token is not None, "settings require push_token for push"
        parts.push[account.name] = PushReceiver(
            account.name,
            account.push_token.get_secret_value(),
            spool,
            parts.metrics,
            streams.docplanner,
            streams.deadletter,
            parts.accepting,
            on_spooled=publisher.wake.set,
            wall_clock=parts.wall_clock,
        )
        parts.intake.append(ReleaseScheduler(account, api, parts.metrics, parts.wall_clock))
        log.info("docplanner.push_enabled", account=account.name, mode=account.mode)


def _add_myinvois(parts: Parts, account: MyInvoisAccount) -> None:
    streams = parts.settings.streams
    spool, publisher = _spool_and_publisher(
        parts, "myinvois", account.name, watermark_stream=streams.myinvois
    )
    api = build_api(account, parts.metrics, parts.clock, parts.wall_clock, budgets=parts.budgets)
    parts.clients.append(api.http)
    cursor = WatermarkCursor(account, publisher.read_watermark, parts.metrics, parts.wall_clock)
    parts.intake.append(
        MyInvoisPoller(
            account,
            api,
            spool,
            parts.metrics,
            streams.myinvois,
            streams.deadletter,
            cursor,
            parts.wall_clock,
            on_spooled=publisher.wake.set,
        )
    )
