"""Redis Sentinel: a master and one sentinel started here; url and table forms (CLI: tests/e2e)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis, find_redis_server, free_port
from daemon.settings import RedisSentinelSettings, RedisSettings
from daemon.sink import RedisSink
from daemon.sink.connect import connect, describe
from tests.helpers import (
    assert_redis_config_error,
    online_replicas,
    wait_for,
)

STREAM = "drainer:{docplanner}"


@pytest.fixture(scope="module")
def sentinel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalRedis, int]]:
    """A master, its replica (durable publish waits for it) and a sentinel (``mymaster``)."""
    base = tmp_path_factory.mktemp("sentinel")
    master = LocalRedis(base / "master").start()
    replica = LocalRedis(base / "replica", extra=("--replicaof", "127.0.0.1", str(master.port)))
    replica.start()
    port = free_port()
    conf = base / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {base}\nlogfile {base / 'sentinel.log'}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
    )
    process = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"])
    probe = redis.Redis(port=port, socket_timeout=1)
    try:
        wait_for(
            lambda: _master_addr(probe) == ("127.0.0.1", master.port), 10, "sentinel knows master"
        )
        wait_for(lambda: online_replicas(master.port) == 1, 10, "replica online")
        yield master, port
    finally:
        probe.close()
        process.kill()
        process.wait(timeout=10)
        replica.stop()
        master.stop()


def _master_addr(probe: redis.Redis) -> tuple[str, int] | None:
    try:
        host, port = probe.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
    except (redis.ConnectionError, TypeError, ValueError):
        return None
    return host.decode(), int(port)


def test_sentinel_url_finds_the_master_and_the_sink_works(
    sentinel: tuple[LocalRedis, int],
) -> None:
    """``redis+sentinel://h:p/mymaster/2`` reaches the master's db 2; publish and dedupe work."""
    master, port = sentinel
    client = connect(RedisSettings(url=f"redis+sentinel://127.0.0.1:{port}/mymaster/2"))
    direct = redis.Redis(port=master.port, db=2)
    try:
        assert describe(client) == "sentinel"
        client.set("probe", "x")
        assert direct.get("probe") == b"x"
        from daemon.envelope.entries import StreamEntry

        sink = RedisSink(client, dedupe_window=60, stream_maxlen=0)
        entry = StreamEntry("s:{a}", "1", {"event_id": "1"})
        assert sink.publish([entry, entry]).published == 1
        assert direct.xlen("s:{a}") == 1
    finally:
        direct.flushdb()
        direct.close()
        client.close()


def test_sentinel_table_form_uses_the_url_db(sentinel: tuple[LocalRedis, int]) -> None:
    """A ``[redis.sentinel]`` table with hosts and master; db comes from the redis:// url."""
    master, port = sentinel
    settings = RedisSettings(
        url="redis://ignored:1/3",
        sentinel=RedisSentinelSettings(hosts=[f"127.0.0.1:{port}"], master="mymaster"),
    )
    client = connect(settings)
    direct = redis.Redis(port=master.port, db=3)
    try:
        client.set("table", "y")
        assert direct.get("table") == b"y"
    finally:
        direct.flushdb()
        direct.close()
        client.close()


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        (
            'url = "redis+sentinel://127.0.0.1:1/m/0"\n[redis.sentinel]\nhosts = ["h:1"]',
            "redis.sentinel",
        ),
        ('url = "redis+sentinel://127.0.0.1:1/"', "redis.url"),
        ('url = "redis://h:1/0"\n[redis.sentinel]\nhosts = ["nope"]', "redis.sentinel.hosts"),
        ('url = "redis://h:1/0"\n[redis.sentinel]\nmaster = "m"', "redis.sentinel.hosts"),
    ],
)
def test_inconsistent_sentinel_settings_are_one_line_config_errors(
    tmp_path: Path, toml: str, key: str
) -> None:
    """A url and a table at once, no master name, a bad host, no hosts: one line naming the key."""
    assert_redis_config_error(tmp_path, toml, key)
