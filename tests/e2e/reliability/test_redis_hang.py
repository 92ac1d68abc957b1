"""Redis that hangs mid-drain, and Redis unreachable at start whatever the topology (SPEC §6).

A hung Redis (SIGSTOP: connections open, no answers) must not slow the endpoints past
their bounds: /healthz 1 s, /readyz 3 s, /metrics 5 s. These are deadlines on a hung
dependency, not speed figures.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
import requests

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.e2e.reliability.conftest import (
    STREAM,
    docplanner_payloads,
    dp_account,
    metric,
    spool_backlog,
    tally,
)
from tests.helpers import Daemon, wait_for, write_config

CLIENTS = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
BOUNDS = {"/healthz": 1.0, "/readyz": 3.0, "/metrics": 5.0}
STALL = 15.0


@dataclass(frozen=True)
class Answer:
    path: str
    code: int
    seconds: float
    body: str


def ask(port: int, path: str) -> Answer:
    started = time.monotonic()
    try:
        response = requests.get(f"http://127.0.0.1:{port}{path}", timeout=BOUNDS[path] + 5)
    except requests.RequestException as exc:
        return Answer(path, 0, time.monotonic() - started, repr(exc))
    return Answer(path, response.status_code, time.monotonic() - started, response.text)


def test_redis_hung_mid_drain_keeps_endpoints_in_bounds_and_pulling(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Redis SIGSTOPped 15 s mid-drain: endpoints within bounds, pulls spooled, all once after."""
    with DocPlannerSandbox(clients=CLIENTS, latency=0.005) as sandbox:
        sandbox.enqueue("pl-id", 2000)
        config = write_config(
            tmp_path / "drainer.toml",
            own_redis.url,
            docplanner=[dp_account("pl", sandbox, batch_size=20)],
        )
        client = redis.Redis.from_url(own_redis.url)
        answers: list[Answer] = []
        try:
            with Daemon(config) as daemon:
                wait_for(lambda: client.xlen(STREAM) >= 300, 60, "300 entries published")
                wait_for(lambda: daemon.get("/readyz") == 200, 20, "/readyz 200 before")
                os.kill(own_redis.pid, signal.SIGSTOP)
                stopped = time.monotonic()
                try:
                    sandbox.enqueue("pl-id", 500)  # arrives while Redis hangs
                    while time.monotonic() - stopped < STALL:
                        answers.extend(ask(daemon.port, path) for path in BOUNDS)
                    handed_in_stall = len(sandbox.handed_out("pl-id"))
                    queue_in_stall = sandbox.queue_length("pl-id")
                    backlog = spool_backlog(tmp_path)
                finally:
                    os.kill(own_redis.pid, signal.SIGCONT)
                wait_for(lambda: sandbox.queue_length("pl-id") == 0, 60, "queue drained")
                handed = sandbox.handed_out("pl-id")
                wait_for(lambda: client.xlen(STREAM) >= len(handed), 90, "all published")
                wait_for(lambda: daemon.get("/readyz") == 200, 30, "/readyz 200 after")
                after = ask(daemon.port, "/metrics")
                assert daemon.stop() == 0
            published = docplanner_payloads(client)
        finally:
            client.close()
    counts = tally(published, handed)
    slowest = {p: max(a.seconds for a in answers if a.path == p) for p in BOUNDS}
    late = [a for a in answers if a.path == "/readyz"][-3:]
    print(
        counts.line(
            "redis-hung",
            f"{len(answers)} requests in the stall, slowest {slowest}, "
            f"handed out {handed_in_stall} by the end of the stall (queue {queue_in_stall}), "
            f"spool backlog {backlog}",
        )
    )
    for answer in answers:
        assert answer.seconds <= BOUNDS[answer.path], answer
        assert answer.code in ((200, 503) if answer.path == "/readyz" else (200,)), answer
    # Redis counted as down once the probe went stale, and said so until the end.
    assert all(a.code == 503 and "redis" in a.body for a in late), late
    last_metrics = [a for a in answers if a.path == "/metrics"][-1]
    assert metric(last_metrics.body, "drainer_redis_up") == 0
    assert "drainer_stream_length{" not in last_metrics.body
    assert metric(last_metrics.body, "drainer_redis_probe_age_seconds") > 5
    # Pulling went on: what was enqueued during the stall went into the spool.
    assert queue_in_stall == 0 and backlog[1] > 0
    assert metric(after.body, "drainer_redis_up") == 1
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0


@pytest.mark.parametrize("topology", ["sentinel", "cluster"])
def test_unreachable_redis_at_start_any_topology_serves_and_spools(
    tmp_path: Path, topology: str
) -> None:
    """Sentinel or Cluster unreachable at start: /healthz 200, /readyz 503, pulls spooled."""
    url = {
        "sentinel": f"redis+sentinel://127.0.0.1:{free_port()}/mymaster/0",
        "cluster": f"redis+cluster://127.0.0.1:{free_port()}",
    }[topology]
    with DocPlannerSandbox(clients=CLIENTS) as sandbox:
        sandbox.enqueue("pl-id", 400)
        config = write_config(
            tmp_path / "drainer.toml", url, docplanner=[dp_account("pl", sandbox, batch_size=20)]
        )
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 30, "pulled with Redis away")
            wait_for(lambda: spool_backlog(tmp_path) == (20, 400), 10, "all of it spooled")
            health, ready, scrape = (ask(daemon.port, path) for path in BOUNDS)
            assert daemon.stop() == 0
        log = daemon.log
    assert health.code == 200
    assert ready.code == 503 and "redis" in ready.body, ready
    assert scrape.code == 200 and metric(scrape.body, "drainer_redis_up") == 0
    assert "Traceback" not in log


def test_redis_hung_at_start_the_daemon_still_starts_and_spools(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Redis SIGSTOPped before start: /healthz within 20 s, pulls spooled, all once after."""
    with DocPlannerSandbox(clients=CLIENTS) as sandbox:
        sandbox.enqueue("pl-id", 400)
        config = write_config(
            tmp_path / "drainer.toml",
            own_redis.url,
            docplanner=[dp_account("pl", sandbox, batch_size=20)],
        )
        client = redis.Redis.from_url(own_redis.url)
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            # Daemon.start waits at most 20 s for /healthz: the start-up checks (INFO) each
            # give up after one socket timeout (5 s) instead of four.
            with Daemon(config) as daemon:
                wait_for(lambda: sandbox.queue_length("pl-id") == 0, 30, "pulled while hung")
                ready = ask(daemon.port, "/readyz")
                os.kill(own_redis.pid, signal.SIGCONT)
                wait_for(lambda: client.xlen(STREAM) >= 400, 60, "published after resume")
                wait_for(lambda: daemon.get("/readyz") == 200, 30, "/readyz 200 after")
                assert daemon.stop() == 0
            published = docplanner_payloads(client)
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
            client.close()
        handed = sandbox.handed_out("pl-id")
    counts = tally(published, handed)
    print(counts.line("redis-hung-at-start", f"/readyz while hung {ready.code} {ready.body}"))
    assert ready.code == 503 and "redis" in ready.body and ready.seconds <= BOUNDS["/readyz"]
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
