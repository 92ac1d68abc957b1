"""The DocPlanner drain through the real CLI via Sentinel (sentinel fixture: tests/integration)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import (
    Daemon,
    stream_entries,
    wait_for,
    wait_settled,
    write_config,
)
from tests.integration.test_sentinel import STREAM, sentinel

__all__ = ["sentinel"]  # fixtures shared with tests/integration/test_sentinel.py


def test_docplanner_drain_through_sentinel_is_exactly_once(
    tmp_path: Path, sentinel: tuple[LocalRedis, int]
) -> None:
    """The real CLI on a redis+sentinel:// url drains 2,000 notifications exactly once."""
    master, port = sentinel
    direct = redis.Redis(port=master.port, db=0)
    direct.flushdb()
    clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret")]
    with DocPlannerSandbox(clients=clients) as sandbox:
        sandbox.enqueue("pl-id", 2000)
        account = {
            "name": "pl",
            "base_url": sandbox.base_url,
            "client_id": "pl-id",
            "client_secret": "pl-secret",
            "idle_interval": "200ms",
        }
        url = f"redis+sentinel://127.0.0.1:{port}/mymaster/0"
        config = write_config(tmp_path / "drainer.toml", url, docplanner=[account])
        with Daemon(config) as daemon:
            wait_for(lambda: direct.xlen(STREAM) >= 2000, 40, "2,000 entries")
            wait_settled(daemon)
            assert daemon.get("/readyz") == 200
            assert daemon.stop() == 0
        handed = sandbox.handed_out("pl-id")
    entries = stream_entries(direct, STREAM)
    direct.close()
    assert max(Counter(e["event_id"] for e in entries).values()) == 1
    assert [json.loads(e["payload"]) for e in entries] == handed
    assert len(handed) == 2000
