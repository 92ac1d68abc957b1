"""Durable publish: what a Redis node must acknowledge before a spool record is released.

``XADD`` succeeding on a master does not make the entry survive a failover: replication
is asynchronous. After the writes of a publish call, on the same connection, the sink
sends ``WAIT numreplicas timeout`` (and ``WAITAOF 1 0 timeout`` for the local AOF fsync
where the server has it, Redis >= 7.2) and releases the record only if enough acknowledged.

``[redis] durability`` (SPEC §2 "Durable publish"):

- ``auto`` (default): Sentinel, or a master that reports connected replicas -> wait for
  ``wait_replicas`` (auto = 1) replicas; a node without replicas -> no wait, and one
  warning at start that a Redis crash can lose the last writes. Cluster: per shard.
- ``replicas``: always ``WAIT wait_replicas`` (auto = 1), whatever the node reports.
- ``aof``: ``WAITAOF 1 0``: the master's own AOF fsync, plus ``WAIT N`` for N replicas
  (auto = 1 where there are replicas, else 0). Needs Redis >= 7.2 with ``appendonly yes``.
- ``none``: no wait (the behaviour before durable publish).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import redis
import structlog

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

    @classmethod
    def from_settings(cls, settings: RedisSettings) -> Policy:
        replicas = settings.wait_replicas
        return cls(
            settings.durability,
            None if replicas == "auto" else int(replicas),
            settings.wait_timeout,
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

    replicas: int = 0
    local_aof: bool = False
    timeout_ms: int = 1000

    @property
    def active(self) -> bool:
        return self.local_aof or self.replicas > 0

    def commands(self) -> list[tuple[Any, ...]]:
        """Sent after the writes, on their connection. ``WAITAOF 1 0`` for the local fsync
        beside ``WAIT n`` for the replicas: ``WAITAOF 1 n`` would wait ~1 s per call for the
        replicas' once-a-second fsync report."""
        out: list[tuple[Any, ...]] = []
        if self.replicas:
            out.append(("WAIT", self.replicas, self.timeout_ms))
        if self.local_aof:
            out.append(("WAITAOF", 1, 0, self.timeout_ms))
        return out

    def shortfall(self, replies: list[Any]) -> str | None:
        """None when the replies to :meth:`commands` are enough, else what was missing."""
        missing = []
        if self.replicas:
            acked = int(replies[0])
            if acked < self.replicas:
                missing.append(f"WAIT: {acked}/{self.replicas} replicas acknowledged")
        if self.local_aof:
            local = int(replies[-1][0])
            if local < 1:
                missing.append("WAITAOF: the local AOF fsync was not confirmed")
        return "; ".join(missing) or None

    def describe(self) -> str:
        if self.local_aof:
            return (
                f"WAITAOF 1 0 + WAIT {self.replicas} (local AOF fsync + {self.replicas} replicas)"
            )
        if self.replicas:
            return f"WAIT {self.replicas} (replica acknowledgement)"
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
    has_replicas = topology == "sentinel" or facts.connected_replicas > 0
    wanted = policy.wait_replicas
    if policy.mode == "none":
        return NO_WAIT
    if policy.mode == "replicas":
        return Wait(replicas=1 if wanted is None else wanted, timeout_ms=timeout_ms)
    if policy.mode == "aof":
        if not facts.waitaof:
            raise RedisCommandError(
                f'redis.durability = "aof" needs WAITAOF (Redis >= 7.2); '
                f"the server is {facts.version}"
            )
        if not facts.aof_enabled:
            raise RedisCommandError('redis.durability = "aof" needs appendonly yes on the server')
        replicas = wanted if wanted is not None else (1 if has_replicas else 0)
        return Wait(replicas=replicas, local_aof=True, timeout_ms=timeout_ms)
    if has_replicas:
        return Wait(replicas=1 if wanted is None else wanted, timeout_ms=timeout_ms)
    return NO_WAIT


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
    if warn and not wait.active and policy.mode == "auto":
        log.warning("redis.durability_weak", node=node or None, detail=NO_REPLICA_WARNING)
        return True
    return False
