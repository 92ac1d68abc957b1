"""The one classification of Redis errors, used by every caller that talks to Redis.

Publishing, the watermark, leases, retention, the health probe behind ``/readyz`` and
``/metrics``, ``drainer status`` and the start-up checks all catch :data:`REDIS_ERRORS`
(everything redis-py raises for a failed command, on one node, through Sentinel or on a
Cluster) and ask :func:`is_transient` what it means:

- **transient** - Redis is away or busy and retrying will fix it: connection refused,
  reset or timed out, no master known to Sentinel (``MasterNotFoundError``), a cluster
  that cannot be reached or has uncovered slots (``RedisClusterUnreachableError``,
  ``SlotNotCoveredError``, ``CLUSTERDOWN``, ``MASTERDOWN``), a failover or a load in
  progress (``READONLY``, ``LOADING``, ``MOVED``, ``ASK``, ``TRYAGAIN``, ``NOREPLICAS``,
  ``UNBLOCKED``), a busy script, ``OOM``, a script cache emptied by a failover
  (``NOSCRIPT``: reloaded on retry). The spool record stays; the caller retries with
  backoff and logs once per state change.
- **refused** - retrying alone will not fix it, an operator must act: ``WRONGTYPE`` on
  one of our keys, ``NOPERM`` (ACL), a wrong password (``WRONGPASS``, ``NOAUTH``), a
  script error, a command a proxy or a cluster will not route (cross-slot). Those become
  :class:`RedisCommandError`: the record stays spooled too, but the error is logged loudly
  (with a traceback by the publisher) and counted.
"""

from __future__ import annotations

from typing import Any, Literal

import redis
from redis.exceptions import (
    CrossSlotTransactionError,
    InvalidPipelineStack,
    RedisClusterException,
)

from daemon.errors import RedisCommandError, SinkError

# Everything a redis-py call can raise because of Redis: RedisError and, on a cluster,
# RedisClusterException (not a RedisError subclass: SlotNotCoveredError,
# RedisClusterUnreachableError, "Redis Cluster cannot be connected").
REDIS_ERRORS: tuple[type[Exception], ...] = (redis.RedisError, RedisClusterException)

Kind = Literal["transient", "refused"]

# Refused whatever they say: the credentials or the ACL are wrong, or we built a command
# a cluster cannot route. (AuthenticationError and AuthorizationError are ConnectionError
# subclasses, so they are checked before the transient classes.)
REFUSED_CLASSES: tuple[type[Exception], ...] = (
    redis.AuthenticationError,  # WRONGPASS, NOAUTH, invalid username-password pair
    redis.exceptions.AuthorizationError,
    redis.exceptions.NoPermissionError,  # NOPERM
    redis.DataError,  # an argument redis-py will not encode: a bug, not an outage
    CrossSlotTransactionError,
    InvalidPipelineStack,
)

# redis-py's classes for Redis being away, or failing over, loading, short of memory.
# (MOVED/ASK/TRYAGAIN/CLUSTERDOWN/MASTERDOWN are ResponseError subclasses; BusyLoadingError,
# MasterNotFoundError and SlaveNotFoundError are ConnectionError subclasses.)
TRANSIENT_CLASSES: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # refused, reset, LOADING, no master known to Sentinel
    redis.TimeoutError,
    redis.exceptions.InvalidResponse,  # a broken reply: the connection is dropped
    redis.ReadOnlyError,  # we still talk to the old master, now a replica
    redis.exceptions.AskError,  # MOVED, ASK: the slot moved (failover, resharding)
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # CLUSTERDOWN, MASTERDOWN, "TTL exhausted"
    redis.exceptions.OutOfMemoryError,  # maxmemory: consumers trimming will free it
    redis.exceptions.NoScriptError,  # a failover dropped the script cache: reloaded on retry
    RedisClusterException,  # unreachable cluster, SlotNotCoveredError while slots move
)

# Replies redis-py leaves as a plain ResponseError, by their first word.
TRANSIENT_PREFIXES = (
    "READONLY",
    "LOADING",
    "BUSY",  # a script runs past lua-time-limit
    "MASTERDOWN",  # replica-serve-stale-data no
    "NOREPLICAS",  # min-replicas-to-write not met
    "TRYAGAIN",
    "CLUSTERDOWN",
    "MOVED",
    "ASK",
    "OOM",
    "NOSCRIPT",
    "UNBLOCKED",  # the server turned replica while we waited
)
REFUSED_PREFIXES = ("NOPERM", "WRONGPASS", "NOAUTH")


def classify(exc: BaseException) -> Kind:
    """``transient`` (retry) or ``refused`` (an operator must act) for a Redis error."""
    if isinstance(exc, REFUSED_CLASSES):
        return "refused"
    if isinstance(exc, redis.ResponseError):
        # In a pipeline redis-py rewrites the reply as "Command # 1 (EVALSHA ...) of
        # pipeline caused error: NOREPLICAS ...": the server's reply follows "caused error: ".
        word = str(exc).rpartition("caused error: ")[2].split(" ", 1)[0].upper()
        if word in REFUSED_PREFIXES:
            return "refused"
        if word in TRANSIENT_PREFIXES:
            return "transient"
    if isinstance(exc, TRANSIENT_CLASSES):
        return "transient"
    return "refused"  # WRONGTYPE, ERR in a script, an unknown command, anything else


def is_transient(exc: BaseException) -> bool:
    """True for Redis being away, a failover in progress, and the replies above."""
    return classify(exc) == "transient"


def translate(exc: BaseException, what: str) -> SinkError | RedisCommandError:
    """The daemon error for a redis-py error: SinkError (retry) or RedisCommandError."""
    message = f"redis {what} failed: {type(exc).__name__}: {exc}"
    if is_transient(exc):
        return SinkError(message)
    return RedisCommandError(message)


class Refusals:
    """Says once, as an error, that Redis refuses what retrying alone will not fix, and (with
    ``accepted``) when it accepts again.

    For the workers that retry every Redis error (lease, retention): a transient error is
    theirs to handle; a refusal (WRONGTYPE, NOPERM, a script error) is logged once per
    distinct error until the next success.
    """

    def __init__(
        self, logger: Any, refused: str, accepted: str | None = None, **context: Any
    ) -> None:
        self._log = logger
        self._refused = refused
        self._accepted = accepted
        self._context = context
        self._last: str | None = None

    def failed(self, exc: BaseException) -> bool:
        """True (and logged once) when ``exc`` is a refusal, False when it is transient."""
        if is_transient(exc):
            return False
        text = f"{type(exc).__name__}: {exc}"
        if text != self._last:
            self._log.error(self._refused, error=text, **self._context)
        self._last = text
        return True

    def succeeded(self) -> None:
        if self._last is not None and self._accepted is not None:
            self._log.info(self._accepted, **self._context)
        self._last = None
