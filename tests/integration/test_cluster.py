"""Redis Cluster: a real 3-master cluster started here; the sink and leases (the CLI: tests/e2e)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from redis.cluster import RedisCluster

from daemon.commands.demo.localredis import find_redis_server, free_port
from daemon.envelope.entries import StreamEntry
from daemon.settings import RedisSettings
from daemon.sink import RedisSink, related_key
from daemon.sink.connect import connect
from daemon.sink.lease import Lease, lease_key
from tests.helpers import (
    assert_redis_config_error,
    wait_for,
)

STREAM = "drainer:{docplanner}"


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[int]]:
    """Three redis-server masters joined by ``redis-cli --cluster create``; yields the ports."""
    base = tmp_path_factory.mktemp("cluster")
    ports = [_cluster_port() for _ in range(3)]
    processes = []
    try:
        for port in ports:
            node = base / str(port)
            node.mkdir()
            argv = [
                find_redis_server(),
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node / "nodes.conf"),
                "--dir", str(node),
                "--save", "",
                "--appendonly", "no",
                "--logfile", str(node / "redis.log"),
            ]  # fmt: skip
            processes.append(subprocess.Popen(argv))
        for port in ports:
            _wait_ping(port)
        subprocess.run(
            [
                "redis-cli",
                "--cluster",
                "create",
                *(f"127.0.0.1:{port}" for port in ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        for port in ports:
            wait_for(lambda port=port: _cluster_ok(port), 20, f"cluster_state:ok on {port}")
        yield ports
    finally:
        for process in processes:
            process.kill()
            process.wait(timeout=10)


def _cli(port: int, *args: str) -> str:
    result = subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        check=False,  # a node still starting answers with an error: the caller polls
        capture_output=True,
        text=True,
        timeout=5,
    )
    return result.stdout


def _wait_ping(port: int) -> None:
    wait_for(lambda: _cli(port, "ping").strip() == "PONG", 10, f"redis on {port}")


def _cluster_ok(port: int) -> bool:
    return "cluster_state:ok" in _cli(port, "cluster", "info")


@pytest.fixture
def client(cluster: list[int]) -> Iterator[RedisCluster]:
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in cluster)
    built = connect(RedisSettings(url=url))
    assert isinstance(built, RedisCluster)
    built.flushall()
    yield built
    built.close()


def test_publish_script_routes_by_key_and_dedupes_on_cluster(client: RedisCluster) -> None:
    """The sink's Lua publish runs on the right master for streams in three slots, once each."""
    streams = ["drainer:{docplanner}", "drainer:{myinvois}", "drainer:{deadletter}"]
    slots = {client.keyslot(stream) for stream in streams}
    owners = {client.get_node_from_key(stream).port for stream in streams}
    assert len(slots) == 3 and len(owners) >= 2, "the test needs streams on several masters"
    sink = RedisSink(client, dedupe_window=60, stream_maxlen=0)
    batch = [
        StreamEntry(s, f"{s}-{i}", {"event_id": f"{s}-{i}"}) for i in range(5) for s in streams
    ]
    first = sink.publish(batch)
    second = sink.publish(batch)
    assert (first.published, first.duplicates) == (15, 0)
    assert (second.published, second.duplicates) == (0, 15)
    assert sink.stream_lengths(streams) == [(s, 5) for s in streams]
    assert sink.ping()
    assert client.get(related_key(streams[0], "seen:drainer:{docplanner}-3")) == b"1"


def test_watermark_and_lease_work_on_cluster(client: RedisCluster) -> None:
    """Watermark GET/Lua and the lease SET NX / compare-and-pexpire route by key on a cluster."""

    sink = RedisSink(client, dedupe_window=60, stream_maxlen=0)
    moment = datetime(2026, 11, 1, tzinfo=UTC)
    sink.advance_watermark("drainer:{myinvois}", "acme", moment)
    assert sink.get_watermark("drainer:{myinvois}", "acme") == moment
    key = lease_key("drainer:{myinvois}", "myinvois", "acme")
    first, second = (Lease(client, key, token, ttl=3.0) for token in ("a", "b"))
    assert first.ensure(0.0) and not second.ensure(0.0)
    assert first.ensure(1.5) and second.holder == "a"
    first.release()
    assert second.ensure(2.0)


def test_cluster_true_with_a_plain_url_builds_a_cluster_client(cluster: list[int]) -> None:
    """``cluster = true`` + ``redis://host:port`` discovers the whole cluster from one node."""
    built = connect(RedisSettings(url=f"redis://127.0.0.1:{cluster[1]}/0", cluster=True))
    try:
        assert isinstance(built, RedisCluster)
        assert {node.port for node in built.get_primaries()} == set(cluster)
    finally:
        built.close()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('cluster = true\n[redis.sentinel]\nhosts = ["127.0.0.1:26379"]', "redis.sentinel"),
        ('url = "redis+cluster://127.0.0.1:7000/3"', "redis.url"),
        ('url = "redis+sentinel://127.0.0.1:26379/m/0"\ncluster = true', "redis.cluster"),
    ],
)
def test_inconsistent_cluster_settings_are_one_line_config_errors(
    tmp_path: Path, toml: str, key: str
) -> None:
    """cluster with a sentinel table, a cluster db, cluster with a sentinel url: key named."""
    if not toml.startswith("url"):
        toml = 'url = "redis://127.0.0.1:7000/0"\n' + toml
    assert_redis_config_error(tmp_path, toml, key)


def test_durability_waits_per_shard_on_cluster(client: RedisCluster) -> None:
    """Each shard's writes end with their own WAIT: shards without replicas fail a forced wait."""
    from daemon.errors import DurabilityError
    from daemon.sink import WatermarkUpdate
    from daemon.sink.durability import Policy, Wait

    streams = ["drainer:{docplanner}", "drainer:{deadletter}"]
    batch = [
        StreamEntry(s, f"{s}-d{i}", {"event_id": f"{s}-d{i}"}) for i in range(3) for s in streams
    ]
    mark = WatermarkUpdate("drainer:{myinvois}", "acme", datetime(2026, 11, 2, tzinfo=UTC))
    auto = RedisSink(client, dedupe_window=60, stream_maxlen=0, durability=Policy("auto"))
    # One per shard, each waiting for the replicas its master has connected: none here.
    assert {wait for _, wait, _ in auto.detect()} == {Wait(0, follow=True)}
    assert auto.publish(batch, mark).published == 6
    assert auto.get_watermark("drainer:{myinvois}", "acme") == mark.moment
    forced = RedisSink(client, 60, 0, durability=Policy("replicas", 1, 0.05))
    assert len(forced.detect()) == 3
    with pytest.raises(DurabilityError, match="0/1"):
        forced.publish(batch, mark)


def test_a_cluster_down_at_start_is_transient_everywhere_until_it_serves(
    tmp_path: Path,
) -> None:
    """A real node whose slots nobody serves (CLUSTERDOWN): no traceback; served: publishes."""
    from daemon.errors import SinkError
    from daemon.sink.deferred import DeferredCluster
    from daemon.sink.health import RedisProbe

    port = _cluster_port()
    argv = [
        find_redis_server(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--cluster-enabled", "yes",
        "--cluster-config-file", str(tmp_path / "nodes.conf"),
        "--dir", str(tmp_path),
        "--save", "",
        "--logfile", str(tmp_path / "redis.log"),
    ]  # fmt: skip
    process = subprocess.Popen(argv)
    try:
        _wait_ping(port)
        client = connect(RedisSettings(url=f"redis+cluster://127.0.0.1:{port}"))
        assert isinstance(client, DeferredCluster)  # RedisCluster() raised: built later
        sink = RedisSink(client, 60, 0)
        probe = RedisProbe(client, [STREAM], 20)
        lease = Lease(client, lease_key(STREAM, "docplanner", "pl"), "a", 15.0)
        entry = StreamEntry(STREAM, "e-1", {"event_id": "e-1"})
        with pytest.raises(SinkError):
            sink.publish([entry])
        assert lease.ensure(0.0) is False
        probe.tick(0.0)
        assert probe.not_ready() is not None
        _cli(port, "cluster", "addslotsrange", "0", "16383")
        wait_for(lambda: _cluster_ok(port), 20, "cluster_state:ok")
        wait_for(lambda: _publishes(sink, entry), 20, "the same client publishes")
        probe.tick(1.0)
        assert probe.not_ready() is None and dict(probe.lengths()) == {STREAM: 1}
        assert lease.ensure(1.0) is True
        client.close()
    finally:
        process.kill()
        process.wait(timeout=10)


def _publishes(sink: RedisSink, entry: StreamEntry) -> bool:
    from daemon.errors import SinkError

    try:
        sink.publish([entry])
    except SinkError:
        return False
    return True
