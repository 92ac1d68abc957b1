"""Without the optional ``ui`` extra (``rich``): the daemon, ``status``, ``backfill`` and ``demo``
work, with plain output.

Each command runs in a subprocess whose ``sys.modules['rich']`` is ``None``, which makes
every ``import rich`` fail as if the package were not installed.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.commands.status import EXIT_DAEMON_UNREACHABLE, EXIT_REDIS_DOWN
from daemon.sandbox import MyInvoisClient, MyInvoisSandbox
from daemon.sources.myinvois.api import iso_z
from tests.helpers import Daemon, write_config

WITHOUT_RICH = (
    "import sys; sys.modules['rich'] = None; from daemon.cli import main; sys.exit(main())"
)


def drainer(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_run_help_works_without_rich() -> None:
    """`drainer --help` and `drainer run --help` need no rich (the CLI imports no UI eagerly)."""
    for args in (["--help"], ["run", "--help"], ["backfill", "--help"]):
        result = drainer(*args)
        assert result.returncode == 0, result.stderr
        assert "usage: drainer" in result.stdout


def test_status_prints_plain_text_without_rich(tmp_path: Path, redis_server: LocalRedis) -> None:
    """`drainer status` without rich: the same report as aligned plain text, same exit code."""
    account = {"name": "pl", "base_url": "https://www.znanylekarz.pl", "client_id": "pl-id",
               "client_secret": "pl-secret-value"}  # fmt: skip
    config = write_config(tmp_path / "drainer.toml", redis_server.url, docplanner=[account])
    result = drainer("status", "--config", str(config))
    assert result.returncode == EXIT_DAEMON_UNREACHABLE, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("daemon: ") and "redis: " in lines[0], lines
    assert lines[1].split()[:2] == ["source", "account"], lines
    assert any(line.split()[:2] == ["docplanner", "pl"] for line in lines), lines
    assert "Traceback" not in result.stderr and "─" not in result.stdout  # no rich box


def test_status_with_redis_down_exits_4_with_one_line_and_no_traceback(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """`drainer status` without rich while the daemon runs and Redis is down: exit 4, one
    stderr line saying so, the plain table on stdout, no traceback."""
    account = {"name": "pl", "base_url": "https://www.znanylekarz.pl", "client_id": "pl-id",
               "client_secret": "pl-secret-value", "mode": "push",
               "push_token": "a-push-token-long-enough-0123"}  # fmt: skip
    config = write_config(tmp_path / "drainer.toml", own_redis.url, docplanner=[account])
    with Daemon(config):
        own_redis.stop()
        result = drainer("status", "--config", str(config))
    assert result.returncode == EXIT_REDIS_DOWN, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("drainer status: redis down: "), line
    assert result.stdout.splitlines()[0].startswith("daemon: "), result.stdout


def test_demo_without_rich_runs_with_plain_lines() -> None:
    """`drainer demo` without rich: it runs, prints plain lines and its verdict, exit 0."""
    result = drainer("demo", "--seconds", "3", "--notifications", "200", timeout=240)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert "Summary: what the sandboxes handed out" in result.stdout
    assert "━" not in result.stdout and "─" not in result.stdout  # no rich table


def test_backfill_without_rich_prints_plain_progress_lines(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """`drainer backfill` without rich: plain progress lines on stderr, then the summary."""
    now = datetime.now(UTC).replace(microsecond=0)
    clients = [MyInvoisClient(client_id="acme-id", client_secret="acme-id-secret-value")]
    with MyInvoisSandbox(clients=clients, requests_per_minute=6000) as sandbox:
        sandbox.add_notifications(
            "acme-id", 30, start=now - timedelta(days=2), end=now - timedelta(days=1)
        )
        account = {
            "name": "acme",
            "base_url": sandbox.base_url,
            "client_id": "acme-id",
            "client_secret": "acme-id-secret-value",
            "requests_per_minute": 6000,
        }
        config = write_config(tmp_path / "drainer.toml", redis_server.url, myinvois=[account])
        since, until = iso_z(now - timedelta(days=3)), iso_z(now - timedelta(hours=1))
        result = drainer(
            "backfill", "--config", str(config), "--account", "acme",
            "--since", since, "--until", until,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    progress = [line for line in result.stderr.splitlines() if line.startswith("backfill acme: ")]
    assert progress and progress[-1].startswith("backfill acme: 100%, "), progress
    assert "30 published" in result.stderr.splitlines()[-1]
    assert "Traceback" not in result.stderr and "━" not in result.stderr  # no rich bar
