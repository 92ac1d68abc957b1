"""Which Redis errors are worth retrying, and which need an operator.

A publish that fails while a failover runs (the master changed: READONLY, a connection
reset, MOVED, CLUSTERDOWN, LOADING) is transient: the spool record stays and the
publisher retries with backoff. An error that retrying cannot fix (WRONGTYPE on our
stream key, a script error, NOPERM) becomes :class:`RedisCommandError`: the record stays
spooled too, but the publisher logs it with a traceback and counts it.
"""

from __future__ import annotations

from typing import Any

import redis

from daemon.errors import RedisCommandError, SinkError

# redis-py's classes for the replies a healthy deployment gives while it fails over,
# loads, or is short of memory: retry later. (MOVED/ASK/TRYAGAIN/CLUSTERDOWN/MASTERDOWN
# are ResponseError subclasses; BusyLoadingError is a ConnectionError.)
TRANSIENT_CLASSES: tuple[type[Exception], ...] = (
    redis.ConnectionError,  # reset, refused, LOADING, NOAUTH after a restart
    redis.TimeoutError,
    redis.ReadOnlyError,  # we still talk to the old master, now a replica
    redis.exceptions.AskError,  # MOVED, ASK: the slot moved (failover, resharding)
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterError,  # CLUSTERDOWN, MASTERDOWN, "TTL exhausted"
    redis.exceptions.OutOfMemoryError,  # maxmemory: consumers trimming will free it
    redis.exceptions.NoScriptError,  # a failover dropped the script cache: reloaded on retry
    redis.exceptions.RedisClusterException,  # SlotNotCoveredError while slots move
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


def is_transient(exc: BaseException) -> bool:
    """True for connection trouble, timeouts and the failover replies above."""
    if isinstance(exc, TRANSIENT_CLASSES):
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    # In a pipeline redis-py rewrites the reply as "Command # 1 (EVALSHA ...) of pipeline
    # caused error: NOREPLICAS ...": the server's reply is what follows "caused error: ".
    text = str(exc).rpartition("caused error: ")[2]
    return text.split(" ", 1)[0].upper() in TRANSIENT_PREFIXES


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
