"""The registry ``wiring.build`` gives the HTTP server exports process metrics and redis_up."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.runtime.wiring import build
from daemon.settings import load_settings
from tests.helpers import write_config


def test_daemon_registry_has_process_metrics_and_redis_up(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """RSS (to compare with MemoryMax), start time and drainer_redis_up 1 once Redis answered."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    registry = CollectorRegistry()
    parts = build(load_settings(config, {}), registry)
    try:
        assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 1 << 20
        assert registry.get_sample_value("process_start_time_seconds") is not None
        assert registry.get_sample_value("drainer_redis_up") == 0  # not probed yet
        parts.probe.tick(0.0)  # the background probe; scrapes read what it cached
        assert registry.get_sample_value("drainer_redis_up") == 1
    finally:
        parts.redis.close()
