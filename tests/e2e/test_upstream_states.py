"""Upstream answers read as the documents mean them, seen from outside (issue 25)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from daemon.commands.demo.localredis import LocalRedis
from daemon.commands.status import EXIT_NOT_READY
from daemon.envelope.docplanner import docplanner_event_id
from daemon.runtime.run import STOP_BUDGET
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config


def readyz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"http://127.0.0.1:{daemon.port}/readyz", timeout=10)
    return response.status_code, json.loads(response.text)


def test_a_wrong_docplanner_base_url_makes_readyz_503_naming_the_account(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """404s with another body (a wrong base_url) are no empty queue: /readyz 503 within 60 s."""
    with DocPlannerSandbox(clients=[DocPlannerClient("pl-id", "pl-secret-value")]) as sandbox:
        account = dp_account("pl", sandbox, base_url=f"{sandbox.base_url}/wrong")
        config = write_config(tmp_path / "drainer.toml", redis_server.url, docplanner=[account])
        with Daemon(config) as daemon:
            wait_for(lambda: readyz(daemon)[0] == 503, 60, "/readyz 503")
            status, body = readyz(daemon)
            reasons = body["not_ready"]
            assert status == 503 and "docplanner:pl:puller" in reasons, body
            assert "404" in reasons["docplanner:pl:puller"], body
            metrics = daemon.metrics()
            refused = (
                'drainer_upstream_refused{account="pl",reason="not_found",source="docplanner"}'
            )
            assert f"{refused} 1.0" in metrics
            assert daemon.stop() == 0
        assert sandbox.count_status(404) >= 1


def status(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "status", "--config", str(config), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_myinvois_400_not_about_page_size_shows_its_text_in_status(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Every page refused with 400 BadRequest: status names the account with upstream's text."""
    clients = [MyInvoisClient(client_id="acme-id", client_secret="acme-id-secret-value")]
    with MyInvoisSandbox(clients=clients, requests_per_minute=6000) as sandbox:
        sandbox.faults.set_rates({"400": 1.0})
        account = {
            "name": "acme",
            "base_url": sandbox.base_url,
            "client_id": "acme-id",
            "client_secret": "acme-id-secret-value",
            "requests_per_minute": 6000,
        }
        config = write_config(tmp_path / "drainer.toml", redis_server.url, myinvois=[account])
        with Daemon(config) as daemon:
            wait_for(lambda: readyz(daemon)[0] == 503, 60, "/readyz 503")
            result = status(config, "--json")
            human = status(config)
            metrics = daemon.metrics()
            assert daemon.stop() == 0
    assert result.returncode == EXIT_NOT_READY, result.stderr
    (found,) = json.loads(result.stdout)["accounts"]
    assert found["upstream_error"] == "BadRequest: The request is not valid", found
    assert "400" in found["last_error"]
    assert "BadRequest: The request is not valid" in human.stdout
    assert "BadRequest: The request is not valid" in human.stderr  # the problem line
    assert "acme-id-secret-value" not in human.stdout + human.stderr + result.stdout
    refused = 'drainer_upstream_refused{account="acme",reason="bad_request",source="myinvois"}'
    assert f"{refused} 1.0" in metrics


@pytest.mark.slow
def test_sigterm_while_a_slow_pull_is_in_flight_waits_for_it_and_publishes_it(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """SIGTERM right after a pull popped its batch, answered 11 s later: published, exit 0."""
    # 11 s: past the old 10 s read timeout (that code lost this batch), within INTAKE_JOIN.
    client = redis.Redis.from_url(redis_server.url, decode_responses=True)
    client.flushall()
    with DocPlannerSandbox(clients=[DocPlannerClient("pl-id", "pl-secret-value")]) as sandbox:
        queued = sandbox.enqueue("pl-id", 20)
        sandbox.faults.script(["slow_answer:11"])
        account = dp_account("pl", sandbox)
        config = write_config(tmp_path / "drainer.toml", redis_server.url, docplanner=[account])
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.handed_out("pl-id"), 30, "the batch popped upstream")
            started = time.monotonic()
            assert daemon.stop(timeout=60) == 0
            took = time.monotonic() - started
    # Bounded by the stop budget, not by the pull's 60 s read timeout; +5 s for a loaded
    # machine (the answer alone takes 11 s of the 20).
    assert took < STOP_BUDGET + 5, f"exit took {took:.1f}s"
    ids = {entry["event_id"] for entry in stream_entries(client, "drainer:{docplanner}")}
    client.close()
    assert ids == {docplanner_event_id("pl", item) for item in queued}
