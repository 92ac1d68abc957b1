"""The DocPlanner pull drain end to end: real CLI, real Redis, the sandbox upstream."""

from __future__ import annotations

import json
import random
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.docplanner import docplanner_event_id
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, wait_settled, write_config

STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"


@pytest.fixture
def sandbox() -> Iterator[DocPlannerSandbox]:
    clients = [
        DocPlannerClient(client_id=f"{n}-id", client_secret=f"{n}-secret-value")
        for n in ("pl", "es")
    ]
    with DocPlannerSandbox(clients=clients) as dp:
        yield dp


def docplanner_entries(client: redis.Redis, name: str) -> list[dict[str, str]]:
    return [e for e in stream_entries(client, STREAM) if e["account"] == name]


def test_two_accounts_drain_exactly_once_in_fifo_order(
    tmp_path: Path,
    redis_server: LocalRedis,
    redis_client: redis.Redis,
    sandbox: DocPlannerSandbox,
) -> None:
    """2 accounts x 5,000 notifications: each once, in FIFO order, every §3 field right."""
    sandbox.enqueue("pl-id", 5000)
    sandbox.enqueue("es-id", 5000)
    config = write_config(
        tmp_path / "drainer.toml",
        redis_server.url,
        docplanner=[dp_account("pl", sandbox), dp_account("es", sandbox)],
    )
    with Daemon(config) as daemon:
        wait_for(lambda: redis_client.xlen(STREAM) >= 10000, 60, "10,000 entries")
        wait_settled(daemon)
        assert daemon.stop() == 0
    for name in ("pl", "es"):
        entries = docplanner_entries(redis_client, name)
        handed = sandbox.handed_out(f"{name}-id")
        assert len(handed) == 5000
        assert [json.loads(e["payload"]) for e in entries] == handed
        for entry, original in zip(entries, handed, strict=True):
            assert entry["event_id"] == docplanner_event_id(name, original)
            assert entry["source"] == "docplanner"
            assert entry["type"] == original["name"]
            assert entry["delivery"] == "pull"
            assert entry["schema"] == "1"
            assert entry["occurred_at"].endswith("Z") and entry["received_at"].endswith("Z")
    assert redis_client.xlen(DEADLETTER) == 0
    assert "secret-value" not in daemon.log


def test_fault_storm_loses_and_duplicates_nothing(
    tmp_path: Path,
    redis_server: LocalRedis,
    redis_client: redis.Redis,
    sandbox: DocPlannerSandbox,
) -> None:
    """5xx, WAF 405, resets, 429, token expiry, truncated and malformed bodies: 0 lost, 0 dup."""
    sandbox.enqueue("pl-id", 1500)
    sandbox.faults.script(
        [
            "500",
            "503",
            "waf",
            "reset",
            "truncate",
            "429",
            "malformed",
            "token_expired",
            "slow:1.0",
            "500",
            "truncate",
            "malformed",
            "reset",
        ]
    )
    config = write_config(
        tmp_path / "drainer.toml", redis_server.url, docplanner=[dp_account("pl", sandbox)]
    )
    with Daemon(config) as daemon:
        wait_for(lambda: sandbox.queue_length("pl-id") == 0, 90, "queue drained")
        wait_settled(daemon)
        assert daemon.stop() == 0
    published = [json.loads(e["payload"]) for e in docplanner_entries(redis_client, "pl")]
    deadletters = stream_entries(redis_client, DEADLETTER)
    handed = sandbox.handed_out("pl-id")
    valid = [
        n for n in handed if isinstance(n, dict) and "name" in n and isinstance(n.get("data"), dict)
    ]
    published_ids = Counter(json.dumps(p, sort_keys=True) for p in published)
    assert max(published_ids.values()) == 1, "a notification was published twice"
    missing = [i for i, n in enumerate(valid) if json.dumps(n, sort_keys=True) not in published_ids]
    # Only the two truncated bodies are missing from the stream: each is one contiguous run of
    # at most one batch, and its bytes as received are in the dead-letter stream.
    runs = [i for i in missing if i - 1 not in missing]
    assert len(runs) <= 2 and len(missing) <= 200, f"{len(missing)} lost in {len(runs)} runs"
    truncated = [d["raw"] for d in deadletters if d["reason"] == "unparseable_body"]
    assert all(raw.startswith('{"notifications":') for raw in truncated)
    assert all(valid[start]["created_at"] in "".join(truncated) for start in runs)
    print(f"\nfault storm: {len(published)} published once, {len(missing)} only in dead letters")
    reasons = Counter(d["reason"] for d in deadletters)
    assert reasons["unparseable_body"] == 2
    assert reasons["invalid_notification"] >= 2
    assert len(published) + len(missing) == len(valid)
    metrics = daemon.log  # the daemon survived all of it and logged state changes
    assert "docplanner.failing" in metrics


def test_sigkill_loop_loses_nothing_but_in_flight_and_duplicates_nothing(
    tmp_path: Path,
    redis_server: LocalRedis,
    redis_client: redis.Redis,
) -> None:
    """SIGKILL at random moments 10x during a 20,000 drain: 0 duplicates, 0 lost."""
    clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
    rng = random.Random(7)
    with DocPlannerSandbox(clients=clients, latency=0.02) as sandbox:
        sandbox.enqueue("pl-id", 20000)
        config = write_config(
            tmp_path / "drainer.toml", redis_server.url, docplanner=[dp_account("pl", sandbox)]
        )
        daemon = Daemon(config)
        for _ in range(10):
            daemon.start(wait_ready=False)
            time.sleep(rng.uniform(0.8, 2.0))  # paces the fault: SIGKILL at a random moment
            daemon.kill()
        with daemon:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 120, "queue drained")
            wait_settled(daemon)
            assert daemon.stop() == 0
        handed = sandbox.handed_out("pl-id")
        lost_in_flight = len(sandbox.lost_in_flight("pl-id"))
    entries = docplanner_entries(redis_client, "pl")
    ids = Counter(e["event_id"] for e in entries)
    assert max(ids.values()) == 1
    published = [json.loads(e["payload"]) for e in entries]
    lost = len(handed) - len(published)
    print(
        f"\nSIGKILL x10 during 20,000: published {len(published)}, lost {lost} "
        f"(responses in flight at a kill), sandbox-recorded in-flight {lost_in_flight}"
    )
    # Whatever was lost was in flight: at most one batch of 100 per kill.
    assert 0 <= lost <= 10 * 100
    # Order is FIFO apart from the lost batches.
    positions = {json.dumps(n, sort_keys=True): i for i, n in enumerate(handed)}
    order = [positions[json.dumps(p, sort_keys=True)] for p in published]
    assert order == sorted(order)


def test_redis_outage_mid_drain_loses_nothing_and_readyz_follows(
    tmp_path: Path,
    own_redis: LocalRedis,
    sandbox: DocPlannerSandbox,
) -> None:
    """Redis stopped ~10 s mid-drain: pulls continue into the spool, /readyz 503 then 200."""
    client = redis.Redis.from_url(own_redis.url)
    try:
        config = write_config(
            tmp_path / "drainer.toml", own_redis.url, docplanner=[dp_account("pl", sandbox)]
        )
        sandbox.enqueue("pl-id", 1000)
        with Daemon(config) as daemon:
            wait_for(lambda: client.xlen(STREAM) >= 1000, 30, "first 1000")
            own_redis.stop()
            sandbox.enqueue("pl-id", 2000)
            wait_for(lambda: daemon.get("/readyz") == 503, 15, "/readyz 503")
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 30, "pulled while Redis down")
            time.sleep(8)  # paces the fault: Redis stays down ~10 s in all, backoff grows
            own_redis.start()
            client = redis.Redis.from_url(own_redis.url)
            wait_for(lambda: client.xlen(STREAM) >= 3000, 60, "backlog published")
            wait_for(lambda: daemon.get("/readyz") == 200, 20, "/readyz 200")
            assert daemon.stop() == 0
        entries = [e for _, e in client.xrange(STREAM)]
        assert len(entries) == 3000
        assert [json.loads(e[b"payload"]) for e in entries] == sandbox.handed_out("pl-id")
    finally:
        client.close()


def test_sigterm_mid_drain_exits_0_and_publishes_the_in_flight_batch(
    tmp_path: Path,
    redis_server: LocalRedis,
    redis_client: redis.Redis,
) -> None:
    """SIGTERM while pulling: exit 0 within 20 s, everything handed out is on the stream."""
    clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
    with DocPlannerSandbox(clients=clients, latency=0.05) as sandbox:
        sandbox.enqueue("pl-id", 20000)
        config = write_config(
            tmp_path / "drainer.toml", redis_server.url, docplanner=[dp_account("pl", sandbox)]
        )
        with Daemon(config) as daemon:
            wait_for(lambda: redis_client.xlen(STREAM) >= 500, 30, "some entries")
            started = time.monotonic()
            daemon.signal(signal.SIGTERM)
            assert daemon.process is not None
            assert daemon.process.wait(timeout=25) == 0
            daemon.process = None
            assert time.monotonic() - started < 20
        handed = sandbox.handed_out("pl-id")
    assert [json.loads(e["payload"]) for e in docplanner_entries(redis_client, "pl")] == handed
    assert "runtime.stopped" in daemon.log
