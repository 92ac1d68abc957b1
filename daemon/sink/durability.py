"""Durable publish: what a Redis node must acknowledge before a spool record is released.

``XADD`` succeeding on a master does not make the entry survive a failover: replication
is asynchronous. After the writes of a publish call, on the same connection, the sink
sends ``WAIT numreplicas timeout`` (and ``WAITAOF 1 0 timeout`` for the local AOF fsync
where the server has it, Redis >= 7.2) and releases the record only if enough acknowledged.

Which replicas: the ones the master has *connected* (Kafka's ``acks=all`` over the
in-sync replicas, with ``min_replicas`` as ``min.insync.replicas``). Each publish pipeline
asks the master ``INFO replication`` right before its ``WAIT``; the record is released
when every replica online at that moment acknowledged (at most ``wait_replicas`` when it
is a number), and never with fewer than ``min_replicas`` online. So a lagging replica that
is still connected is waited for (the record stays spooled until it catches up), while a
master left without replicas by a failover goes on publishing alone, unless the operator
asked for ``min_replicas``. The ``WAIT`` count of the next call follows what the master
reported; a call that waited for too few (a replica just joined) is simply retried.

``[redis] durability`` (SPEC §2 "Durable publish"):

- ``auto`` (default): wait for the connected replicas as above (Sentinel, one node or
  per Cluster shard alike); a node without replicas -> no wait, and one warning at start
  that a Redis crash can lose the last writes.
- ``replicas``: always ``WAIT wait_replicas`` (auto = 1), whatever the node reports.
- ``aof``: ``WAITAOF 1 0``: the master's own AOF fsync, plus the connected replicas as in
  ``auto``. Needs Redis >= 7.2 with ``appendonly yes``.
- ``none``: no wait (the behaviour before durable publish).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal

import redis
import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from daemon.errors import RedisCommandError

if TYPE_CHECKING:
    from daemon.settings import RedisSettings

log = structlog.get_logger("daemon.sink")

Mode = Literal["auto", "none", "replicas", "aof"]
Topology = Literal["single", "sentinel", "cluster"]

NO_REPLICA_WARNING = (
    "no replica and no AOF wait: a Redis crash can lose the last writes the daemon has "
    "already released; add a replica (Sentinel), or run Redis >= 7.2 with appendonly yes "
    'and set [redis] durability = "aof" (WAITAOF)'
)


@dataclass(frozen=True, slots=True)
class Policy:
    """The ``[redis]`` durability settings."""

    mode: Mode = "none"
    wait_replicas: int | None = None  # None = auto
    timeout: float = 1.0
    min_replicas: int = 0  # connected replicas below which nothing is released

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> Policy:
        replicas = settings.wait_replicas
        return cls(
            settings.durability,
            None if replicas == "auto" else int(replicas),
            settings.wait_timeout,
            settings.min_replicas,
        )


@dataclass(frozen=True, slots=True)
class NodeFacts:
    """What a master node says about itself (INFO; WAITAOF support from its version)."""

    version: str
    connected_replicas: int
    waitaof: bool
    aof_enabled: bool


@dataclass(frozen=True, slots=True)
class Wait:
    """The acknowledgement one node's writes need: replicas (WAIT) and/or local AOF (WAITAOF)."""

    replicas: int = 0  # the WAIT count (with ``follow``: what the master last reported)
    local_aof: bool = False
    timeout_ms: int = 1000
    follow: bool = False  # wait for the replicas the master has connected (auto, aof)
    cap: int | None = None  # follow: at most this many (wait_replicas as a number)
    min_replicas: int = 0  # follow: fewer connected than this releases nothing

    @property
    def active(self) -> bool:
        return self.follow or self.local_aof or self.replicas > 0

    def commands(self) -> list[tuple[Any, ...]]:
        """Sent after the writes, on their connection. ``WAITAOF 1 0`` for the local fsync
        beside ``WAIT n`` for the replicas: ``WAITAOF 1 n`` would wait ~1 s per call for the
        replicas' once-a-second fsync report. ``follow`` asks ``INFO replication`` first."""
        out: list[tuple[Any, ...]] = []
        if self.follow:
            out.append(("INFO", "replication"))
        if self.replicas or self.follow:
            out.append(("WAIT", self.replicas, self.timeout_ms))
        if self.local_aof:
            out.append(("WAITAOF", 1, 0, self.timeout_ms))
        return out

    def required(self, replies: list[Any]) -> int:
        """The acknowledgements this call needs: the connected replicas (``follow``) or N."""
        if not self.follow:
            return self.replicas
        online = online_replicas(replies[0])
        return online if self.cap is None else min(online, self.cap)

    def shortfall(self, replies: list[Any]) -> str | None:
        """None when the replies to :meth:`commands` are enough, else what was missing."""
        missing = []
        if self.follow:
            online = online_replicas(replies[0])
            if online < self.min_replicas:
                missing.append(f"{online} replicas connected, min_replicas is {self.min_replicas}")
        if self.replicas or self.follow:
            acked = int(replies[1 if self.follow else 0])
            needed = self.required(replies)
            if acked < needed:
                missing.append(f"WAIT: {acked}/{needed} replicas acknowledged")
        if self.local_aof:
            local = int(replies[-1][0])
            if local < 1:
                missing.append("WAITAOF: the local AOF fsync was not confirmed")
        return "; ".join(missing) or None

    def describe(self) -> str:
        replicas = (
            f"WAIT for the connected replicas (now {self.replicas}"
            + (f", at most {self.cap}" if self.cap is not None else "")
            + (f", at least {self.min_replicas} connected" if self.min_replicas else "")
            + ")"
            if self.follow
            else f"WAIT {self.replicas} (replica acknowledgement)"
        )
        if self.local_aof:
            return f"WAITAOF 1 0 (local AOF fsync) + {replicas}"
        if self.replicas or self.follow:
            return replicas
        return "none"


NO_WAIT = Wait()


def node_facts(node: redis.Redis) -> NodeFacts:
    """Ask one master for its version, replicas, AOF and WAITAOF support (one ``INFO``)."""
    info = node.info()  # the default sections include server, replication and persistence
    version = str(info.get("redis_version", "?"))
    return NodeFacts(
        version=version,
        connected_replicas=int(info.get("connected_slaves", 0)),
        waitaof=_version(version if version != "?" else "0") >= (7, 2),
        aof_enabled=bool(int(info.get("aof_enabled", 0))),
    )


def online_replicas(info: Any) -> int:
    """Replicas an ``INFO replication`` reply lists as ``state=online`` (WAIT counts only
    those; one still loading its first sync is listed but not yet online)."""
    if not isinstance(info, dict):
        return 0
    return sum(
        1
        for key, value in info.items()
        if str(key).startswith("slave")
        and isinstance(value, dict)
        and str(value.get("state", "")) == "online"
    )


def _version(text: str) -> tuple[int, ...]:
    """``7.0.15`` -> (7, 0, 15); WAITAOF came with 7.2 (Valkey reports 7.2.4 here)."""
    parts = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def resolve(policy: Policy, topology: Topology, facts: NodeFacts) -> Wait:
    """The wait for one master (one shard on a cluster); RedisCommandError if impossible."""
    timeout_ms = max(1, int(policy.timeout * 1000))
    wanted = policy.wait_replicas
    if policy.mode == "none":
        return NO_WAIT
    if policy.mode == "replicas":
        return Wait(replicas=1 if wanted is None else wanted, timeout_ms=timeout_ms)
    now = facts.connected_replicas if wanted is None else min(facts.connected_replicas, wanted)
    follow = Wait(now, False, timeout_ms, True, wanted, policy.min_replicas)
    if policy.mode == "aof":
        if not facts.waitaof:
            raise RedisCommandError(
                f'redis.durability = "aof" needs WAITAOF (Redis >= 7.2); '
                f"the server is {facts.version}"
            )
        if not facts.aof_enabled:
            raise RedisCommandError('redis.durability = "aof" needs appendonly yes on the server')
        return replace(follow, local_aof=True)
    return follow


def announce(
    node: str, topology: Topology, policy: Policy, wait: Wait, facts: NodeFacts | None, warn: bool
) -> bool:
    """The start-up line saying what durability is in force (one per shard on a cluster).

    Plus, when ``warn``, the one warning that a node has no replica wait; True if logged.
    """
    fields: dict[str, Any] = {"topology": topology, "mode": policy.mode, "wait": wait.describe()}
    if node:
        fields["node"] = node
    if facts is not None:
        fields.update(
            redis_version=facts.version,
            replicas=facts.connected_replicas,
            aof=facts.aof_enabled,
            waitaof_supported=facts.waitaof,
        )
    log.info("redis.durability", **fields)
    if warn and not wait.replicas and not wait.local_aof and policy.mode == "auto":
        log.warning("redis.durability_weak", node=node or None, detail=NO_REPLICA_WARNING)
        return True
    return False


def refresh_replication(
    masters: Iterable[tuple[str, redis.Redis]], watch: ReplicationWatch
) -> None:
    """Ask each master for its online replicas (the background probe, every few seconds),
    so a quiet daemon notices a master left alone without waiting for a publish."""
    for name, node in masters:
        watch.observe(name, online_replicas(node.info("replication")))


class ReplicationWatch(Collector):
    """What the masters said about their replicas (each publish, the probe), for Prometheus.

    ``drainer_redis_connected_replicas{node}`` (``node`` is ``master`` for one node or
    Sentinel, the shard's master on Cluster) and ``drainer_redis_masters_without_replicas``:
    masters publishing with no replica online although replication is expected (Sentinel,
    ``min_replicas`` > 0, or a master had replicas before): after a failover to a master
    whose replicas are gone, publishing goes on alone and an alert says so.
    """

    def __init__(self, expected: bool = False) -> None:
        self.expected = expected
        self._online: dict[str, int] = {}
        self._lock = threading.Lock()

    def observe(self, node: str, online: int) -> None:
        with self._lock:
            self._online[node or "master"] = online
            self.expected = self.expected or online > 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self._lock:
            online, expected = dict(self._online), self.expected
        connected = GaugeMetricFamily(
            "drainer_redis_connected_replicas",
            "Replicas online on the master (INFO replication at each publish and every 5 s).",
            labels=["node"],
        )
        for node, count in sorted(online.items()):
            connected.add_metric([node], float(count))
        alone = GaugeMetricFamily(
            "drainer_redis_masters_without_replicas",
            "Masters publishing without any replica online although replication is expected"
            " (Sentinel, min_replicas, or replicas seen before): writes are not replicated.",
        )
        alone.add_metric([], float(sum(1 for n in online.values() if n == 0) if expected else 0))
        yield connected
        yield alone
