"""One classification of Redis errors (daemon.sink.failures), Cluster and Sentinel included."""

from __future__ import annotations

import pytest
import redis
from redis import exceptions as rex
from redis.sentinel import MasterNotFoundError, SlaveNotFoundError

from daemon.errors import RedisCommandError, SinkError
from daemon.sink.failures import REDIS_ERRORS, classify, is_transient, translate

PIPELINE = "Command # 1 (EVALSHA abc 3 s) of pipeline caused error: "

TRANSIENT = [
    redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
    redis.TimeoutError("Timeout reading from socket"),
    redis.BusyLoadingError("Redis is loading the dataset in memory"),
    rex.MaxConnectionsError("Too many connections"),
    rex.InvalidResponse("Protocol Error: b'x'"),
    redis.ReadOnlyError("You can't write against a read only replica."),
    rex.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
    rex.NoScriptError("No matching script. Please use EVAL."),
    # Sentinel: no sentinel answers, or none knows a master for the name.
    MasterNotFoundError("No master found for 'mymaster'"),
    SlaveNotFoundError("No slave found for 'mymaster'"),
    # Cluster: every class redis-py raises while a cluster is down or failing over.
    rex.RedisClusterException("Redis Cluster cannot be connected."),
    rex.RedisClusterUnreachableError("no startup node answered"),
    rex.SlotNotCoveredError("Command # 1 (GET a) slot 15495 is not covered"),
    rex.ClusterDownError("The cluster is down"),
    rex.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
    rex.ClusterError("TTL exhausted."),
    rex.MovedError("3999 127.0.0.1:7001"),
    rex.AskError("3999 127.0.0.1:7001"),
    rex.TryAgainError("Multiple keys request during rehashing of slot"),
    # Replies redis-py leaves as a plain ResponseError, alone and inside a pipeline.
    redis.ResponseError("BUSY Redis is busy running a script."),
    redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
    redis.ResponseError("LOADING Redis is loading the dataset in memory"),
    redis.ResponseError("UNBLOCKED force unblock from blocking operation"),
    redis.ResponseError(PIPELINE + "NOREPLICAS Not enough good replicas to write."),
    redis.ResponseError(PIPELINE + "CLUSTERDOWN Hash slot not served"),
]

REFUSED = [
    redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    redis.ResponseError(PIPELINE + "WRONGTYPE Operation against a key holding the wrong kind"),
    redis.ResponseError("ERR Error running script (call to f_abc): @user_script:1: oops"),
    redis.ResponseError("ERR unknown command 'WAITAOF'"),
    rex.NoPermissionError("this user has no permissions to run the 'xadd' command"),
    redis.ResponseError("NOPERM this user has no permissions to access the key"),
    redis.AuthenticationError("invalid username-password pair or user is disabled."),
    redis.ResponseError("WRONGPASS invalid username-password pair"),
    redis.ResponseError("NOAUTH Authentication required."),
    rex.AuthorizationError("ACL check failed"),
    redis.DataError("Invalid input of type: 'NoneType'."),
    rex.CrossSlotTransactionError("All keys in a transaction must hash to the same slot"),
    rex.InvalidPipelineStack("pipeline stack is invalid"),
    rex.ClusterCrossSlotError(),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=lambda e: f"{type(e).__name__}:{str(e)[:30]}")
def test_outages_and_failovers_are_transient(error: Exception) -> None:
    """Redis away, a Sentinel or Cluster outage or a failover in progress: retry later."""
    assert isinstance(error, REDIS_ERRORS)
    assert classify(error) == "transient" and is_transient(error)
    assert type(translate(error, "publish")) is SinkError


@pytest.mark.parametrize("error", REFUSED, ids=lambda e: f"{type(e).__name__}:{str(e)[:30]}")
def test_what_retrying_cannot_fix_is_refused(error: Exception) -> None:
    """WRONGTYPE, script errors, ACL and password refusals, cross-slot: an operator acts."""
    assert isinstance(error, REDIS_ERRORS)
    assert classify(error) == "refused" and not is_transient(error)
    refused = translate(error, "publish")
    assert isinstance(refused, RedisCommandError) and type(error).__name__ in str(refused)


def test_every_redis_py_exception_class_is_caught_by_redis_errors() -> None:
    """No exception class redis-py defines for a failed command escapes REDIS_ERRORS."""
    skipped = {"ChildDeadlockedError", "IncorrectPolicyType"}  # fork safety, a client bug
    classes = [getattr(rex, name) for name in dir(rex) if name not in skipped]
    defined = [c for c in classes if isinstance(c, type) and c.__module__ == rex.__name__]
    for cls in defined:
        if issubclass(cls, Exception):
            assert issubclass(cls, REDIS_ERRORS), cls.__name__
