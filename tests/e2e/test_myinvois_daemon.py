"""MyInvois through the real CLI: drainer backfill and drainer run polling end to end."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import MyInvoisSandbox
from daemon.sources.myinvois.api import iso_z
from tests.helpers import ROOT, Daemon, stream_entries, wait_for, write_config
from tests.integration.test_myinvois import myinvois_order_key, sandbox_clients

STREAM = "drainer:{myinvois}"
WATERMARK = "drainer:{myinvois}:watermark:acme"
TIN = "C9876543210"
FAST = 6000  # requests per minute for tests that are not about the budget


@pytest.fixture
def sandbox() -> Iterator[MyInvoisSandbox]:
    """Identity service and API on two different ports, as production may have them."""
    with MyInvoisSandbox(
        clients=sandbox_clients(), requests_per_minute=FAST, identity_port=0
    ) as server:
        yield server


def token_requests(sandbox: MyInvoisSandbox) -> int:
    """Logins served by the identity service (none may reach the API port)."""
    assert not any(path == "/connect/token" for _, path, _ in sandbox.requests)
    identity = sandbox.identity if sandbox.identity is not None else sandbox
    return sum(1 for method, path, _ in identity.requests if path == "/connect/token")


def now_utc() -> datetime:
    return datetime.fromtimestamp(int(time.time()), UTC)


def backfill(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "backfill", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.slow
def test_backfill_cli_publishes_a_range_once_and_leaves_the_watermark(
    tmp_path: Path, sandbox: MyInvoisSandbox, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """``drainer backfill`` publishes the range oldest first; a rerun adds nothing."""
    now = now_utc()
    added = sandbox.add_notifications(
        "acme-id", 400, start=now - timedelta(days=3), end=now - timedelta(days=1)
    )
    since, until = now - timedelta(days=2, hours=12), now - timedelta(days=1, hours=12)

    def sent(item: dict[str, Any]) -> datetime:
        return datetime.fromisoformat(item["receivedDateTime"].replace("Z", "+00:00"))

    inside = [n for n in added if since <= sent(n) <= until]  # dateFrom/dateTo: date sent
    acct = {
        "name": "acme",
        "base_url": sandbox.base_url,
        "identity_url": sandbox.identity_url,
        "client_id": "acme-id",
        "client_secret": "acme-id-secret-value",
        "requests_per_minute": FAST,
        "page_size": 50,
    }
    config = write_config(tmp_path / "drainer.toml", redis_server.url, myinvois=[acct])
    redis_client.set(WATERMARK, "1234.5")
    window = ["--account", "acme", "--since", iso_z(since), "--until", iso_z(until)]
    first = backfill(config, *window)
    assert first.returncode == 0, first.stderr
    assert "de-duplication window" not in first.stderr, "inside the 35-day window: no warning"
    entries = stream_entries(redis_client, STREAM)
    assert [json.loads(e["payload"]) for e in entries] == sorted(inside, key=myinvois_order_key)
    assert f"{len(inside)} published" in first.stderr
    again = backfill(config, *window)
    assert again.returncode == 0, again.stderr
    assert "0 published" in again.stderr
    assert redis_client.xlen(STREAM) == len(inside)
    assert redis_client.get(WATERMARK) == "1234.5", "the live watermark is left alone"
    assert "secret-value" not in first.stdout + first.stderr
    unknown = backfill(
        config, "--account", "nope", "--since", iso_z(since), "--until", iso_z(until)
    )
    assert unknown.returncode == 2 and "'nope'" in unknown.stderr


@pytest.mark.slow
def test_backfill_warns_before_starting_when_since_is_older_than_the_window(
    tmp_path: Path, sandbox: MyInvoisSandbox, redis_server: LocalRedis
) -> None:
    """--since 40 days ago, past the 35-day MyInvois window: a warning before any request."""
    now = now_utc()
    acct = {
        "name": "acme",
        "base_url": sandbox.base_url,
        "identity_url": sandbox.identity_url,
        "client_id": "acme-id",
        "client_secret": "acme-id-secret-value",
        "requests_per_minute": FAST,
    }
    config = write_config(tmp_path / "drainer.toml", redis_server.url, myinvois=[acct])
    since, until = now - timedelta(days=40), now - timedelta(days=39, hours=12)
    done = backfill(config, "--account", "acme", "--since", iso_z(since), "--until", iso_z(until))
    assert done.returncode == 0, done.stderr
    warning = done.stderr.index("older than the MyInvois de-duplication window (35 days")
    assert warning < done.stderr.index("backfill acme "), "the warning comes first"


@pytest.mark.slow
def test_daemon_polls_myinvois_end_to_end(
    tmp_path: Path, sandbox: MyInvoisSandbox, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """``drainer run`` polls an intermediary account (identity port) and exports its watermark."""
    now = now_utc()
    sandbox.add_notifications(
        "agent-id", 200, start=now - timedelta(hours=1), end=now - timedelta(seconds=10)
    )
    acct = {
        "name": "agent",
        "base_url": sandbox.base_url,
        "identity_url": sandbox.identity_url,
        "client_id": "agent-id",
        "client_secret": "agent-id-secret",
        "on_behalf_of": TIN,
        "requests_per_minute": FAST,
        "interval": "500ms",
        "start_at": iso_z(now - timedelta(hours=2)),
    }
    config = write_config(tmp_path / "drainer.toml", redis_server.url, myinvois=[acct])
    with Daemon(config) as daemon:
        wait_for(lambda: redis_client.xlen(STREAM) >= 200, 20, "200 entries")
        agent_watermark = "drainer:{myinvois}:watermark:agent"
        wait_for(lambda: redis_client.get(agent_watermark) is not None, 10, "the watermark")
        metrics = daemon.metrics()
        assert daemon.stop() == 0
    assert redis_client.xlen(STREAM) == 200
    line = next(
        m for m in metrics.splitlines()
        if m.startswith("drainer_myinvois_watermark_timestamp_seconds{")
    )  # fmt: skip
    assert float(line.split()[-1]) > now.timestamp() - 60
    assert "myinvois.window_completed" in daemon.log
    assert "agent-id-secret" not in daemon.log
    assert token_requests(sandbox) == 1
