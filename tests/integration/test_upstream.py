"""The shared HTTP client against the DocPlanner sandbox: which 429s block which budget."""

from __future__ import annotations

import time

import pytest
from prometheus_client import CollectorRegistry

from daemon.errors import RateLimitedError
from daemon.metrics import Metrics
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import DocPlannerAccount
from daemon.sources.budget import SlidingWindowBudget
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.http import UpstreamClient


def api_for(sandbox: DocPlannerSandbox) -> tuple[DocPlannerApi, SlidingWindowBudget]:
    account = DocPlannerAccount(
        name="pl",
        base_url=sandbox.base_url,
        client_id="pl-id",
        client_secret="pl-secret-value",  # type: ignore[arg-type]
        mode="both",
        push_token="tok-123456",  # type: ignore[arg-type]
    )
    budget = SlidingWindowBudget(8000, 3600)
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    http = UpstreamClient("docplanner", "pl", metrics, budget, budgeted={"notifications"})
    return DocPlannerApi(account, http), budget


def test_release_429_does_not_block_the_pull_budget() -> None:
    """A release 429 (once per hour) raises for release but leaves pulls free to go."""
    client = DocPlannerClient("pl-id", "pl-secret-value", push_url="http://127.0.0.1:9/x")
    with DocPlannerSandbox(clients=[client]) as sandbox:
        api, budget = api_for(sandbox)
        try:
            assert api.release() == 204
            with pytest.raises(RateLimitedError):
                api.release()
            assert budget.try_acquire(time.monotonic()) == 0
            assert api.pull(10).body is None  # the queue is empty: 404, and no 429 wait
        finally:
            api.http.close()


def test_pull_429_blocks_the_pull_budget() -> None:
    """A 429 on the pull endpoint blocks the GET budget until the upstream's reset."""
    client = DocPlannerClient("pl-id", "pl-secret-value")
    with DocPlannerSandbox(clients=[client]) as sandbox:
        api, budget = api_for(sandbox)
        sandbox.faults.script(["429"])
        try:
            with pytest.raises(RateLimitedError):
                api.pull(10)
            assert budget.try_acquire(time.monotonic()) > 0
        finally:
            api.http.close()
