"""Start-up: a broken config exits 2 with one line; an unreachable Redis does not stop intake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.e2e.reliability.conftest import STREAM, docplanner_payloads, spool_backlog, tally
from tests.helpers import ROOT, Daemon, wait_for, wait_settled, write_config

SECRET = "pl-secret-value"
GOOD: dict[str, Any] = {
    "name": "pl",
    "base_url": "https://www.znanylekarz.pl",
    "client_id": "pl-id",
    "client_secret": SECRET,
}


def run(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("account", "extra", "key"),
    [
        ({**GOOD, "requests_per_hour": 0}, "", "requests_per_hour"),
        ({**GOOD, "mode": "sometimes"}, "", "mode"),
        ({k: v for k, v in GOOD.items() if k != "client_secret"}, "", "client_secret"),
        ({**GOOD, "pull_interval": "5s"}, "", "pull_interval"),
        (GOOD, 'colour = "always"', "colour"),
        ({**GOOD, "idle_interval": "a while"}, "", "idle_interval"),
    ],
    ids=["out-of-range", "bad-enum", "missing-secret", "unknown-account-key", "unknown-key",
         "bad-duration"],
)  # fmt: skip
def test_broken_config_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, account: dict[str, Any], extra: str, key: str
) -> None:
    """``drainer run`` on a broken config: exit 2, one stderr line naming key and file."""
    config = write_config(
        tmp_path / "broken.toml", "redis://127.0.0.1:1/0", docplanner=[account], extra=extra
    )
    result = run(config)
    lines = result.stderr.strip().splitlines()
    print(f"\n[bad-config:{key}] exit {result.returncode}: {lines}")
    assert result.returncode == 2
    assert len(lines) == 1, lines
    assert key in lines[0] and "broken.toml" in lines[0]
    assert SECRET not in result.stderr + result.stdout
    assert not (tmp_path / "spool").exists(), "nothing was started"


def test_unparseable_toml_exits_2_with_one_line(tmp_path: Path) -> None:
    """A TOML syntax error: exit 2 and one line naming the file."""
    config = tmp_path / "broken.toml"
    config.write_text('[redis]\nurl = "redis://127.0.0.1:1/0\n')
    result = run(config)
    lines = result.stderr.strip().splitlines()
    print(f"\n[bad-config:syntax] exit {result.returncode}: {lines}")
    assert result.returncode == 2 and len(lines) == 1 and "broken.toml" in lines[0]


def test_unreachable_redis_at_start_keeps_pulling_into_the_spool(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Redis down at start: the daemon runs, spools every pull, /readyz 503; Redis up: all once."""
    own_redis.stop()
    clients = [DocPlannerClient(client_id="pl-id", client_secret=SECRET)]
    with DocPlannerSandbox(clients=clients) as sandbox:
        sandbox.enqueue("pl-id", 2000)
        account = {**GOOD, "base_url": sandbox.base_url, "idle_interval": "200ms"}
        config = write_config(tmp_path / "drainer.toml", own_redis.url, docplanner=[account])
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 30, "pulled with Redis down")
            wait_for(lambda: spool_backlog(tmp_path) == (20, 2000), 10, "all of it spooled")
            backlog = spool_backlog(tmp_path)
            ready = requests.get(f"http://127.0.0.1:{daemon.port}/readyz", timeout=5)
            assert daemon.process is not None and daemon.process.poll() is None, "still running"
            own_redis.start()
            client = redis.Redis.from_url(own_redis.url)
            try:
                wait_for(lambda: client.xlen(STREAM) >= 2000, 60, "the spool published")
                wait_for(lambda: daemon.get("/readyz") == 200, 20, "/readyz 200")
                wait_settled(daemon)
                assert daemon.stop() == 0
                published = docplanner_payloads(client)
            finally:
                client.close()
        handed = sandbox.handed_out("pl-id")
    counts = tally(published, handed)
    print(
        counts.line(
            "redis-down-at-start",
            f"spooled {backlog[1]} in {backlog[0]} records, /readyz {ready.status_code} "
            f"{ready.json()}",
        )
    )
    assert backlog == (20, 2000)
    assert ready.status_code == 503 and "redis" in ready.json()["not_ready"]
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed
