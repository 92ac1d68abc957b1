"""`drainer status`: per-account view from the spool, Redis and the running daemon."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.commands.status import (
    EXIT_DAEMON_UNREACHABLE,
    EXIT_NOT_READY,
    EXIT_REDIS_DOWN,
    problems,
)
from daemon.envelope.entries import StreamEntry
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import load_settings
from daemon.spool import SpoolBudget, SpoolLog
from tests.helpers import Daemon, dp_account, wait_for, write_config

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
    assert result.returncode == EXIT_DAEMON_UNREACHABLE, result.stderr
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
    # No daemon runs here: exit 3 says so, and the report still lists the groups.
    assert result.returncode == EXIT_DAEMON_UNREACHABLE, result.stderr
    groups = {g["group"]: g for g in json.loads(result.stdout)["consumer_groups"][STREAM]}
    assert (groups["billing"]["lag"], groups["billing"]["pending"]) == (20, 10)
    assert (groups["audit"]["lag"], groups["audit"]["pending"]) == (0, 0)
    assert groups["billing"]["consumers"] == 1 and groups["billing"]["lost_entries"] is False
    assert "billing" in human.stdout and "audit" in human.stdout, human.stdout


def test_status_exits_non_zero_with_one_line_per_problem_and_needs_no_secrets(
    tmp_path: Path,
) -> None:
    """Daemon down and Redis refusing: exit 3, one line each; unreadable secret files are fine."""
    config = write_config(
        tmp_path / "drainer.toml",
        f"redis://127.0.0.1:{free_port()}/0",
        docplanner=[
            {
                "name": "pl",
                "base_url": "https://www.znanylekarz.pl",
                "client_id": "pl-id",
                "client_secret_file": str(tmp_path / "no-such-secret"),
            }
        ],
    )
    result = status(config)
    assert result.returncode == EXIT_DAEMON_UNREACHABLE, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("drainer status: daemon unreachable: not answering on http://")
    assert lines[1].startswith("drainer status: redis down: ")
    assert "Traceback" not in result.stderr


def test_status_json_into_a_closed_pipe_ends_without_a_traceback(tmp_path: Path) -> None:
    """`drainer status --json | head` when head has already left: no BrokenPipe traceback."""
    config = write_config(tmp_path / "drainer.toml", f"redis://127.0.0.1:{free_port()}/0")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write: EPIPE on every write
    try:
        result = subprocess.run(
            [sys.executable, "-m", "daemon", "status", "--config", str(config), "--json"],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        os.close(write_end)
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr
    assert result.returncode == EXIT_DAEMON_UNREACHABLE


def test_problems_map_to_documented_codes() -> None:
    """Healthy is 0; a failing account is 5; Redis down is 4; the lowest code is listed first."""
    healthy = {"daemon": {"reachable": True, "ready": True}, "redis": "ok"}
    assert problems(healthy) == []
    failing = {
        "daemon": {"reachable": True, "ready": False, "not_ready": {"docplanner:pl:puller": "403"}},
        "redis": "ok",
    }
    assert problems(failing) == [(EXIT_NOT_READY, "not ready: docplanner:pl:puller: 403")]
    redis_gone = {
        "daemon": {"reachable": True, "ready": False, "not_ready": {"redis": "not answering"}},
        "redis": "ConnectionError: refused",
    }
    assert [code for code, _ in problems(redis_gone)] == [EXIT_REDIS_DOWN]
    assert EXIT_NOT_READY > EXIT_REDIS_DOWN > EXIT_DAEMON_UNREACHABLE > 2


def test_quiet_push_only_account_is_ready_and_status_exits_0(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """A push-only account that receives nothing: /readyz 200, drainer_ready 1, status exit 0."""
    port, token = free_port(), "t" * 32
    url = f"http://127.0.0.1:{port}/push/docplanner/pl"
    clients = [DocPlannerClient("pl-id", "pl-secret-value", push_url=url, push_token=token)]
    with DocPlannerSandbox(clients=clients) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox, mode="push", push_token=token)],
            listen_port=port,
        )
        with Daemon(config) as daemon:
            wait_for(lambda: daemon.get("/readyz") == 200, 20, "ready")
            assert "\ndrainer_ready 1.0\n" in daemon.metrics()
            result = status(config)
            assert daemon.stop() == 0
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_status_counts_a_myinvois_window_waiting_in_the_spool(tmp_path: Path) -> None:
    """A MyInvois window read while Redis was down waits in the spool: status counts it."""
    config = write_config(
        tmp_path / "drainer.toml",
        f"redis://127.0.0.1:{free_port()}/0",
        myinvois=[
            {
                "name": "acme",
                "base_url": "https://api.example",
                "client_id": "acme-id",
                "client_secret": "acme-secret-value",
            }
        ],
    )
    settings = load_settings(config, {}, secrets=False)
    spool = SpoolLog(settings.spool.account_dir("myinvois", "acme"), SpoolBudget(1 << 20))
    entries = [StreamEntry("drainer:{myinvois}", f"id-{n}", {"n": str(n)}) for n in range(3)]
    spool.append(entries, watermark=1_790_000_000.0)
    result = status(config, "--json")
    human = status(config)
    assert result.returncode == EXIT_DAEMON_UNREACHABLE, result.stderr
    (account,) = json.loads(result.stdout)["accounts"]
    assert account["source"] == "myinvois"
    assert account["spool_pending_records"] == 1 and account["spool_pending_notifications"] == 3
    assert "3 (" in human.stdout
