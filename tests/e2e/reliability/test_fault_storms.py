"""Probabilistic upstream fault storms through the real CLI: 0 lost, 0 duplicates."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox
from tests.e2e.reliability.conftest import (
    DEADLETTER,
    MYINVOIS_STREAM,
    STREAM,
    docplanner_payloads,
    dp_account,
    tally,
)
from tests.helpers import Daemon, stream_entries, wait_for, wait_settled, write_config

DOCPLANNER_RATES = {
    "500": 0.1,
    "503": 0.05,
    "waf": 0.05,
    "reset": 0.05,
    "429": 0.03,
    "slow:0.5": 0.02,
}
MYINVOIS_RATES = {
    "500": 0.05,
    "503": 0.03,
    "waf": 0.03,
    "reset": 0.03,
    "reset_after": 0.02,
    "429": 0.02,
    "truncate": 0.03,
    "malformed": 0.04,
    "token_expired": 0.02,
    "slow:0.3": 0.01,
}


def test_docplanner_random_fault_storm_over_5000_loses_and_duplicates_nothing(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """30 % of pulls fail (5xx, WAF, reset, 429, slow): all 5,000 on the stream once, FIFO."""
    clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
    with DocPlannerSandbox(clients=clients, latency=0.002) as sandbox:
        sandbox.faults.set_rates(DOCPLANNER_RATES, seed=11)
        sandbox.enqueue("pl-id", 5000)
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", sandbox)],
        )
        with Daemon(config) as daemon:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 90, "queue drained")
            wait_for(lambda: redis_client.xlen(STREAM) >= 5000, 30, "5000 entries")
            wait_settled(daemon)
            assert daemon.stop() == 0
        handed = sandbox.handed_out("pl-id")
        injected = Counter(str(f) for f in sandbox.faults.injected)
    published = docplanner_payloads(redis_client)
    counts = tally(published, handed)
    print(counts.line("docplanner-storm", f"faults injected {dict(injected)}"))
    assert sum(injected.values()) >= 20, "the storm happened"
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed
    assert redis_client.xlen(DEADLETTER) == 0, "no fault in this mix corrupts a body"


def test_myinvois_random_fault_storm_with_late_arrivals_loses_and_duplicates_nothing(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """MyInvois pages fail at random while records keep arriving: each once, bad items dead."""
    clients = [MyInvoisClient(client_id="acme-id", client_secret="acme-secret-value")]
    now = datetime.fromtimestamp(int(time.time()), UTC)
    with MyInvoisSandbox(clients=clients, requests_per_minute=6000) as sandbox:
        sandbox.add_notifications("acme-id", 1000, start=now - timedelta(hours=3), end=now)
        sandbox.faults.set_rates(MYINVOIS_RATES, seed=5)
        account = {
            "name": "acme",
            "base_url": sandbox.base_url,
            "client_id": "acme-id",
            "client_secret": "acme-secret-value",
            "requests_per_minute": 6000,
            "interval": "300ms",
            "overlap": "2m",
            "page_size": 50,
            "start_at": (now - timedelta(hours=4)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        config = write_config(tmp_path / "drainer.toml", redis_server.url, myinvois=[account])
        with Daemon(config) as daemon:
            arrivals = sandbox.start_arrivals(60, late_fraction=0.3, late_max_seconds=60)
            time.sleep(3.0)  # paces the load: arrivals run for 3 s
            arrivals.set()
            expected = {
                f"myinvois:acme:{n['notificationId']}" for n in sandbox.notifications("acme-id")
            }

            def published() -> set[str]:
                return {e["event_id"] for e in stream_entries(redis_client, MYINVOIS_STREAM)}

            wait_for(lambda: expected <= published(), 90, "every record published")
            sandbox.faults.clear()  # let the window in progress finish, then stop

            def dead_lettered() -> bool:
                raws = "".join(d["raw"] for d in stream_entries(redis_client, DEADLETTER))
                served = sandbox.malformed_served("acme-id")
                return all(m["notificationDeliveryId"] in raws for m in served)

            wait_for(dead_lettered, 30, "every malformed item dead-lettered")
            assert daemon.stop() == 0
        injected = Counter(str(f) for f in sandbox.faults.injected)
        malformed = sandbox.malformed_served("acme-id")
    ids = Counter(e["event_id"] for e in stream_entries(redis_client, MYINVOIS_STREAM))
    dead = stream_entries(redis_client, DEADLETTER)
    duplicates = sum(n - 1 for n in ids.values())
    print(
        f"\n[myinvois-storm] expected {len(expected)}, on stream {sum(ids.values())}, "
        f"duplicates {duplicates}, lost {len(expected - set(ids))}, "
        f"unexpected {len(set(ids) - expected)}, dead letters {len(dead)} "
        f"(malformed served {len(malformed)}), faults injected {dict(injected)}"
    )
    assert sum(injected.values()) >= 10, "the storm happened"
    assert duplicates == 0 and set(ids) == expected
    assert {d["reason"] for d in dead} <= {"invalid_notification"}
    assert all(any(m["notificationDeliveryId"] in d["raw"] for d in dead) for m in malformed)
