"""A 403 is not the end (issue 14): DocPlanner pulls back off and resume; Retry-After dates.

The DocPlanner puller and its publisher are ticked against the sandbox and a real Redis,
as their two threads do in the daemon. The MyInvois side is in tests/test_myinvois.py.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest
import redis
import requests
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.batch import PullExpander
from daemon.envelope.docplanner import docplanner_event_id
from daemon.metrics import Metrics
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.publisher import Publisher
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import DocPlannerAccount
from daemon.sink import RedisSink, connect
from daemon.sources.budget import SlidingWindowBudget
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.docplanner.pull import DocPlannerPuller
from daemon.sources.http import UpstreamClient
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import Backoff
from tests.helpers import stream_entries

STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"


@pytest.fixture
def sandbox() -> Iterator[DocPlannerSandbox]:
    with DocPlannerSandbox(clients=[DocPlannerClient("pl-id", "pl-secret-value")]) as dp:
        yield dp


def puller_and_publisher(
    sandbox: DocPlannerSandbox, redis_server: LocalRedis, tmp_path: Path
) -> tuple[DocPlannerPuller, Publisher]:
    account = DocPlannerAccount(
        name="pl",
        base_url=sandbox.base_url,
        client_id="pl-id",
        client_secret="pl-secret-value",  # type: ignore[arg-type]
        batch_size=50,
        idle_interval=0.05,
    )
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    budget = SlidingWindowBudget(100_000, 3600.0)
    http = UpstreamClient("docplanner", "pl", metrics, budget, budgeted={"notifications"})
    spool_budget = SpoolBudget(1 << 30)
    spool = SpoolLog(tmp_path / "spool", spool_budget)
    sink = RedisSink(connect(redis_server.url, timeout=1.0), 86400.0, 0)
    expand = PullExpander("pl", STREAM, DEADLETTER, DocPlannerIntake(metrics, "pl"))
    publisher = Publisher("docplanner", "pl", spool, sink, metrics, DEADLETTER, expand=expand)
    puller = DocPlannerPuller(
        account, DocPlannerApi(account, http), spool, spool_budget, metrics, STREAM, DEADLETTER,
        budget, forbidden_backoff=Backoff(base=0.05, cap=0.3),
    )  # fmt: skip
    return puller, publisher


def run_until(
    puller: DocPlannerPuller, publisher: Publisher, done: Callable[[], bool], timeout: float = 20
) -> None:
    """Tick the puller and its publisher until ``done()``."""
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out; last error {puller.health.last_error}"
        wait = puller.tick(time.monotonic())
        if publisher.spool.pending_records:
            wait = min(wait, publisher.tick(time.monotonic()))
        if wait > 0:
            time.sleep(min(wait, 0.05))  # poll interval of a loop with a deadline


def test_a_burst_of_403_on_pulls_backs_off_names_it_and_resumes_without_restart(
    sandbox: DocPlannerSandbox, redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Six 403s: named in health (not_ready), counted, backed off; then all published once."""
    queued = sandbox.enqueue("pl-id", 400)
    puller, publisher = puller_and_publisher(sandbox, redis_server, tmp_path)
    try:
        run_until(puller, publisher, lambda: len(sandbox.handed_out("pl-id")) >= 100)
        sandbox.faults.script(["403"] * 6)
        run_until(puller, publisher, lambda: "not_ready" in puller.health.detail)
        assert "403" in str(puller.health.detail["not_ready"])
        assert puller.health.failing_since is not None
        run_until(
            puller,
            publisher,
            lambda: sandbox.queue_length("pl-id") == 0 and not publisher.spool.pending_records,
        )
        assert sandbox.faults.pending() == 0 and sandbox.count_status(403) == 6
        assert "not_ready" not in puller.health.detail, "cleared by the first good pull"
        assert puller.health.failing_since is None
        forbidden = puller.metrics.registry.get_sample_value(
            "drainer_upstream_forbidden_total", {"source": "docplanner", "account": "pl"}
        )
        assert forbidden == 6
        ids = Counter(e["event_id"] for e in stream_entries(redis_client, STREAM))
        assert max(ids.values()) == 1
        assert set(ids) == {docplanner_event_id("pl", item) for item in queued}
    finally:
        puller.api.http.close()
        publisher.sink.client.close()


def http_response(headers: dict[str, str]) -> requests.Response:
    response = requests.Response()
    response.status_code = 429
    response.headers.update(headers)
    return response


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    """Retry-After: 7 waits 7 s; an HTTP date 30 s after the response's Date waits 30 s."""
    metrics = Metrics(CollectorRegistry(), [("myinvois", "acme")])
    client = UpstreamClient("myinvois", "acme", metrics, wall_clock=lambda: 0.0)
    try:
        assert client._rate_limit_wait(http_response({"Retry-After": "7"})) == 7.0
        sent = datetime(2026, 11, 2, 10, 0, 0, tzinfo=UTC)
        later = format_datetime(sent + timedelta(seconds=30), usegmt=True)
        headers = {"Retry-After": later, "Date": format_datetime(sent, usegmt=True)}
        assert client._rate_limit_wait(http_response(headers)) == pytest.approx(30.0)
        past = {"Retry-After": format_datetime(sent, usegmt=True), "Date": headers["Retry-After"]}
        assert client._rate_limit_wait(http_response(past)) == 0.0
        garbage = client._rate_limit_wait(http_response({"Retry-After": "soon"}))
        assert garbage == 60.0, "neither form: the default wait"
    finally:
        client.close()
