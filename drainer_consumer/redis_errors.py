"""Which Redis errors the consumer waits out, and the client that never re-sends a command.

Transient: the connection failed or timed out, or Redis refused *for now*: ``READONLY``
(the node became a replica in a failover), ``OOM`` (maxmemory with noeviction), ``LOADING``,
``BUSY`` (a long script), ``MASTERDOWN``, ``CLUSTERDOWN``, ``TRYAGAIN``, ``NOREPLICAS``
(min-replicas-to-write), ``MISCONF`` (snapshots failing) and ``UNBLOCKED`` (a blocked read
cut off when the node changed role). :meth:`Consumer.run` backs off and retries those; any
other error (``WRONGTYPE``, ``NOPERM``, ...) is a mistake to fix and is raised.

The client itself retries nothing: a command whose reply was lost may have run, and sending
the ``MULTI``/``EXEC`` that moves an entry aside again would copy it twice.
"""

from __future__ import annotations

import redis
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, OutOfMemoryError, ReadOnlyError, TryAgainError
from redis.retry import Retry

TRANSIENT_CODES = frozenset(
    {
        *("READONLY", "OOM", "LOADING", "BUSY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"),
        *("NOREPLICAS", "MISCONF", "UNBLOCKED"),
    }
)
# redis-py maps some codes to classes (and then drops the code from the message)
TRANSIENT_CLASSES = (
    *(redis.ConnectionError, redis.TimeoutError),  # LOADING too: redis-py's BusyLoadingError
    *(ReadOnlyError, OutOfMemoryError, ClusterDownError, TryAgainError),
)
PIPELINE_PREFIX = "of pipeline caused error: "  # redis-py names a pipeline's failed command


def transient(exc: redis.RedisError) -> bool:
    """Whether ``exc`` says Redis is away or refusing for now (see the module docstring)."""
    if isinstance(exc, TRANSIENT_CLASSES):
        return True
    if not isinstance(exc, redis.ResponseError):
        return False
    code = getattr(exc, "status_code", None)  # redis-py >= 8 keeps the code
    if not code:
        message = str(exc.args[0]) if exc.args else ""
        code = message.rpartition(PIPELINE_PREFIX)[2].split(" ", 1)[0]
    return code in TRANSIENT_CODES


def no_retry() -> Retry:
    """A client-level retry policy that never re-sends: the run loop is the retry."""
    return Retry(NoBackoff(), 0)
