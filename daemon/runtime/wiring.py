"""Builds every part of ``drainer run`` from the one ``Settings`` object, with plain imports.

Per DocPlanner account: a spool, a publisher (spool -> sink), an API client, a puller
(``mode`` pull/both), a push receiver and a release scheduler (``mode`` push/both).
Per MyInvois account: a spool, a publisher that also advances the watermark, an API
client and a poller. Then, as configured: leases around the intake workers, and a
retention worker. Nothing is loaded by name: a missing module is an ImportError at start.
Each account's parts are one :class:`Account`, so a reload (``daemon.runtime.reload``)
can open, restart (same spool and publisher, new intake) or retire one alone.

Every source hands its batches to its spool; only publishers (through the sink) and the
sink's lease and retention workers talk to Redis.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog
from prometheus_client import CollectorRegistry

from daemon.envelope.batch import PullExpander
from daemon.errors import ConfigError, RedisCommandError, SinkError
from daemon.metrics import Metrics
from daemon.metrics.collectors import StreamLengthCollector
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.metrics.groups import ConsumerGroupCollector
from daemon.metrics.process import register_process_metrics
from daemon.publisher import Publisher
from daemon.runtime import leased
from daemon.runtime.parts import Account, Parts
from daemon.settings import DocPlannerAccount, MyInvoisAccount, Settings
from daemon.sink import RedisSink, connect, lease
from daemon.sink.durability import refresh_replication
from daemon.sink.health import ProbeAgeCollector, RedisProbe
from daemon.sink.retention import RetentionWorker
from daemon.sources.budget import SlidingWindowBudget
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.docplanner.pull import DocPlannerPuller
from daemon.sources.docplanner.push import PushReceiver
from daemon.sources.docplanner.release import ReleaseScheduler
from daemon.sources.http import UpstreamClient
from daemon.sources.myinvois.api import MyInvoisApi
from daemon.sources.myinvois.poll import MyInvoisPoller, build_api
from daemon.sources.myinvois.window import Cursor, WatermarkCursor
from daemon.spool import SpoolBudget, SpoolLog

log = structlog.get_logger("daemon.runtime.wiring")


def detect_durability(sink: RedisSink) -> None:
    """Say at start what durability is in force; decided at the first publish if Redis is down."""
    try:
        sink.detect()
    except SinkError as exc:
        log.warning("redis.durability_pending", reason=str(exc))
    except RedisCommandError as exc:  # e.g. durability = "aof" on a server without WAITAOF
        raise ConfigError(str(exc)) from None


def _replication_refresh(sink: RedisSink) -> Callable[[], None] | None:
    """What the Redis probe also asks: the masters' replicas, where the wait follows them."""
    if sink.policy.mode not in ("auto", "aof"):
        return None

    def refresh() -> None:
        refresh_replication(sink.masters(), sink.replication)

    return refresh


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
    limit = settings.redis.group_metrics_limit
    probe = RedisProbe(client, all_streams, limit, refresh=_replication_refresh(sink))
    registry.register(StreamLengthCollector(probe.lengths))
    registry.register(ConsumerGroupCollector(probe.groups))
    registry.register(ProbeAgeCollector(probe))
    registry.register(sink.replication)  # connected replicas, masters without replicas
    for stream in all_streams:
        metrics.trimmed_unread.labels(stream=stream)
    budget = SpoolBudget(settings.spool.max_bytes)
    parts = Parts(settings, metrics, registry, client, sink, budget, probe)
    if settings.redis.leases:  # intake works only while holding its account's lease
        parts.lease_token, parts.lease_gauge = lease.identity(), leased.lease_gauge(registry)
        log.info("lease.enabled", identity=parts.lease_token, ttl=settings.redis.lease_ttl)
    for dp in settings.docplanner:
        parts.attach(open_account(parts, dp))
    for mi in settings.myinvois:
        parts.attach(open_account(parts, mi))
    # The probe is a worker like the others; /readyz and /metrics read its cache.
    parts.intake = [*parts.intake, probe]
    if settings.redis.retention != "maxlen":
        parts.intake = [
            *parts.intake,
            RetentionWorker(
                client,
                [streams.docplanner, streams.myinvois, streams.deadletter],
                settings.redis.retention,
                settings.redis.retention_age,
                wall_clock=parts.wall_clock,
                maxlen=settings.redis.stream_maxlen,
                on_trimmed_unread=lambda stream, n: metrics.trimmed_unread.labels(stream).inc(n),
            ),
        ]
    return parts


def open_account(
    parts: Parts, settings: DocPlannerAccount | MyInvoisAccount, keep: Account | None = None
) -> Account:
    """Build one account's parts; ``keep`` (a restart) lends its spool and publisher."""
    if isinstance(settings, DocPlannerAccount):
        account = _docplanner(parts, settings, keep)
    else:
        account = _myinvois(parts, settings, keep)
    if parts.lease_token is not None:
        streams = parts.settings.streams
        account.intake, account.leases = leased.wrap(
            account.intake,
            parts.redis,
            {"docplanner": streams.docplanner, "myinvois": streams.myinvois},
            parts.settings.redis.lease_ttl,
            parts.registry,
            parts.clock,
            token=parts.lease_token,
            gauge=parts.lease_gauge,
        )
    return account


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
    if spool.pending_events:
        log.info("spool.replay", source=source, account=name, pending_events=spool.pending_events)
    return spool, publisher


def _docplanner(parts: Parts, account: DocPlannerAccount, keep: Account | None) -> Account:
    streams = parts.settings.streams
    if keep is None:
        intake = DocPlannerIntake(parts.metrics, account.name)
        expand = PullExpander(account.name, streams.docplanner, streams.deadletter, intake)
        spool, publisher = _spool_and_publisher(parts, "docplanner", account.name, expand=expand)
    else:
        spool, publisher = keep.spool, keep.publisher
    result = Account("docplanner", account, spool, publisher)
    budget = SlidingWindowBudget(account.requests_per_hour, 3600.0)
    # The GET budget governs only the pulls (see UpstreamClient): a release 429 waits for
    # release alone.
    http = UpstreamClient(
        "docplanner", account.name, parts.metrics, budget, parts.clock, budgeted={"notifications"}
    )
    result.clients.append(http)
    api = DocPlannerApi(account, http)
    if account.pulls:
        result.intake.append(
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
        result.push = PushReceiver(
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
        result.intake.append(ReleaseScheduler(account, api, parts.metrics, parts.wall_clock))
        log.info("docplanner.push_enabled", account=account.name, mode=account.mode)
    return result


def _myinvois(parts: Parts, account: MyInvoisAccount, keep: Account | None) -> Account:
    streams = parts.settings.streams
    if keep is None:
        spool, publisher = _spool_and_publisher(
            parts, "myinvois", account.name, watermark_stream=streams.myinvois
        )
    else:
        spool, publisher = keep.spool, keep.publisher
    result = Account("myinvois", account, spool, publisher)
    api = build_api(account, parts.metrics, parts.clock, parts.wall_clock, budgets=parts.budgets)
    result.clients.append(api.http)
    result.on_close.append(lambda: api.shared.leave(account.name))  # its place in line
    cursor = WatermarkCursor(account, publisher.read_watermark, parts.metrics, parts.wall_clock)
    result.intake.append(
        myinvois_poller(
            account,
            api,
            publisher,
            parts.metrics,
            streams.myinvois,
            streams.deadletter,
            cursor,
            wall_clock=parts.wall_clock,
        )
    )
    return result


def myinvois_poller(
    account: MyInvoisAccount,
    api: MyInvoisApi,
    publisher: Publisher,
    metrics: Metrics,
    stream: str,
    deadletter_stream: str,
    cursor: Cursor,
    wall_clock: Callable[[], float] = time.time,
    role: str = "poller",
) -> MyInvoisPoller:
    """The one MyInvois wiring (``drainer run``, ``drainer backfill`` and the benchmarks): a
    poller reading ``cursor``'s windows into ``publisher``'s spool, waking it per window."""
    return MyInvoisPoller(
        account, api, publisher.spool, metrics, stream, deadletter_stream, cursor, wall_clock,
        role=role, on_spooled=publisher.wake.set,
    )  # fmt: skip
