"""`drainer check-config --connect`: Redis, a token per account, one MyInvois page; no pull."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox.docplanner import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.myinvois import MyInvoisClient, MyInvoisSandbox
from tests.helpers import ROOT, dp_account, write_config

TIN = "C9876543210"
PASSWORD = "the-right-redis-password"
SECRETS = ("pl-secret-value", "ok-secret-value", "agent-secret-value", PASSWORD)


@pytest.fixture
def upstreams() -> Iterator[tuple[DocPlannerSandbox, MyInvoisSandbox]]:
    """DocPlanner (two clients, 30 queued each) and MyInvois (a taxpayer, an intermediary)."""
    clients = [
        DocPlannerClient("pl-id", "pl-secret-value"),
        DocPlannerClient("ok-id", "ok-secret-value"),
    ]
    invois = [
        MyInvoisClient("acme-id", "acme-secret-value"),
        MyInvoisClient("agent-id", "agent-secret-value", on_behalf_of=TIN),
    ]
    with (
        DocPlannerSandbox(clients=clients) as docplanner,
        MyInvoisSandbox(clients=invois, identity_port=0, requests_per_minute=600) as myinvois,
    ):
        docplanner.enqueue("pl-id", 30)
        docplanner.enqueue("ok-id", 30)
        recent = datetime.now(UTC) - timedelta(minutes=30)
        myinvois.add_notifications_at("acme-id", [recent, recent, recent])
        yield docplanner, myinvois


def myinvois_account(sandbox: MyInvoisSandbox, name: str, **extra: str) -> dict[str, str]:
    return {
        "name": name,
        "base_url": sandbox.base_url,
        "identity_url": sandbox.identity_url,
        "client_id": f"{name}-id",
        "client_secret": f"{name}-secret-value",
        **extra,
    }


def check_connect(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "--connect", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
    )


def report(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    """The check lines on stderr by name: {"redis": "ok    redis: ...", ...}."""
    lines = [line for line in result.stderr.splitlines() if line[:4] in {"ok  ", "FAIL"}]
    return {line[6:].split(":")[0]: line for line in lines}


def test_everything_reachable_passes_and_pulls_nothing(
    tmp_path: Path,
    own_redis: LocalRedis,
    upstreams: tuple[DocPlannerSandbox, MyInvoisSandbox],
) -> None:
    """A config that reaches everything: one ok line per check, exit 0, the queues untouched."""
    docplanner, myinvois = upstreams
    accounts = [dp_account("pl", docplanner), dp_account("ok", docplanner)]
    invois = [
        myinvois_account(myinvois, "acme"),
        myinvois_account(myinvois, "agent", on_behalf_of=TIN),
    ]
    config = write_config(tmp_path / "drainer.toml", own_redis.url, accounts, invois)
    result = check_connect(config)
    assert result.returncode == 0, result.stderr
    lines = report(result)
    assert set(lines) == {
        "redis",
        "redis server",
        "redis eviction",
        "redis durability",
        "docplanner pl",
        "docplanner ok",
        "myinvois acme",
        "myinvois agent",
    }, result.stderr
    assert all(line.startswith("ok  ") for line in lines.values()), result.stderr
    assert "appendonly yes" in lines["redis server"]
    assert "nothing pulled" in lines["docplanner pl"]
    assert "one page read (pageSize=1, last hour): 1 notification" in lines["myinvois acme"]
    assert f"with onbehalfof {TIN}" in lines["myinvois agent"]
    assert docplanner.queue_length("pl-id") == docplanner.queue_length("ok-id") == 30
    assert docplanner.handed_out("pl-id") == []
    assert json.loads(result.stdout)["redis"]["url"] == own_redis.url  # the config, as before


def test_wrong_password_secret_and_onbehalfof_are_each_named_in_one_line(
    tmp_path: Path,
    own_redis: LocalRedis,
    upstreams: tuple[DocPlannerSandbox, MyInvoisSandbox],
) -> None:
    """Three mistakes, three FAIL lines naming them, exit 1, no secret printed, nothing pulled."""
    docplanner, myinvois = upstreams
    client = redis.Redis.from_url(own_redis.url)
    client.config_set("requirepass", PASSWORD)
    client.close()
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "redis-password").write_text("not-the-redis-password\n")
    accounts = [
        dp_account("pl", docplanner, client_secret="not-the-pl-secret"),
        dp_account("ok", docplanner),
    ]
    invois = [myinvois_account(myinvois, "agent", on_behalf_of="C0000000000")]
    config = write_config(tmp_path / "drainer.toml", own_redis.url, accounts, invois)
    config.write_text(
        config.read_text().replace("[spool]", 'password_file = "redis-password"\n[spool]', 1)
    )
    config.chmod(0o600)
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "--connect", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
        check=False,
        env={**os.environ, "CREDENTIALS_DIRECTORY": str(credentials)},
    )
    assert result.returncode == 1, result.stderr
    lines = report(result)
    assert lines["redis"].startswith("FAIL  redis: redis://127.0.0.1:")
    assert "authentication refused: check redis.password_file" in lines["redis"]
    assert lines["docplanner pl"].startswith("FAIL  docplanner pl: token request refused (401")
    assert "check client_id and client_secret" in lines["docplanner pl"]
    assert lines["docplanner ok"].startswith("ok  ")
    assert lines["myinvois agent"] == (
        "FAIL  myinvois agent: login with onbehalfof C0000000000: token request refused"
        " (400 invalid_grant): the client may not act for taxpayer C0000000000 (on_behalf_of)"
    )
    assert result.stderr.splitlines()[-1] == (
        "drainer: check-config --connect: 3 failed: redis, docplanner pl, myinvois agent"
    )
    output = result.stdout + result.stderr
    assert not [s for s in (*SECRETS, "not-the-pl-secret", "not-the-redis-password") if s in output]
    assert docplanner.queue_length("pl-id") == docplanner.queue_length("ok-id") == 30
    assert docplanner.handed_out("ok-id") == []
