"""The shared HTTP client against the DocPlanner sandbox: which 429s block which budget."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from daemon.errors import RateLimitedError, TransientError
from daemon.metrics import Metrics
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import DocPlannerAccount
from daemon.sources.budget import SlidingWindowBudget
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.http import UpstreamClient


def api_for(
    sandbox: DocPlannerSandbox, base_url: str | None = None
) -> tuple[DocPlannerApi, SlidingWindowBudget]:
    account = DocPlannerAccount(
        name="pl",
        base_url=base_url or sandbox.base_url,
        client_id="pl-id",
        client_secret="pl-secret-value",  # type: ignore[arg-type]
        mode="both",
        push_token="tok-1234567890abcdef",  # type: ignore[arg-type]
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


def test_a_netrc_entry_for_the_host_does_not_replace_the_bearer_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """requests with trust_env reads ~/.netrc on each call and sends its Basic auth instead."""
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password elsewhere\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    client = DocPlannerClient("pl-id", "pl-secret-value")
    with DocPlannerSandbox(clients=[client]) as sandbox:
        sandbox.enqueue("pl-id", 3)
        api, _ = api_for(sandbox)
        try:
            body = api.pull(10).body
            assert body is not None and body.count(b'"created_at"') == 3
        finally:
            api.http.close()


def test_environment_proxies_are_honoured_and_no_proxy_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """HTTP_PROXY (read once per host) carries the calls; NO_PROXY sends them direct."""
    client = DocPlannerClient("pl-id", "pl-secret-value")
    with DocPlannerSandbox(clients=[client]) as sandbox:
        sandbox.enqueue("pl-id", 2)
        # The sandbox answers absolute-form requests, so it can stand in for a proxy: the
        # name below resolves nowhere, only the proxy can reach "it".
        monkeypatch.setenv("HTTP_PROXY", sandbox.base_url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        api, _ = api_for(sandbox, base_url="http://docplanner.invalid")
        try:
            body = api.pull(10).body
            assert body is not None and body.count(b'"created_at"') == 2
        finally:
            api.http.close()
        monkeypatch.setenv("NO_PROXY", "docplanner.invalid")
        direct, _ = api_for(sandbox, base_url="http://docplanner.invalid")
        try:
            assert direct.http.proxies_for("http://docplanner.invalid/x") == {}
            with pytest.raises(TransientError):
                direct.pull(10)
        finally:
            direct.http.close()
