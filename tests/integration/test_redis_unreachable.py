"""Redis away or hanging, whatever the topology: bounded commands, one error classification."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import pytest
import redis
from redis.cluster import RedisCluster

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.envelope.entries import StreamEntry
from daemon.errors import SinkError
from daemon.settings import RedisSettings
from daemon.sink import RedisSink
from daemon.sink import connect as daemon_connect
from daemon.sink.connect import connect, describe
from daemon.sink.deferred import DeferredCluster
from daemon.sink.durability import Policy
from daemon.sink.health import RedisProbe
from daemon.sink.lease import Lease
from daemon.sink.memory import evicting_policy
from daemon.sink.retention import RetentionWorker

STREAM = "drainer:{docplanner}"
TOPOLOGIES = {
    "single": "redis://127.0.0.1:{port}/0",
    "sentinel": "redis+sentinel://127.0.0.1:{port}/mymaster/0",
    "cluster": "redis+cluster://127.0.0.1:{port}",
}


@contextmanager
def hung(server: LocalRedis) -> Iterator[None]:
    """The redis-server stopped with SIGSTOP (connections open, no answers), then resumed."""
    os.kill(server.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.pid, signal.SIGCONT)


def entry(n: int) -> StreamEntry:
    return StreamEntry(STREAM, f"docplanner:pl:{n:032x}", {"event_id": f"e{n}", "n": str(n)})


@pytest.mark.parametrize("topology", sorted(TOPOLOGIES))
def test_every_caller_treats_unreachable_redis_as_transient(topology: str) -> None:
    """Nothing listening (one node, Sentinel, Cluster): built without I/O, every caller copes."""
    url = TOPOLOGIES[topology].format(port=free_port())
    settings = RedisSettings(url=url, connect_timeout=0.5, socket_timeout=1.0, wait_timeout=0.5)
    client = connect(settings)  # a Cluster used to raise here, at start
    assert describe(client) == topology
    sink = RedisSink(client, 60, 0, durability=Policy(mode="auto"))
    with pytest.raises(SinkError):
        sink.publish([entry(1)])
    with pytest.raises(SinkError):
        sink.get_watermark("drainer:{myinvois}", "acme")
    with pytest.raises(SinkError):
        sink.advance_watermark("drainer:{myinvois}", "acme", datetime.now(UTC))
    with pytest.raises(SinkError):
        sink.detect()
    assert sink.ping() is False
    lease = Lease(client, "drainer:{docplanner}:lease:docplanner:pl", "me", 15.0)
    assert lease.ensure(0.0) is False
    retention = RetentionWorker(client, [STREAM], "consumer_groups_capped", 3600.0, maxlen=10)
    assert retention.tick(0.0) > 0 and retention.health.failing_since is not None
    probe = RedisProbe(client, [STREAM], 20)
    assert probe.tick(0.0) > 0
    assert "not answering" in (probe.not_ready() or "")
    with pytest.raises(SinkError):
        list(probe.lengths())
    assert evicting_policy(client) is None
    client.close()


def test_a_cluster_unreachable_at_start_is_discovered_when_it_answers(
    redis_server: LocalRedis,
) -> None:
    """The deferred Cluster client raises the cluster's own error until a node answers."""
    client = connect(RedisSettings(url=f"redis+cluster://127.0.0.1:{free_port()}"))
    assert isinstance(client, DeferredCluster)
    with pytest.raises(redis.exceptions.RedisClusterException):
        client.ping()
    assert client.register_script("return 1").sha  # no I/O
    client.close()


def test_a_hung_redis_fails_a_command_within_its_socket_timeout(own_redis: LocalRedis) -> None:
    """SIGSTOPped Redis: PING times out once (no retry of a timeout), not 4 x 5 s."""
    settings = RedisSettings(
        url=own_redis.url, socket_timeout=1.0, connect_timeout=0.5, wait_timeout=0.5
    )
    client = connect(settings)
    assert client.ping()
    with hung(own_redis):
        started = time.monotonic()
        with pytest.raises(redis.TimeoutError):
            client.ping()
        elapsed = time.monotonic() - started
        fresh = connect(settings)  # a new connection: TCP connects, the answer never comes
        with pytest.raises(redis.TimeoutError):
            fresh.ping()
    # A bound on a hung dependency, not a speed figure: one socket timeout, never four.
    assert elapsed < 2 * settings.socket_timeout, elapsed
    assert client.ping()  # resumed: the same client carries on
    client.close()
    fresh.close()


@pytest.mark.parametrize("topology", ["single", "sentinel"])
def test_the_retry_policy_is_explicit(topology: str) -> None:
    """Connection errors retried `retries` times with jittered backoff; timeouts never."""
    url = TOPOLOGIES[topology].format(port=free_port())
    settings = RedisSettings(url=url, retries=2, socket_timeout=3.0, connect_timeout=0.7)
    client = daemon_connect(settings)  # what wiring.build and backfill call
    assert isinstance(client, redis.Redis)
    retry = client.connection_pool.connection_kwargs["retry"]
    assert retry.get_retries() == 2
    assert redis.ConnectionError in retry._supported_errors
    assert redis.TimeoutError not in retry._supported_errors
    assert client.connection_pool.connection_kwargs["socket_timeout"] == 3.0
    assert client.connection_pool.connection_kwargs["socket_connect_timeout"] == 0.7
    defaults = connect(RedisSettings(url=url)).connection_pool.connection_kwargs
    assert (defaults["socket_timeout"], defaults["socket_connect_timeout"]) == (5.0, 2.0)


def test_the_cluster_retry_policy_is_explicit(redis_server: LocalRedis) -> None:
    """The Cluster client's own retry loop is bounded by the same `retries`."""
    client = connect(RedisSettings(url=f"redis+cluster://127.0.0.1:{free_port()}", retries=0))
    assert isinstance(client, DeferredCluster)
    retry = client._kwargs["retry"]
    assert retry.get_retries() == 0
    with pytest.raises(redis.exceptions.RedisClusterException):
        client.resolve()
    assert not isinstance(client, RedisCluster)


def test_the_probe_serves_its_cache_and_marks_it_stale(redis_server: LocalRedis) -> None:
    """Figures come from the last answer; 5 s without one: not ready, series withheld."""
    now = [100.0]
    client = connect(RedisSettings(url=redis_server.url))
    probe = RedisProbe(client, [STREAM], 20, clock=lambda: now[0])
    assert probe.not_ready() is not None and probe.age() is None  # not asked yet
    probe.tick(now[0])
    assert probe.not_ready() is None and dict(probe.lengths()).keys() == {STREAM}
    assert [g.stream for g in probe.groups()] == [STREAM]
    now[0] += 4.0
    assert probe.not_ready() is None and probe.age() == 4.0
    now[0] += 2.0  # no answer for 6 s (the probe is stuck on a hung Redis)
    assert "not answering" in (probe.not_ready() or "")
    with pytest.raises(SinkError):
        list(probe.lengths())
    with pytest.raises(SinkError):
        list(probe.groups())
    client.close()
