"""`drainer status`: per-account view from the spool, Redis and the running daemon."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import Daemon, wait_for, write_config

STREAM = "drainer:{docplanner}"


def status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_reports_stream_and_last_success_of_a_running_daemon(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """With the daemon running: stream length, last success and a ready daemon are shown."""
    clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
    with DocPlannerSandbox(clients=clients) as sandbox:
        sandbox.enqueue("pl-id", 250)
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[
                {
                    "name": "pl",
                    "base_url": sandbox.base_url,
                    "client_id": "pl-id",
                    "client_secret": "pl-secret-value",
                    "idle_interval": "200ms",
                }
            ],
        )
        with Daemon(config) as daemon:
            wait_for(lambda: redis_client.xlen(STREAM) >= 250, 30, "250 entries")
            wait_for(lambda: daemon.get("/readyz") == 200, 10, "ready")
            result = status(config, "--json")
            human = status(config)
            assert daemon.stop() == 0
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["stream_lengths"][STREAM] == 250
    (account,) = report["accounts"]
    assert account["account"] == "pl" and account["last_success"] is not None
    assert account["spool_pending_notifications"] == 0
    assert account["cursor"].startswith("spool record ") and account["cursor"] != (
        "spool record 0 published"
    )
    assert report["daemon"]["ready"] is True
    assert human.returncode == 0 and "pl" in human.stdout and "pl-secret-value" not in human.stdout


def test_status_counts_a_spool_backlog_while_redis_is_down(tmp_path: Path) -> None:
    """Redis unreachable: the spooled, unpublished notifications are counted from disk."""
    clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    with DocPlannerSandbox(clients=clients) as sandbox:
        sandbox.enqueue("pl-id", 300)
        config = write_config(
            tmp_path / "drainer.toml",
            dead_redis,
            docplanner=[
                {
                    "name": "pl",
                    "base_url": sandbox.base_url,
                    "client_id": "pl-id",
                    "client_secret": "pl-secret-value",
                    "idle_interval": "200ms",
                }
            ],
        )
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 30, "pulled into the spool")
            assert daemon.get("/readyz") == 503
            assert daemon.stop() == 0
    result = status(config, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["redis"] != "ok"
    assert report["accounts"][0]["spool_pending_notifications"] == 300


def test_status_lists_each_streams_consumer_groups_with_lag_and_pending(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Table and --json: every group of a stream with its lag and pending count."""
    for n in range(30):
        redis_client.xadd(STREAM, {"n": str(n)})
    redis_client.xgroup_create(STREAM, "billing", id="0")
    redis_client.xgroup_create(STREAM, "audit", id="$")
    redis_client.xreadgroup("billing", "w1", {STREAM: ">"}, count=10)  # 10 pending, 20 lag
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    result = status(config, "--json")
    human = status(config)
    assert result.returncode == 0, result.stderr
    groups = {g["group"]: g for g in json.loads(result.stdout)["consumer_groups"][STREAM]}
    assert (groups["billing"]["lag"], groups["billing"]["pending"]) == (20, 10)
    assert (groups["audit"]["lag"], groups["audit"]["pending"]) == (0, 0)
    assert groups["billing"]["consumers"] == 1 and groups["billing"]["lost_entries"] is False
    assert "billing" in human.stdout and "audit" in human.stdout, human.stdout
