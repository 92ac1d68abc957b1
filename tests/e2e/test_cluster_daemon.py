"""The DocPlanner drain through the real CLI on a Redis Cluster (fixture: tests/integration)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import RedisSettings
from daemon.sink.connect import connect
from tests.helpers import (
    Daemon,
    stream_entries,
    wait_for,
    wait_settled,
    write_config,
)
from tests.integration.test_cluster import STREAM, client, cluster

__all__ = ["client", "cluster"]  # fixtures shared with tests/integration/test_cluster.py


def test_docplanner_drain_on_cluster_is_exactly_once(tmp_path: Path, cluster: list[int]) -> None:
    """The real CLI on a redis+cluster:// url drains 2 x 1,500 notifications exactly once."""
    url = "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in cluster)
    client = connect(RedisSettings(url=url))
    client.flushall()
    clients = [DocPlannerClient(client_id=f"{n}-id", client_secret=f"{n}-secret") for n in "ab"]
    with DocPlannerSandbox(clients=clients) as sandbox:
        for name in "ab":
            sandbox.enqueue(f"{name}-id", 1500)
        accounts = [
            {
                "name": name,
                "base_url": sandbox.base_url,
                "client_id": f"{name}-id",
                "client_secret": f"{name}-secret",
                "idle_interval": "200ms",
            }
            for name in "ab"
        ]
        config = write_config(tmp_path / "drainer.toml", url, docplanner=accounts)
        with Daemon(config) as daemon:
            wait_for(lambda: client.xlen(STREAM) >= 3000, 40, "3,000 entries")
            wait_settled(daemon)
            assert daemon.stop() == 0
        handed = {name: sandbox.handed_out(f"{name}-id") for name in "ab"}
    entries = stream_entries(client, STREAM)  # type: ignore[arg-type]  # same API on a cluster
    client.close()
    assert max(Counter(e["event_id"] for e in entries).values()) == 1
    for name in "ab":
        payloads = [json.loads(e["payload"]) for e in entries if e["account"] == name]
        assert payloads == handed[name] and len(payloads) == 1500
