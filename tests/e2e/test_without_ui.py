"""Without the optional ``ui`` extra (``rich``): the daemon and ``status`` work, ``demo`` says so.

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
from daemon.commands.status import EXIT_DAEMON_UNREACHABLE
from daemon.sandbox import MyInvoisClient, MyInvoisSandbox
from daemon.sources.myinvois.api import iso_z
from tests.helpers import write_config

WITHOUT_RICH = (
    "import sys; sys.modules['rich'] = None; from daemon.cli import main; sys.exit(main())"
)


def drainer(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_RICH, *args],
        capture_output=True,
        text=True,
        timeout=60,
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


def test_demo_without_rich_names_the_extra_and_exits_2() -> None:
    """`drainer demo` without rich: one line saying how to install the ui extra, exit 2."""
    result = drainer("demo", "--seconds", "1")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "drainer demo: this needs the optional ui extra (rich): "
        "pip install 'notification-drainer[ui]'"
    ]


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
