"""drainer_docplanner_oldest_event_age_seconds served by the real CLI while upstream fails."""

from __future__ import annotations

import re
from pathlib import Path

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import Daemon, dp_account, wait_for, write_config

NAME = "drainer_docplanner_oldest_event_age_seconds"


def served_age(daemon: Daemon) -> float:
    series = f'{NAME}{{account="pl",source="docplanner"}}'
    match = re.search(rf"^{re.escape(series)} (\S+)$", daemon.metrics(), re.M)
    assert match, "expiry age not exported"
    return float(match.group(1))


def test_daemon_age_keeps_growing_while_upstream_fails(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """One pull leaves 150 queued, then every pull fails: /metrics shows the age growing."""
    with DocPlannerSandbox(clients=[DocPlannerClient("pl-id", "pl-secret-value")]) as sandbox:
        sandbox.faults.script(["ok"] + ["503"] * 100_000)
        sandbox.enqueue("pl-id", 250)
        config = write_config(
            tmp_path / "drainer.toml", redis_server.url, docplanner=[dp_account("pl", sandbox)]
        )
        with Daemon(config) as daemon:
            wait_for(lambda: served_age(daemon) > 0, 20, "an age after the first pull")
            first = served_age(daemon)
            wait_for(lambda: served_age(daemon) > first + 1, 20, "the age to grow")
            assert sandbox.queue_length("pl-id") == 150
            assert daemon.stop() == 0
