"""SIGKILL during push traffic: every push answered 204 is on the stream, exactly once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import redis

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.events import NotificationFactory
from tests.e2e.reliability.conftest import docplanner_payloads, dp_account, key, tally
from tests.helpers import Daemon, wait_for, wait_settled, write_config

TOKEN = "pl-push-token-value"


def test_sigkill_during_pushes_keeps_every_204_exactly_once(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Kill -9 while 3,000 pushes flow: each 204'd one on the stream once; repeats collapse."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/push/docplanner/pl"
    clients = [DocPlannerClient("pl-id", "pl-secret-value", push_url=url, push_token=TOKEN)]
    items = NotificationFactory(seed=21).batch(3000, time.time())
    answers: list[tuple[Any, int]] = []
    with DocPlannerSandbox(clients=clients) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox, mode="push", push_token=TOKEN)],
            listen_port=port,
        )

        def pusher() -> None:
            for start in range(0, len(items), 20):
                chunk = items[start : start + 20]
                answers.extend(zip(chunk, sandbox.push("pl-id", chunk), strict=True))
                time.sleep(0.01)  # paces the pushes, so SIGKILL lands mid-stream

        daemon = Daemon(config).start()
        thread = threading.Thread(target=pusher, name="pusher")
        try:
            thread.start()
            wait_for(lambda: len(answers) >= 800, 30, "800 pushes answered")
            daemon.kill()
            accepted_before_kill = [n for n, status in answers if status == 204]
            daemon.start()
            thread.join(timeout=60)
            assert not thread.is_alive()
            wait_for(
                lambda: (
                    {key(n) for n in accepted_before_kill}
                    <= {key(p) for p in docplanner_payloads(redis_client)}
                ),
                30,
                "every 204 from before the kill on the stream",
            )
            refused = [n for n, status in answers if status != 204]
            for _ in range(5):  # what was not accepted is pushed again (release would do it)
                again = sandbox.push("pl-id", refused)
                refused = [n for n, status in zip(refused, again, strict=True) if status != 204]
                if not refused:
                    break
            wait_for(lambda: redis_client.xlen("drainer:{docplanner}") >= 3000, 30, "3000")
            # DocPlanner may push again what it already delivered: those must collapse.
            repeats = accepted_before_kill[:300]
            assert set(sandbox.push("pl-id", repeats)) == {204}
            wait_settled(daemon)
            assert daemon.stop() == 0
        finally:
            if daemon.process is not None:
                daemon.kill()
    published = docplanner_payloads(redis_client)
    counts = tally(published, items)
    statuses = sorted({status for _, status in answers})
    print(
        counts.line(
            "push-sigkill",
            f"{len(accepted_before_kill)} answered 204 before the kill, "
            f"{sum(1 for _, s in answers if s != 204)} not accepted and pushed again, "
            f"{len(repeats)} delivered ones pushed a second time, "
            f"statuses seen {statuses}",
        )
    )
    assert len(accepted_before_kill) >= 700
    assert any(status != 204 for _, status in answers), "the kill interrupted pushes"
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
