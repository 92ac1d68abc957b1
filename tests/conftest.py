"""Shared fixtures: a private redis-server per session (never the shared one on 6379).

Tiers by folder, each also a marker (``pytest -m unit``):
- ``tests/unit``: pure code and ``tick()`` with fakes at the real seams; temp files only.
- ``tests/integration``: a real ``redis-server`` the suite starts and the sandboxes on loopback.
- ``tests/e2e``: the real CLI in a subprocess (signals, kills, the demo, reliability scenarios).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis

TIERS = ("unit", "integration", "e2e")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test with its tier, from the folder it lives in."""
    for item in items:
        parts = item.path.parts
        for tier in TIERS:
            if tier in parts[parts.index("tests") :]:
                item.add_marker(getattr(pytest.mark, tier))
                break


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
    """A client on an empty database, emptied again afterwards: a test that leaves a key of
    the wrong type (WRONGTYPE tests) must not hand it to the next test of the session."""
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    yield client
    client.flushall()
    client.close()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[LocalRedis]:
    """A redis-server of this test alone, which the test may stop and restart."""
    server = LocalRedis(tmp_path / "own-redis", appendonly=True)
    server.start()
    yield server
    server.stop()
