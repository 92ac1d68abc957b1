"""Which Redis errors the consumer kit waits out, and its client that re-sends nothing."""

from __future__ import annotations

import pytest
import redis
from redis.exceptions import MasterDownError, OutOfMemoryError, ReadOnlyError

from drainer_consumer import Consumer
from drainer_consumer.redis_errors import transient

PIPELINE = "Command # 1 (XADD k:failed * payload {}) of pipeline caused error: {}"


@pytest.mark.parametrize(
    "error",
    [
        redis.ConnectionError("refused"),
        redis.TimeoutError("timed out"),
        ReadOnlyError("You can't write against a read only replica."),
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        MasterDownError("Link with MASTER is down"),
        redis.ResponseError("BUSY Redis is busy running a script."),
        redis.ResponseError("UNBLOCKED force unblock from blocking operation"),
        redis.ResponseError("NOREPLICAS Not enough good replicas to write."),
        redis.ResponseError(PIPELINE.format("x", "MISCONF Errors writing to the disk")),
    ],
)
def test_refusals_for_now_are_transient(error: redis.RedisError) -> None:
    """Failover, memory, loading, a busy script, a snapshot failing: waited out."""
    assert transient(error)


@pytest.mark.parametrize(
    "error",
    [
        redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
        redis.ResponseError("BUSYGROUP Consumer Group name already exists"),
        redis.ResponseError("NOPERM this user has no permissions"),
        redis.ResponseError(PIPELINE.format("READONLY OOM BUSY", "ERR syntax error")),
    ],
)
def test_mistakes_are_not_transient(error: redis.RedisError) -> None:
    """An error retrying cannot fix is raised, even with a code word inside the payload."""
    assert not transient(error)


def test_the_client_never_re_sends_a_command() -> None:
    """No client-level retry: a MULTI/EXEC whose reply was lost is not sent a second time."""
    consumer = Consumer("redis://127.0.0.1:1/0", "s", "g", "c", print)
    assert consumer.client.get_retry().get_retries() == 0
    consumer.close()
