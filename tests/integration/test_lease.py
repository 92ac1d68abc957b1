"""Per-account leases: unit tests against a real Redis, and two daemons with a SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import requests
from structlog.testing import capture_logs

from daemon.commands.demo.localredis import LocalRedis
from daemon.runtime.leased import LeasedWorker
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import RedisSettings
from daemon.sink.connect import connect
from daemon.sink.lease import Lease, lease_key
from daemon.worker import Health
from tests.helpers import Daemon, stream_entries, wait_for, wait_settled, write_config

KEY = lease_key("drainer:{docplanner}", "docplanner", "pl")
STREAM = "drainer:{docplanner}"


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A bytes client on an empty database."""
    built = redis.Redis.from_url(redis_server.url)
    built.flushall()
    yield built
    built.close()


class CountingWorker:
    """An intake worker that counts its ticks and asks for the next one after ``delay``."""

    def __init__(self, delay: float = 0.0) -> None:
        self.name = "docplanner:pl:puller"
        self.health = Health("docplanner", "pl", "puller")
        self.delay = delay
        self.ticks = 0

    def tick(self, now: float) -> float:
        self.ticks += 1
        return self.delay


def test_lease_key_shares_the_stream_hash_slot() -> None:
    """The lease key keeps the stream's {hash tag}, so it lives on the stream's cluster node."""
    assert KEY == "drainer:{docplanner}:lease:docplanner:pl"
    assert lease_key("events", "myinvois", "acme") == "{events}:lease:myinvois:acme"


def test_acquire_is_exclusive_and_names_the_holder(client: redis.Redis) -> None:
    """SET NX PX: the first process holds the lease with the TTL, the second sees who holds it."""
    first, second = Lease(client, KEY, "host-a:1:aa", 15.0), Lease(client, KEY, "host-b:2:bb", 15.0)
    assert first.ensure(0.0)
    assert not second.ensure(0.0)
    assert second.holder == "host-a:1:aa"
    assert 14_000 < client.pttl(KEY) <= 15_000


def test_renewal_extends_the_ttl_every_third_of_it(client: redis.Redis) -> None:
    """Renewal happens at ttl/3 (compare-and-pexpire), not before; the TTL is back to full."""
    lease = Lease(client, KEY, "a", 15.0)
    assert lease.ensure(0.0)
    client.pexpire(KEY, 9_000)
    assert lease.ensure(4.9) and client.pttl(KEY) <= 9_000  # not due yet
    assert lease.ensure(5.0) and client.pttl(KEY) > 14_000  # renewed


def test_a_lost_lease_stops_the_worker_at_once(client: redis.Redis) -> None:
    """When renewal finds another token, the wrapped worker stops ticking at the next tick."""
    lease = Lease(client, KEY, "a", 3.0)
    inner = CountingWorker()
    worker = LeasedWorker(inner, lease, clock=lambda: now)
    now = 0.0
    worker.tick(now)
    assert inner.ticks == 1 and inner.health.detail["lease"] == "held"
    client.set(KEY, "intruder", px=3000)  # as if our key expired and another node took it
    now = 1.0
    worker.tick(now)  # ticks the inner worker: renewal (every 1 s) is due now and fails
    assert not lease.held and lease.holder == "intruder"
    ticks = inner.ticks
    for step in range(2, 10):
        now = float(step)
        worker.tick(now)
    assert inner.ticks == ticks
    assert inner.health.detail["lease"] == "standby, held by intruder"


def test_release_deletes_only_our_own_lease(client: redis.Redis) -> None:
    """Release is compare-and-del: it frees our lease for the standby, never another's."""
    first, second = Lease(client, KEY, "a", 15.0), Lease(client, KEY, "b", 15.0)
    assert first.ensure(0.0) and not second.ensure(0.0)
    first.release()
    assert client.get(KEY) is None and not first.held
    assert not first.ensure(10.0), "a released lease is never taken again"
    assert second.ensure(1.0)
    first.closed = False
    first.held = True  # a stale belief must not delete the new holder's key
    first.release()
    assert client.get(KEY) == b"b"


def test_leased_worker_keeps_the_inner_schedule_and_renews_between(client: redis.Redis) -> None:
    """An idle inner worker (5 s) is not ticked early, but the lease (ttl 3 s) is renewed."""
    lease = Lease(client, KEY, "a", 3.0)
    inner = CountingWorker(delay=5.0)
    now = 0.0
    worker = LeasedWorker(inner, lease, clock=lambda: now)
    waits = []
    while now < 5.0:
        waits.append(worker.tick(now))
        now += waits[-1]
    assert inner.ticks == 1 and max(waits) <= 1.0
    assert 2_000 < client.pttl(KEY) <= 3_000
    worker.tick(now)
    assert inner.ticks == 2


def test_two_processes_one_active_and_takeover_after_expiry(client: redis.Redis) -> None:
    """Two leased workers on one account: only one ticks; the other takes over once it lapses."""
    inner_a, inner_b = CountingWorker(), CountingWorker()
    worker_a = LeasedWorker(inner_a, Lease(client, KEY, "a", 1.0), clock=time.monotonic)
    worker_b = LeasedWorker(inner_b, Lease(client, KEY, "b", 1.0), clock=time.monotonic)
    for _ in range(5):
        worker_a.tick(time.monotonic())
        worker_b.tick(time.monotonic())
    assert inner_a.ticks == 5 and inner_b.ticks == 0
    died = time.monotonic()  # worker_a stops ticking: its key expires within the TTL
    while not inner_b.ticks:
        time.sleep(worker_b.tick(time.monotonic()) or 0.01)  # the tick's own wait: a driver
    assert time.monotonic() - died <= 1.0 + worker_b.lease.retry_every + 0.2


def test_unreachable_redis_keeps_the_lease_only_while_it_is_surely_ours(
    own_redis: LocalRedis,
) -> None:
    """Redis down: the holder works on until only ttl/3 of its last lease is left, then stops."""
    client = redis.Redis.from_url(own_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    lease = Lease(client, KEY, "a", 3.0)
    try:
        assert lease.ensure(0.0)
        own_redis.stop()
        assert lease.ensure(1.0)  # renewal fails, 2 s of the lease left
        assert lease.ensure(1.9)
        assert not lease.ensure(2.1)  # less than ttl/3 left: stand by
    finally:
        client.close()


def test_runtime_wraps_intake_in_leases_and_adds_retention(
    tmp_path: Path, redis_server: LocalRedis, client: redis.Redis
) -> None:
    """leases = true wraps the puller (not the Redis probe) and exports drainer_lease_held."""
    from prometheus_client import CollectorRegistry

    from daemon.runtime.wiring import build
    from daemon.settings import load_settings
    from daemon.sink.retention import RetentionWorker

    account = {
        "name": "pl",
        "base_url": "http://127.0.0.1:9",
        "client_id": "pl-id",
        "client_secret": "pl-secret",
    }
    config = write_config(tmp_path / "drainer.toml", redis_server.url, docplanner=[account])
    extra = 'leases = true\nretention = "minid"\nretention_age = "1d"'
    config.write_text(config.read_text().replace("[spool]", extra + "\n[spool]", 1))
    registry = CollectorRegistry()
    ctx = build(load_settings(config, {}), registry)
    try:
        kinds = sorted(type(worker).__name__ for worker in ctx.intake)
        assert kinds == ["LeasedWorker", "RedisProbe", "RetentionWorker"]
        leased = next(w for w in ctx.intake if isinstance(w, LeasedWorker))
        assert leased.name == "docplanner:pl:puller"
        labels = {"source": "docplanner", "account": "pl"}
        assert registry.get_sample_value("drainer_lease_held", labels) == 0
        assert leased.lease.ensure(0.0)
        assert registry.get_sample_value("drainer_lease_held", labels) == 1
        assert ctx.sink._maxlen == 0
        assert any(isinstance(w, RetentionWorker) for w in ctx.intake)
    finally:
        for http in ctx.clients:
            http.close()
        ctx.redis.close()


def _lease_held(daemon: Daemon, account: str) -> float | None:
    try:
        text = daemon.metrics()
    except requests.RequestException:
        return None
    pattern = rf'drainer_lease_held\{{account="{account}",source="docplanner"\}} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else None


def _pull_requests(daemon: Daemon, account: str) -> float:
    total = 0.0
    for line in daemon.metrics().splitlines():
        if (
            line.startswith("drainer_upstream_requests_total{")
            and f'account="{account}"' in line
            and 'endpoint="notifications"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_daemons_one_active_sigkill_hands_over_within_the_ttl(
    tmp_path: Path, redis_server: LocalRedis, client: redis.Redis
) -> None:
    """Two daemons, leases on: one drains each account; SIGKILL it -> the other within TTL."""
    ttl = 3.0
    names = ("pl", "es")
    clients = [DocPlannerClient(client_id=f"{n}-id", client_secret=f"{n}-secret") for n in names]
    with DocPlannerSandbox(clients=clients, latency=0.02) as sandbox:
        for name in names:
            sandbox.enqueue(f"{name}-id", 6000)
        accounts = [
            {
                "name": name,
                "base_url": sandbox.base_url,
                "client_id": f"{name}-id",
                "client_secret": f"{name}-secret",
                "idle_interval": "200ms",
            }
            for name in names
        ]
        extra = f'leases = true\nlease_ttl = "{ttl:g}s"'
        daemons = []
        for node in ("a", "b"):
            (tmp_path / node).mkdir()
            config = write_config(
                tmp_path / node / "drainer.toml", redis_server.url, docplanner=accounts
            )
            # The lease keys belong to [redis]: insert them right after its url line.
            config.write_text(config.read_text().replace("[spool]", extra + "\n[spool]", 1))
            daemons.append(Daemon(config))
        active, standby = daemons
        active.start()
        for name in names:
            wait_for(lambda name=name: _lease_held(active, name) == 1, 10, f"a holds {name}")
        standby.start()
        try:
            wait_for(lambda: client.xlen(STREAM) >= 2000, 20, "the active daemon publishes")
            assert all(_lease_held(standby, name) == 0 for name in names)
            assert all(_pull_requests(standby, name) == 0 for name in names)
            ready = requests.get(f"http://127.0.0.1:{standby.port}/readyz", timeout=2).json()
            assert ready["leases"]["docplanner:pl"]["held"] is False
            assert active.process is not None
            assert f":{active.process.pid}:" in ready["leases"]["docplanner:pl"]["holder"]
            active.kill()
            killed = time.monotonic()
            for name in names:
                wait_for(
                    lambda name=name: _lease_held(standby, name) == 1,
                    ttl + 3,
                    f"b takes {name}",
                )
            takeover = time.monotonic() - killed
            wait_for(
                lambda: all(sandbox.queue_length(f"{n}-id") == 0 for n in names),
                40,
                "queues drained by the standby",
            )
            wait_settled(standby)
            assert standby.stop() == 0
            active.start()  # the killed node comes back and publishes its spool, if any
            wait_settled(active)
            assert active.stop() == 0
        finally:
            for daemon in daemons:
                if daemon.process is not None:
                    daemon.kill()
        handed = {name: sandbox.handed_out(f"{name}-id") for name in names}
        in_flight = sum(len(sandbox.lost_in_flight(f"{n}-id")) for n in names)
    entries = stream_entries(client, STREAM)
    assert max(Counter(e["event_id"] for e in entries).values()) == 1, "a duplicate"
    lost = 0
    for name in names:
        published = {json.dumps(json.loads(e["payload"]), sort_keys=True) for e in entries}
        missing = [
            i for i, n in enumerate(handed[name]) if json.dumps(n, sort_keys=True) not in published
        ]
        assert len(handed[name]) == 6000
        runs = [i for i in missing if i - 1 not in missing]
        assert len(runs) <= 1, f"{name}: lost in {len(runs)} places, not one in-flight batch"
        lost += len(missing)
    print(
        f"\nlease takeover after SIGKILL: {takeover:.2f}s (ttl {ttl:g}s); "
        f"{len(entries)} published once, lost {lost} (responses in flight at the kill), "
        f"sandbox-recorded in-flight {in_flight}"
    )
    assert takeover <= ttl + 1.5
    assert lost <= len(names) * 100  # at most one batch per account was in flight at the kill


def test_a_lease_key_of_the_wrong_type_is_an_error_in_the_log_once_then_clears(
    client: redis.Redis,
) -> None:
    """WRONGTYPE (someone else's hash at the lease key) is no failover: one error line, the
    account stays on standby, and the lease is taken once the key is fixed."""
    client.hset(KEY, "not", "a lease")
    lease = Lease(client, KEY, "token-a", ttl=3.0)
    with capture_logs() as logs:
        assert lease.ensure(0.0) is False
        assert lease.ensure(10.0) is False
        client.delete(KEY)
        assert lease.ensure(20.0) is True
    refused = [log for log in logs if log["event"] == "lease.redis_refused"]
    assert len(refused) == 1 and refused[0]["log_level"] == "error"
    assert "WRONGTYPE" in refused[0]["error"]
    assert [log["event"] for log in logs][-2:] == ["lease.acquired", "lease.redis_accepts_again"]


def test_a_renew_that_blocks_never_leaves_a_stale_holder_working(own_redis: LocalRedis) -> None:
    """Redis hangs during a due renew (SIGSTOP): judged on the time after it, intake stops."""
    settings = RedisSettings(url=own_redis.url, socket_timeout=2.5, connect_timeout=0.5)
    client = connect(settings)
    lease = Lease(client, KEY, "a", 3.0)  # renewed every 1 s; stands by with < 1 s left
    inner = CountingWorker()
    worker = LeasedWorker(inner, lease, clock=lambda: 0.0)
    worker.tick(0.0)
    assert lease.held and inner.ticks == 1
    due = lease.next_attempt  # 1 s in: the renew is sent then and blocks for 2.5 s
    os.kill(own_redis.pid, signal.SIGSTOP)
    try:
        worker.tick(due)
    finally:
        os.kill(own_redis.pid, signal.SIGCONT)
    # 1 s + 2.5 s blocked is past 3 s - 1 s: the lease may be gone, so no pull happened.
    assert not lease.held and inner.ticks == 1
    assert str(inner.health.detail["lease"]).startswith("standby")
    client.close()
