"""A pulled batch the full spool refused is never dropped on the way out (SPEC §5)."""

from __future__ import annotations

from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.e2e.reliability.conftest import docplanner_payloads, tally
from tests.helpers import Daemon, wait_for, write_config

ACCOUNTS = ("pl", "es", "it")
BIG = 20  # items of ~260 KB: one pull of them (5 MB) is more than the whole 4 MiB spool


def big_items(sandbox: DocPlannerSandbox, name: str) -> list[object]:
    """One batch larger than the spool's room: a pull of it always finds the spool full."""
    items = sandbox.factory.batch(BIG, sandbox.clock.now())
    for n, item in enumerate(items):
        item["data"]["blob"] = f"{name}-{n}-" + "x" * 260_000
    sandbox.enqueue_raw(f"{name}-id", items)
    return items


def test_batches_the_full_spool_refused_survive_sigterm_and_are_published_after_restart(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Redis down, three accounts pull batches the full 4 MiB spool has no room for; SIGTERM;
    restart with Redis up: every pulled notification on the stream once."""
    clients = [DocPlannerClient(client_id=f"{n}-id", client_secret=f"{n}-secret") for n in ACCOUNTS]
    with DocPlannerSandbox(clients=clients) as sandbox:
        accounts = [
            {
                "name": name,
                "base_url": sandbox.base_url,
                "client_id": f"{name}-id",
                "client_secret": f"{name}-secret",
                "idle_interval": "200ms",
                "batch_size": BIG,
            }
            for name in ACCOUNTS
        ]
        config = write_config(
            tmp_path / "drainer.toml", own_redis.url, docplanner=accounts, spool_max="4MiB"
        )
        daemon = Daemon(config).start()
        try:
            own_redis.stop()
            for name in ACCOUNTS:
                big_items(sandbox, name)
                sandbox.enqueue(f"{name}-id", 30)  # stays upstream: no room to pull it
            wait_for(
                lambda: all(sandbox.queue_length(f"{n}-id") == 30 for n in ACCOUNTS),
                60,
                "every account's big batch popped",
            )
            assert daemon.stop() == 0
            own_redis.start()
            daemon.start()
            wait_for(
                lambda: all(sandbox.queue_length(f"{n}-id") == 0 for n in ACCOUNTS),
                60,
                "the rest pulled after the restart",
            )
            client = redis.Redis.from_url(own_redis.url)
            try:
                wait_for(
                    lambda: client.xlen("drainer:{docplanner}") >= len(ACCOUNTS) * (BIG + 30),
                    60,
                    "every notification on the stream",
                )
                assert daemon.stop() == 0
                published = {n: docplanner_payloads(client, n) for n in ACCOUNTS}
            finally:
                client.close()
        finally:
            if daemon.process is not None:
                daemon.process.kill()
                daemon.process.wait(timeout=10)
        for name in ACCOUNTS:
            handed = sandbox.handed_out(f"{name}-id")
            counts = tally(published[name], handed)
            assert len(handed) == BIG + 30
            assert (counts.lost, counts.duplicates, counts.unexpected) == (0, 0, 0), name
    assert daemon.log.count("docplanner.spool_over_budget") >= len(ACCOUNTS)
