"""Per-account leases against a real Redis (two real daemons: tests/e2e/test_lease_daemons.py)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs

from daemon.commands.demo.localredis import LocalRedis
from daemon.runtime.leased import LeasedWorker
from daemon.settings import RedisSettings
from daemon.sink.connect import connect
from daemon.sink.lease import Lease, lease_key
from daemon.worker import Health
from tests.helpers import write_config

KEY = lease_key("drainer:{docplanner}", "docplanner", "pl")


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A bytes client on an empty database."""
    built = redis.Redis.from_url(redis_server.url)
    built.flushall()
    yield built
    built.flushall()  # leave no key (e.g. a WRONGTYPE one) to the next test
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
    assert time.monotonic() - died <= 1.0 + worker_b.lease.retry_every + 1.0  # a loaded box


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
