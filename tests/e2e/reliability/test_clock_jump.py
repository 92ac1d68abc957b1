"""Upstream time jumps two hours forward mid-drain: tokens expire, the hourly window resets.

What is covered: the sandbox clock (upstream time) jumps +2 h while the daemon drains, so
every issued token is expired at the next call (401 -> exactly one fresh token), the
sandbox's sliding-hour GET window starts over and its ``X-RateLimit-Reset`` headers move
two hours ahead of the daemon's own clock. A jump of the daemon's *own* clock is not
simulated (that needs libfaketime, which is not installed here); the daemon measures
budgets, backoff and token lifetimes on ``time.monotonic``, which a wall-clock step does
not move, and uses the wall clock only for ``received_at`` and the rate-limit reset header.
"""

from __future__ import annotations

from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, SandboxClock
from tests.e2e.reliability.conftest import STREAM, docplanner_payloads, dp_account, tally
from tests.helpers import Daemon, wait_for, wait_settled, write_config

CLIENTS = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]


def token_calls(sandbox: DocPlannerSandbox) -> int:
    return sum(1 for _, path, _ in sandbox.requests if path == "/oauth/v2/token")


def test_upstream_clock_jump_of_two_hours_mid_drain_loses_and_duplicates_nothing(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """+2 h upstream mid-drain: one 401 and one fresh token, then all 3,000 once in order."""
    clock = SandboxClock()
    with DocPlannerSandbox(clients=CLIENTS, clock=clock, latency=0.005) as sandbox:
        sandbox.enqueue("pl-id", 3000)
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox, batch_size=20)],
        )
        with Daemon(config) as daemon:
            wait_for(lambda: redis_client.xlen(STREAM) >= 1000, 30, "1000 entries")
            tokens_before = token_calls(sandbox)
            clock.advance(2 * 3600)
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 60, "queue drained")
            wait_for(lambda: redis_client.xlen(STREAM) >= 3000, 30, "3000 entries")
            wait_settled(daemon)
            assert daemon.stop() == 0
        handed = sandbox.handed_out("pl-id")
        unauthorized = sandbox.count_status(401)
        tokens_after = token_calls(sandbox)
    published = docplanner_payloads(redis_client)
    counts = tally(published, handed)
    print(
        counts.line(
            "clock-jump",
            f"+2 h upstream: {unauthorized} x 401, tokens fetched {tokens_before} before "
            f"and {tokens_after - tokens_before} after the jump",
        )
    )
    assert unauthorized == 1 and tokens_after - tokens_before == 1
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed


def test_rate_limit_reset_after_an_upstream_clock_jump_is_not_a_stall(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """A 429 (reset in 1 s upstream time) after +2 h of upstream time delays pulls briefly."""
    clock = SandboxClock()
    with DocPlannerSandbox(clients=CLIENTS, clock=clock) as sandbox:
        sandbox.enqueue("pl-id", 500)
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox, batch_size=50)],
        )
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 20, "first 500 pulled")
            clock.advance(2 * 3600)
            wait_for(lambda: sandbox.count_status(401) == 1, 10, "the token expired")
            polls = sandbox.count_status(404)
            wait_for(lambda: sandbox.count_status(404) > polls, 10, "a pull with a new token")
            sandbox.faults.script(["429"])
            sandbox.enqueue("pl-id", 500)
            try:
                wait_for(lambda: sandbox.queue_length("pl-id") == 0, 12, "pulls resumed")
            finally:
                daemon.kill()
