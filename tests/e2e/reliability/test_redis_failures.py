"""Redis failures mid-drain: restarted with its data lost, and SIGKILLed with AOF always."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.e2e.reliability.conftest import (
    STREAM,
    docplanner_payloads,
    dp_account,
    key,
    spool_backlog,
    tally,
    wipe,
)
from tests.helpers import Daemon, wait_for, wait_settled, write_config

CLIENTS = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]


def test_redis_restarted_empty_mid_drain_gets_every_pending_notification_once(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Redis loses its data mid-drain: the spool backlog and all later pulls land once."""
    with DocPlannerSandbox(clients=CLIENTS, latency=0.005) as sandbox:
        sandbox.enqueue("pl-id", 3000)
        config = write_config(
            tmp_path / "drainer.toml",
            own_redis.url,
            docplanner=[dp_account("pl", sandbox, batch_size=20)],
        )
        client = redis.Redis.from_url(own_redis.url)
        try:
            with Daemon(config) as daemon:
                wait_for(lambda: client.xlen(STREAM) >= 600, 30, "600 entries")
                client.close()
                own_redis.stop(kill=True)
                handed_at_loss = len(sandbox.handed_out("pl-id"))
                wait_for(lambda: sandbox.queue_length("pl-id") == 0, 60, "pulled into the spool")
                backlog = spool_backlog(tmp_path)[1]
                deleted = wipe(own_redis)
                own_redis.start()
                client = redis.Redis.from_url(own_redis.url)
                handed = sandbox.handed_out("pl-id")
                wait_for(
                    lambda: client.xlen(STREAM) >= len(handed) - handed_at_loss,
                    60,
                    "the backlog republished",
                )
                wait_settled(daemon)
                assert daemon.stop() == 0
            published = docplanner_payloads(client)
        finally:
            client.close()
    acked_before_loss = len(handed) - len(published)
    counts = tally(published, handed[acked_before_loss:])
    print(
        counts.line(
            "redis-data-loss",
            f"handed out {len(handed)} ({handed_at_loss} before the loss), "
            f"gone with Redis' data {acked_before_loss}, spool backlog at restart "
            f"{backlog} notifications, deleted {deleted}",
        )
    )
    assert deleted, "the Redis data directory held something to lose"
    assert backlog > 0, "the daemon had a backlog in its spool when Redis came back"
    assert counts.duplicates == 0 and counts.unexpected == 0
    # What is on the stream is exactly the FIFO suffix that was not yet acknowledged ...
    assert published == handed[acked_before_loss:]
    # ... and it includes everything popped after Redis went away.
    assert acked_before_loss <= handed_at_loss
    assert {key(n) for n in handed[handed_at_loss:]} <= {key(p) for p in published}


def test_redis_sigkilled_three_times_with_aof_always_loses_and_duplicates_nothing(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """SIGKILL Redis (appendfsync always) 3x mid-drain: every notification on the stream once."""
    with DocPlannerSandbox(clients=CLIENTS, latency=0.005) as sandbox:
        sandbox.enqueue("pl-id", 3000)
        config = write_config(
            tmp_path / "drainer.toml",
            own_redis.url,
            docplanner=[dp_account("pl", sandbox, batch_size=20)],
        )
        client = redis.Redis.from_url(own_redis.url)
        kills = []
        try:
            with Daemon(config) as daemon:
                for threshold in (500, 1200, 2000):
                    wait_for(lambda t=threshold: client.xlen(STREAM) >= t, 30, f"{threshold}")
                    own_redis.stop(kill=True)
                    kills.append(len(sandbox.handed_out("pl-id")))
                    time.sleep(0.7)  # paces the fault: Redis stays down this long
                    own_redis.start()
                wait_for(lambda: sandbox.queue_length("pl-id") == 0, 60, "queue drained")
                wait_for(lambda: client.xlen(STREAM) >= 3000, 60, "3000 entries")
                wait_settled(daemon)
                assert daemon.stop() == 0
            published = docplanner_payloads(client)
        finally:
            client.close()
        handed = sandbox.handed_out("pl-id")
    counts = tally(published, handed)
    print(counts.line("redis-sigkill-aof", f"Redis killed when {kills} had been handed out"))
    assert len(handed) == 3000
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed, "FIFO order kept across the kills"
