"""The Redis sink: idempotent, atomic publishing of stream entries (SPEC §2, §3).

One Lua call per run of entries for the same stream: for each entry whose seen key does not
exist, ``XADD`` (with an approximate MAXLEN trim) and then ``SET seen-key PX window``. The seen
key and the stream share a hash slot (see :func:`related_key`), so this works on Redis
Cluster; the script is atomic, so a crash can never leave a seen key without its entry.
Works on Redis 6.2+ (``XADD ... MAXLEN ~``, ``SET ... NX PX``).

Durable publish (:mod:`.durability`): the script calls of one publish (and the MyInvois
watermark) go to each master in ONE non-transactional pipeline that ends with ``WAIT`` (or
``WAITAOF``), so the wait covers exactly this connection's writes; on a cluster, one
pipeline per shard. A run whose entries were all seen before still writes a marker key, so
a retry on a fresh connection waits for the earlier attempt's entries too (a connection
that wrote nothing gets an immediate, meaningless WAIT reply). Fewer acknowledgements
than asked raise :class:`DurabilityError`: the record stays spooled and is republished;
the event ids keep that exactly once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import redis
from redis.client import Pipeline
from redis.commands.core import Script

from daemon.envelope.entries import StreamEntry
from daemon.errors import DurabilityError
from daemon.settings import RedisSettings, Settings
from daemon.sink.connect import RedisClient, describe
from daemon.sink.connect import connect as build_client
from daemon.sink.deferred import as_cluster
from daemon.sink.durability import (
    NO_WAIT,
    NodeFacts,
    Policy,
    ReplicationWatch,
    Topology,
    Wait,
    announce,
    node_facts,
    online_replicas,
    resolve,
)
from daemon.sink.failures import REDIS_ERRORS, translate
from daemon.sink.keys import related_key, watermark_key
from daemon.sink.scripts import PUBLISH_SCRIPT, WATERMARK_SCRIPT

# Kept for importers of the old name: every Redis error; daemon.sink.failures classifies them.
TRANSIENT_REDIS_ERRORS = REDIS_ERRORS


@dataclass(frozen=True, slots=True)
class PublishResult:
    published: int
    duplicates: int
    published_by_stream: dict[str, int]
    duplicates_by_stream: dict[str, int]


def connect(target: RedisSettings | str, timeout: float | None = None) -> RedisClient:
    """A client for the ``[redis]`` settings (or a bare url): one node, Sentinel, Cluster, TLS.

    See :mod:`daemon.sink.connect`: the settings' timeouts and retry policy, unless
    ``timeout`` overrides both timeouts.
    """
    settings = RedisSettings(url=target) if isinstance(target, str) else target
    return build_client(settings, timeout)


@dataclass(frozen=True, slots=True)
class WatermarkUpdate:
    """Move ``account``'s watermark (beside ``stream``) to ``moment``, never back."""

    stream: str
    account: str
    moment: datetime


Node = tuple[str, redis.Redis]  # (name, client of that one master)


class RedisSink:
    """Publishes entries exactly once per de-duplication window, durably as configured.

    ``dedupe_window`` is the default; ``windows`` maps a stream to its own window (the
    MyInvois stream keeps its seen-keys ``dedupe_window_myinvois``, 35 days by default).
    ``durability`` is what a publish waits for (:mod:`.durability`); None = no wait.
    """

    def __init__(
        self,
        client: RedisClient,
        dedupe_window: float,
        stream_maxlen: int,
        windows: Mapping[str, float] | None = None,
        durability: Policy | None = None,
    ) -> None:
        self.client = client
        self._cluster = as_cluster(client)  # None: one node or Sentinel
        self._windows_ms = {stream: max(1, int(w * 1000)) for stream, w in (windows or {}).items()}
        self.policy = durability or Policy()
        self.topology = cast(Topology, describe(client))
        self._window_ms = max(1, int(dedupe_window * 1000))
        self._maxlen = stream_maxlen
        self._publish: Script = client.register_script(PUBLISH_SCRIPT)
        self._watermark: Script = client.register_script(WATERMARK_SCRIPT)
        self._waits: dict[str, Wait] = {}  # per master; a follow wait tracks its replicas
        expected = self.topology == "sentinel" or self.policy.min_replicas > 0
        self.replication = ReplicationWatch(expected)  # registered by the runtime
        self._refresh_slots = False
        self._warned = False  # the "no replica wait" warning is logged once

    @classmethod
    def configured(cls, client: RedisClient, settings: Settings) -> RedisSink:
        """The sink ``drainer run`` and ``drainer backfill`` publish through, as configured."""
        redis = settings.redis
        return cls(
            client,
            redis.dedupe_window,
            redis.publish_maxlen,
            {settings.streams.myinvois: redis.dedupe_window_myinvois},
            Policy.from_settings(redis),
        )

    # --- durability ----------------------------------------------------------------------

    def detect(self) -> list[tuple[str, Wait, NodeFacts | None]]:
        """Decide (once per master) and return the wait in force for every master."""
        try:
            masters = self.masters()
            return [(name, *self._wait_for(name, node)) for name, node in masters]
        except REDIS_ERRORS as exc:
            raise translate(exc, "durability detection") from exc

    def _wait_for(self, name: str, node: redis.Redis) -> tuple[Wait, NodeFacts | None]:
        wait = self._waits.get(name)
        if wait is not None:
            return wait, None
        facts = None
        if self.policy.mode == "none":
            wait = NO_WAIT
        else:
            facts = node_facts(node)
            wait = resolve(self.policy, self.topology, facts)
            if wait.follow:
                self.replication.observe(name, facts.connected_replicas)
        self._waits[name] = wait
        warned = announce(name, self.topology, self.policy, wait, facts, not self._warned)
        self._warned = self._warned or warned
        return wait, facts

    def masters(self) -> list[Node]:
        """(name, client) of every master: one, or each shard's on Cluster."""
        cluster = self._cluster
        if cluster is not None:
            return [
                (n.name, cluster.get_redis_connection(n))
                for n in cluster.get_primaries()  # type: ignore[no-untyped-call,unused-ignore]
            ]
        assert isinstance(self.client, redis.Redis)
        return [("", self.client)]

    def _node_for(self, key: str) -> Node:
        cluster = self._cluster
        if cluster is not None:
            node = cluster.get_node_from_key(key)  # type: ignore[no-untyped-call,unused-ignore]
            return node.name, cluster.get_redis_connection(node)
        assert isinstance(self.client, redis.Redis)
        return "", self.client

    # --- publishing ----------------------------------------------------------------------

    def publish(
        self, entries: Sequence[StreamEntry], watermark: WatermarkUpdate | None = None
    ) -> PublishResult:
        """Publish in order, then the watermark; return once durable as configured.

        Raises SinkError (retry later; DurabilityError when too few acknowledged) or
        RedisCommandError (retrying will not help).
        """
        published: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        try:
            if self._refresh_slots and self._cluster is not None:
                self._cluster.nodes_manager.initialize()
            self._refresh_slots = False
            plan: dict[str, tuple[redis.Redis, list[tuple[str, list[StreamEntry]]]]] = {}
            for stream, run in _runs(entries):
                name, node = self._node_for(stream)
                plan.setdefault(name, (node, []))[1].append((stream, run))
            for name, (node, runs) in plan.items():
                wait, _ = self._wait_for(name, node)
                pipe = node.pipeline(transaction=False)
                for stream, run in runs:
                    self._queue_run(pipe, stream, run, wait.active)
                replies = self._execute_durably(pipe, wait, name)
                for (stream, run), flags in zip(runs, replies, strict=False):
                    added = sum(int(flag) for flag in flags)
                    published[stream] = published.get(stream, 0) + added
                    duplicates[stream] = duplicates.get(stream, 0) + len(run) - added
            if watermark is not None:
                # Only once every entry is in Redis, durably: a failed run above raised, so
                # the watermark never moves past a window that is not wholly published.
                key = watermark_key(watermark.stream, watermark.account)
                name, node = self._node_for(key)
                wait, _ = self._wait_for(name, node)
                pipe = node.pipeline(transaction=False)
                moment = f"{watermark.moment.timestamp():.6f}"
                self._watermark(keys=[key], args=[moment], client=pipe)
                self._execute_durably(pipe, wait, name)
        except REDIS_ERRORS as exc:
            self._refresh_slots = True
            if isinstance(exc, redis.ReadOnlyError) and isinstance(self.client, redis.Redis):
                # A plain url (DNS name, VIP) still pointing at a demoted master: reconnect.
                self.client.connection_pool.disconnect()
            raise translate(exc, "publish") from exc
        return PublishResult(
            sum(published.values()), sum(duplicates.values()), published, duplicates
        )

    def _execute_durably(self, pipe: Pipeline, wait: Wait, name: str) -> list[Any]:
        """Send what is queued, then the wait, on one connection; DurabilityError if short."""
        checks = wait.commands()
        for command in checks:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call,unused-ignore]
        replies: list[Any] = pipe.execute()
        if wait.follow:  # the next call waits for the replicas the master reported now
            self.replication.observe(name, online_replicas(replies[-len(checks)]))
            self._waits[name] = replace(wait, replicas=wait.required(replies[-len(checks) :]))
        shortfall = wait.shortfall(replies[-len(checks) :]) if checks else None
        if shortfall is not None:
            raise DurabilityError(f"redis entries not durable in time: {shortfall}")
        return replies

    def _queue_run(self, pipe: Pipeline, stream: str, run: list[StreamEntry], force: bool) -> None:
        keys = [
            stream,
            related_key(stream, "durable"),
            *(related_key(stream, f"seen:{e.event_id}") for e in run),
        ]
        window = self._windows_ms.get(stream, self._window_ms)
        args: list[str | int] = [window, self._maxlen, 1 if force else 0]
        names: tuple[str, ...] = ()
        for entry in run:
            fields = tuple(entry.fields)
            if fields == names:
                args.append(0)  # the same field names as the entry before
            else:
                names = fields
                args.append(len(names))
                args.extend(names)
            args.extend(entry.fields.values())
        self._publish(keys=keys, args=args, client=pipe)

    def ping(self) -> bool:
        """True when Redis answers PING (blocks up to the socket timeout: never on a request
        path; /readyz and /metrics read :class:`daemon.sink.health.RedisProbe` instead)."""
        try:
            return bool(self.client.ping())
        except REDIS_ERRORS:
            return False

    def dedupe_window(self, stream: str) -> float:
        """Seconds a published event_id of ``stream`` is remembered."""
        return self._windows_ms.get(stream, self._window_ms) / 1000

    def stream_lengths(self, streams: Iterable[str]) -> list[tuple[str, int]]:
        try:
            return [(stream, int(self.client.xlen(stream))) for stream in streams]
        except REDIS_ERRORS as exc:
            raise translate(exc, "read") from None

    # --- MyInvois watermarks: stored beside the stream, in its hash slot ------------------

    def get_watermark(self, stream: str, account: str) -> datetime | None:
        try:
            raw = self.client.get(watermark_key(stream, account))
        except REDIS_ERRORS as exc:
            raise translate(exc, "read") from None
        if raw is None:
            return None
        return datetime.fromtimestamp(float(raw), tz=UTC)

    def advance_watermark(self, stream: str, account: str, moment: datetime) -> None:
        """Move the watermark forward only (never back), atomically and durably."""
        self.publish([], WatermarkUpdate(stream, account, moment))


def _runs(entries: Sequence[StreamEntry]) -> Iterable[tuple[str, list[StreamEntry]]]:
    """Consecutive entries grouped by stream, order kept."""
    run: list[StreamEntry] = []
    for entry in entries:
        if run and entry.stream != run[0].stream:
            yield run[0].stream, run
            run = []
        run.append(entry)
    if run:
        yield run[0].stream, run
