"""Upstream answers read as the documents mean them, seen from outside (issue 25)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import Daemon, dp_account, wait_for, write_config


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
