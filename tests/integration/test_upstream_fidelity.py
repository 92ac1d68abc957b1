"""Upstream answers read as the documents mean them (issue 25), against the sandboxes.

The DocPlanner puller and its publisher are ticked against the sandbox and a real Redis,
as their two threads do in the daemon (see tests/integration/test_forbidden_recovery.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.docplanner import docplanner_event_id
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import stream_entries, wait_for
from tests.integration.test_forbidden_recovery import STREAM, puller_and_publisher, run_until

REFUSED = {"source": "docplanner", "account": "pl", "reason": "not_found"}


@pytest.fixture
def sandbox() -> Iterator[DocPlannerSandbox]:
    with DocPlannerSandbox(clients=[DocPlannerClient("pl-id", "pl-secret-value")]) as dp:
        yield dp


def test_a_moved_route_is_a_named_failing_state_not_an_idle_queue(
    sandbox: DocPlannerSandbox, redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """Token fine, pulls 404 "Object not found": not_ready, gauge 1; route back: all published."""
    queued = sandbox.enqueue("pl-id", 30)
    sandbox.api_prefix = "/api/v4/integration"  # the API moved; the token endpoint did not
    puller, publisher = puller_and_publisher(sandbox, redis_server, tmp_path)
    try:
        run_until(puller, publisher, lambda: "not_ready" in puller.health.snapshot().detail)
        assert "404" in str(puller.health.snapshot().detail["not_ready"])
        registry = puller.metrics.registry
        assert registry.get_sample_value("drainer_upstream_refused", REFUSED) == 1
        assert puller.health.last_success is None, "a wrong route never looks idle"
        sandbox.api_prefix = "/api/v3/integration"
        run_until(puller, publisher, lambda: len(stream_entries(redis_client, STREAM)) == 30)
        assert "not_ready" not in puller.health.snapshot().detail
        assert registry.get_sample_value("drainer_upstream_refused", REFUSED) == 0
        ids = {e["event_id"] for e in stream_entries(redis_client, STREAM)}
        assert ids == {docplanner_event_id("pl", item) for item in queued}
    finally:
        puller.api.http.close()
        publisher.sink.client.close()


@pytest.mark.slow
def test_a_pull_answered_after_20_seconds_is_published_not_lost(
    sandbox: DocPlannerSandbox, redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The sandbox pops a batch and answers 22 s later: the generous read timeout keeps it."""
    queued = sandbox.enqueue("pl-id", 20)
    sandbox.faults.script(["slow_answer:22"])
    puller, publisher = puller_and_publisher(sandbox, redis_server, tmp_path)
    stop = threading.Event()

    def publish() -> None:
        while not stop.is_set():
            stop.wait(publisher.tick(time.monotonic()) if publisher.spool.pending_records else 0.05)

    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        wait = puller.tick(time.monotonic())  # blocks until the slow answer arrives
        assert wait == 0.0, puller.health.last_error
        assert sandbox.faults.pending() == 0 and sandbox.lost_in_flight("pl-id") == []
        wait_for(lambda: len(stream_entries(redis_client, STREAM)) == 20, 60, "20 published")
        ids = {e["event_id"] for e in stream_entries(redis_client, STREAM)}
        assert ids == {docplanner_event_id("pl", item) for item in queued}
        assert sandbox.queue_length("pl-id") == 0
    finally:
        stop.set()
        thread.join(timeout=10)
        puller.api.http.close()
        publisher.sink.client.close()
