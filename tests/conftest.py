"""Shared fixtures: a private redis-server per session (never the shared one on 6379)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """One redis-server for the session, on a free port and a unix socket in a temp dir."""
    server = LocalRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    assert server.port != 6379
    yield server
    server.stop()


@pytest.fixture
def redis_client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A client on an empty database."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of this test alone, which the test may stop and restart."""
    server = LocalRedis(tmp_path / "own-redis", appendonly=True)
    server.start()
    yield server
    server.stop()
