"""Durable publish against real servers: WAIT on replicas, failover, detection, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from daemon.commands.demo.localredis import LocalRedis, find_redis_server, free_port
from daemon.envelope.entries import StreamEntry
from daemon.errors import DurabilityError, RedisCommandError, SinkError
from daemon.metrics import Metrics
from daemon.publisher import IDLE_WAIT, Publisher
from daemon.runtime.scheduler import Scheduler, ThreadPool
from daemon.settings import RedisSettings
from daemon.sink import RedisSink, connect, related_key
from daemon.sink.durability import NO_WAIT, NodeFacts, Policy, Topology, Wait, resolve
from daemon.sink.failures import is_transient
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import Backoff
from tests.helpers import assert_redis_config_error, online_replicas, wait_for

STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"
DEBUG = ("--enable-debug-command", "local")


def _replica_of(master: LocalRedis, directory: Path) -> LocalRedis:
    return LocalRedis(directory, extra=(*DEBUG, "--replicaof", "127.0.0.1", str(master.port)))


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[LocalRedis, LocalRedis]]:
    """A master and one replica of it, online."""
    master = LocalRedis(tmp_path / "master", extra=DEBUG).start()
    replica = _replica_of(master, tmp_path / "replica").start()
    try:
        wait_for(lambda: online_replicas(master.port) == 1, 10, "replica online")
        yield master, replica
    finally:
        _resume(replica)
        replica.stop(kill=True)
        master.stop(kill=True)


def _pid(server: LocalRedis) -> int:
    assert server._process is not None
    return server._process.pid


def _resume(server: LocalRedis) -> None:
    if server.running:
        os.kill(_pid(server), signal.SIGCONT)


def entry(n: int, payload: str = "{}") -> StreamEntry:
    fields = {"event_id": f"e-{n}", "payload": payload, "schema": "1"}
    return StreamEntry(STREAM, f"e-{n}", fields)


def publisher_for(sink: RedisSink, spool: SpoolLog) -> tuple[Publisher, Metrics]:
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    publisher = Publisher("docplanner", "pl", spool, sink, metrics, DEADLETTER)
    publisher._backoff = Backoff(base=0.02, cap=0.2)
    return publisher, metrics


def timeouts(metrics: Metrics) -> float:
    value = metrics.registry.get_sample_value(
        "drainer_redis_durability_timeouts_total", {"source": "docplanner", "account": "pl"}
    )
    return value or 0.0


def ids_on(port: int) -> Counter[str]:
    client = redis.Redis(port=port, socket_timeout=10)
    try:
        return Counter(fields[b"event_id"].decode() for _, fields in client.xrange(STREAM))
    finally:
        client.close()


# --- detection ---------------------------------------------------------------------------


def test_standalone_without_replicas_waits_for_nothing_and_warns_once(
    redis_server: LocalRedis,
) -> None:
    """auto on a lone master: WAIT for its 0 replicas, one info line and one warning."""
    sink = RedisSink(connect(redis_server.url), 60, 0, durability=Policy("auto"))
    with capture_logs() as logs:
        detected = sink.detect()
        sink.detect()
    assert [wait for _, wait, _ in detected] == [Wait(0, follow=True)]
    events = [log["event"] for log in logs]
    assert events == ["redis.durability", "redis.durability_weak"]
    assert "WAITAOF" in logs[1]["detail"] and "appendonly" in logs[1]["detail"]


def test_master_with_a_replica_gets_a_replica_wait(pair: tuple[LocalRedis, LocalRedis]) -> None:
    """auto on a master reporting a connected replica: WAIT for it, said in one line."""
    master, _ = pair
    sink = RedisSink(connect(master.url), 60, 0, durability=Policy("auto", None, 0.5))
    with capture_logs() as logs:
        [(_, wait, facts)] = sink.detect()
    assert wait == Wait(replicas=1, timeout_ms=500, follow=True)
    assert facts is not None and facts.connected_replicas == 1
    assert [log["event"] for log in logs] == ["redis.durability"]
    assert logs[0]["wait"].startswith("WAIT for the connected replicas (now 1")


@pytest.mark.parametrize(
    ("policy", "topology", "replicas", "expected"),
    [
        (Policy("auto"), "sentinel", 0, Wait(0, follow=True)),
        (Policy("auto"), "single", 2, Wait(2, follow=True)),
        (Policy("auto", 1), "cluster", 2, Wait(1, follow=True, cap=1)),
        (Policy("auto"), "cluster", 0, Wait(0, follow=True)),
        (Policy("auto", None, 1.0, 1), "single", 0, Wait(0, follow=True, min_replicas=1)),
        (Policy("replicas"), "single", 0, Wait(replicas=1)),
        (Policy("none"), "sentinel", 3, NO_WAIT),
        (Policy("aof"), "single", 0, Wait(local_aof=True, follow=True)),
        (Policy("aof"), "sentinel", 1, Wait(1, local_aof=True, follow=True)),
    ],
)
def test_the_wait_follows_the_deployment(
    policy: Policy, topology: Topology, replicas: int, expected: Wait
) -> None:
    """auto and aof wait for the connected replicas (at most N); replicas: always N."""
    facts = NodeFacts("7.2.4", replicas, waitaof=True, aof_enabled=True)
    assert resolve(policy, topology, facts) == expected


def test_aof_needs_waitaof_and_appendonly() -> None:
    """durability = "aof" on Redis 7.0, or without appendonly: refused, naming the key."""
    old = NodeFacts("7.0.15", 1, waitaof=False, aof_enabled=True)
    with pytest.raises(RedisCommandError, match=r"needs WAITAOF .* 7\.0\.15"):
        resolve(Policy("aof"), "single", old)
    with pytest.raises(RedisCommandError, match="appendonly yes"):
        resolve(
            Policy("aof"), "single", replace(old, version="7.2.4", waitaof=True, aof_enabled=False)
        )


def test_aof_wait_sends_waitaof_for_the_local_fsync_beside_wait() -> None:
    """WAIT n for replicas plus WAITAOF 1 0 (not WAITAOF 1 n, ~1 s a call); both must be met."""
    wait = Wait(replicas=1, local_aof=True, timeout_ms=300)
    assert wait.commands() == [("WAIT", 1, 300), ("WAITAOF", 1, 0, 300)]
    assert wait.shortfall([1, [1, 0]]) is None
    assert "WAITAOF" in (wait.shortfall([1, [0, 0]]) or "")
    assert "0/1" in (wait.shortfall([0, [1, 0]]) or "")
    assert NO_WAIT.commands() == []


# --- waiting -----------------------------------------------------------------------------


def test_a_replica_wait_that_times_out_keeps_records_spooled_until_acknowledged(
    tmp_path: Path, pair: tuple[LocalRedis, LocalRedis]
) -> None:
    """Replica stopped: the WAIT times out, the record stays and is counted; resumed: released."""
    master, replica = pair
    sink = RedisSink(connect(master.url), 60, 0, durability=Policy("auto", None, 0.2))
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    publisher, metrics = publisher_for(sink, spool)
    spool.append([entry(n) for n in range(50)])
    os.kill(_pid(replica), signal.SIGSTOP)
    try:
        assert publisher.tick(0.0) > 0
        assert spool.pending_records == 1 and timeouts(metrics) == 1
        assert "WAIT: 0/1" in (publisher.health.last_error or "")
        assert publisher.tick(100.0) > 0
        assert "0/1" in str(publisher.health.detail["not_ready"])  # persisting: named in /readyz
    finally:
        os.kill(_pid(replica), signal.SIGCONT)
    wait_for(lambda: publisher.tick(101.0) == IDLE_WAIT, 20, "the record is released")
    assert spool.pending_records == 0 and "not_ready" not in publisher.health.detail
    assert ids_on(master.port) == Counter({f"e-{n}": 1 for n in range(50)})


def test_a_retry_of_entries_already_written_still_waits_for_the_replica(
    pair: tuple[LocalRedis, LocalRedis],
) -> None:
    """All duplicates on a fresh connection: a marker write keeps the WAIT meaningful."""
    # On Redis >= 7.2 a connection that wrote nothing gets an immediate WAIT reply (7.0
    # counts any command), so the marker write itself is what this test pins down.
    master, replica = pair
    batch = [entry(n) for n in range(5)]
    marker = related_key(STREAM, "durable")
    direct = redis.Redis(port=master.port)
    os.kill(_pid(replica), signal.SIGSTOP)
    try:
        for attempt in range(2):  # the second attempt only finds duplicates
            sink = RedisSink(connect(master.url), 60, 0, durability=Policy("replicas", 1, 0.2))
            with pytest.raises(DurabilityError):
                sink.publish(batch)
            sink.client.close()
            assert direct.exists(marker) == attempt  # written only when nothing was added
    finally:
        direct.close()
        os.kill(_pid(replica), signal.SIGCONT)
    sink = RedisSink(connect(master.url), 60, 0, durability=Policy("replicas", 1, 2.0))
    assert sink.publish(batch).duplicates == 5


# --- failures ----------------------------------------------------------------------------


def test_publishing_to_a_replica_is_transient(pair: tuple[LocalRedis, LocalRedis]) -> None:
    """READONLY (the old master turned replica) is a SinkError: the record stays spooled."""
    _, replica = pair
    sink = RedisSink(connect(replica.url), 60, 0)
    with pytest.raises(SinkError, match="ReadOnlyError"):
        sink.publish([entry(1)])


def test_wrongtype_on_the_stream_key_is_refused_loudly_and_kept(
    tmp_path: Path, redis_client: redis.Redis, redis_server: LocalRedis
) -> None:
    """WRONGTYPE: logged with a traceback, counted, named in /readyz; the record is kept."""
    redis_client.set(STREAM, "not a stream")
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    publisher, metrics = publisher_for(RedisSink(connect(redis_server.url), 60, 0), spool)
    spool.append([entry(1)])
    with capture_logs() as logs:
        assert publisher.tick(0.0) >= 2.5
    assert spool.pending_records == 1
    [refused] = [log for log in logs if log["event"] == "docplanner.publish_refused"]
    assert refused["exc_info"] and "WRONGTYPE" in refused["error"]
    assert "WRONGTYPE" in str(publisher.health.detail["not_ready"])
    labels = {"source": "docplanner", "account": "pl"}
    assert metrics.registry.get_sample_value("drainer_redis_command_errors_total", labels) == 1
    redis_client.delete(STREAM)  # the operator fixes the key: the record goes out
    assert publisher.tick(1.0) == IDLE_WAIT and spool.pending_records == 0
    assert redis_client.xlen(STREAM) == 1  # the refused attempt left no seen key behind


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (redis.ConnectionError("reset"), True),
        (redis.ReadOnlyError("You can't write against a read only replica."), True),
        (redis.exceptions.MovedError("3999 127.0.0.1:7001"), True),
        (redis.exceptions.ClusterDownError("The cluster is down"), True),
        (redis.ResponseError("BUSY Redis is busy running a script."), True),
        (redis.ResponseError("NOREPLICAS Not enough good replicas to write."), True),
        (redis.exceptions.OutOfMemoryError("command not allowed when used memory"), True),
        (redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"), False),
        (redis.ResponseError("ERR user_script:3: Script attempted to access a key"), False),
        (redis.exceptions.NoPermissionError("this user has no permissions"), False),
        # As redis-py rewrites a reply inside a pipeline: the server's word comes after.
        (
            redis.ResponseError(
                "Command # 1 (EVALSHA abc 3 s) of pipeline caused error: NOREPLICAS Not enough"
            ),
            True,
        ),
        (
            redis.ResponseError(
                "Command # 2 (WAIT 1 1000) of pipeline caused error: UNBLOCKED force unblock"
            ),
            True,
        ),
        (
            redis.ResponseError(
                "Command # 1 (EVALSHA abc 3 s) of pipeline caused error: WRONGTYPE Operation"
            ),
            False,
        ),
    ],
)
def test_redis_errors_are_sorted_into_retry_and_operator(error: Exception, transient: bool) -> None:
    """Failover replies are retried; WRONGTYPE, script errors and NOPERM need an operator."""
    assert is_transient(error) is transient


# --- failover ----------------------------------------------------------------------------


def test_failover_with_a_stalled_replica_loses_nothing_the_spool_released(
    tmp_path: Path,
) -> None:
    """Replica asleep, master killed mid-drain, Sentinel promotes: every entry once on it."""
    # Without the wait (durability = "none") this loses ~2,000 of the 4,000 entries: what
    # the master acknowledged during the stall never reaches the replica.
    master = LocalRedis(tmp_path / "master", extra=DEBUG).start()
    replica = _replica_of(master, tmp_path / "replica").start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nlogfile {tmp_path / 'sentinel.log'}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 2000\n"  # 1000: spurious 2nd failovers
        "sentinel failover-timeout mymaster 5000\n"
    )
    sentinel = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"])
    probe = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
    pool = ThreadPool("publish", 1)
    scheduler = Scheduler("publish", pool)
    try:
        wait_for(lambda: online_replicas(master.port) == 1, 10, "replica online")
        wait_for(lambda: _sentinel_sees(probe, replica.port), 15, "sentinel sees the replica")
        settings = RedisSettings(url=f"redis+sentinel://127.0.0.1:{port}/mymaster/0")
        sink = RedisSink(
            connect(settings, timeout=2.0), 86400, 0, durability=Policy("auto", None, 0.3)
        )
        spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
        total, payload = 4000, "x" * 8192  # 32 MB: more than the socket buffers hold
        for start in range(0, total, 10):
            spool.append([entry(n, payload) for n in range(start, start + 10)])
        publisher, metrics = publisher_for(sink, spool)
        scheduler.add(publisher)
        scheduler.start()
        wait_for(lambda: spool.pending_events <= total * 2 // 3, 20, "a third released")
        sleeper = redis.Redis(port=replica.port, socket_timeout=30)
        threading.Thread(target=sleeper.execute_command, args=("DEBUG", "SLEEP", 5)).start()
        wait_for(lambda: timeouts(metrics) >= 1, 10, "a WAIT timed out during the stall")
        master.stop(kill=True)  # kill -9 while the replica sleeps
        wait_for(lambda: _master_port(probe) == replica.port, 20, "sentinel promotes")
        master.extra = (*DEBUG, "--replicaof", "127.0.0.1", str(replica.port))
        master.start()  # the old master comes back as a replica, so WAIT 1 can succeed
        wait_for(lambda: spool.pending_records == 0, 30, "the spool drains")
        scheduler.stop(10)
        sleeper.close()
        assert ids_on(replica.port) == Counter({f"e-{n}": 1 for n in range(total)})
    finally:
        scheduler.stop(10)
        pool.close()
        probe.close()
        sentinel.kill()
        sentinel.wait(10)
        replica.stop(kill=True)
        master.stop(kill=True)


def _sentinel_sees(probe: redis.Redis, replica_port: int) -> bool:
    replicas = probe.sentinel_slaves("mymaster")
    return any(r["port"] == replica_port and r["flags"] == "slave" for r in replicas)


def _master_port(probe: redis.Redis) -> int | None:
    try:
        _, port = probe.execute_command("SENTINEL", "get-master-addr-by-name", "mymaster")
    except (redis.RedisError, TypeError, ValueError):
        return None
    return int(port)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('durability = "fast"', "redis.durability"),
        ("wait_replicas = -1", "redis.wait_replicas"),
        ('wait_timeout = "10s"', "redis.wait_timeout"),
        ("wait_timeout = 0", "redis.wait_timeout"),
    ],
)
def test_bad_durability_settings_are_one_line_config_errors(
    tmp_path: Path, toml: str, key: str
) -> None:
    """An unknown mode, a negative count, a wait past the socket timeout or 0 (forever): exit 2."""
    assert_redis_config_error(tmp_path, toml, key)


# --- waiting for the connected replicas (Kafka's acks=all with min.insync.replicas) ------


def test_a_master_whose_replica_is_gone_publishes_alone_and_says_so(
    pair: tuple[LocalRedis, LocalRedis],
) -> None:
    """Replica gone (not lagging): released at once; the metrics name the lonely master."""
    master, replica = pair
    sink = RedisSink(connect(master.url), 60, 0, durability=Policy("auto", None, 2.0))
    registry = CollectorRegistry()
    registry.register(sink.replication)
    assert sink.publish([entry(1)]).published == 1
    assert registry.get_sample_value("drainer_redis_connected_replicas", {"node": "master"}) == 1
    replica.stop(kill=True)
    wait_for(lambda: online_replicas(master.port) == 0, 10, "the master sees no replica")
    assert sink.publish([entry(2)]).published == 1  # a WAIT for nobody
    assert registry.get_sample_value("drainer_redis_connected_replicas", {"node": "master"}) == 0
    assert registry.get_sample_value("drainer_redis_masters_without_replicas") == 1
    assert ids_on(master.port) == Counter({"e-1": 1, "e-2": 1})


def test_min_replicas_holds_records_while_too_few_replicas_are_connected(
    pair: tuple[LocalRedis, LocalRedis],
) -> None:
    """min_replicas = 1 and the replica gone: nothing released, said in the error."""
    master, replica = pair
    sink = RedisSink(connect(master.url), 60, 0, durability=Policy("auto", None, 2.0, 1))
    assert sink.publish([entry(1)]).published == 1
    replica.stop(kill=True)
    wait_for(lambda: online_replicas(master.port) == 0, 10, "the master sees no replica")
    with pytest.raises(DurabilityError, match="0 replicas connected, min_replicas is 1"):
        sink.publish([entry(2)])


def test_failover_to_a_master_without_replicas_publishes_everything_once(
    tmp_path: Path,
) -> None:
    """Replica stalled 4 s, master killed 2 s in, never back: all on the promoted master once."""
    master = LocalRedis(tmp_path / "master", extra=DEBUG).start()
    replica = _replica_of(master, tmp_path / "replica").start()
    port = free_port()
    conf = tmp_path / "sentinel.conf"
    conf.write_text(
        f"port {port}\nbind 127.0.0.1\ndir {tmp_path}\nlogfile {tmp_path / 'sentinel.log'}\n"
        f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
        "sentinel down-after-milliseconds mymaster 2000\n"
        "sentinel failover-timeout mymaster 5000\n"
    )
    sentinel = subprocess.Popen([find_redis_server(), str(conf), "--sentinel"])
    probe = redis.Redis(port=port, socket_timeout=1, decode_responses=True)
    pool = ThreadPool("publish", 1)
    scheduler = Scheduler("publish", pool)
    timers: list[threading.Timer] = []
    try:
        wait_for(lambda: online_replicas(master.port) == 1, 10, "replica online")
        wait_for(lambda: _sentinel_sees(probe, replica.port), 15, "sentinel sees the replica")
        settings = RedisSettings(url=f"redis+sentinel://127.0.0.1:{port}/mymaster/0")
        sink = RedisSink(
            connect(settings, timeout=2.0), 86400, 0, durability=Policy("auto", None, 0.3)
        )
        spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
        total, payload = 4000, "x" * 8192
        for start in range(0, total, 10):
            spool.append([entry(n, payload) for n in range(start, start + 10)])
        publisher, metrics = publisher_for(sink, spool)
        scheduler.add(publisher)
        scheduler.start()
        wait_for(lambda: spool.pending_events <= total * 2 // 3, 30, "a third released")
        # The fault schedule: the replica stalls 4 s; the master dies 2 s into the stall.
        os.kill(_pid(replica), signal.SIGSTOP)
        timers = [
            threading.Timer(2.0, master.stop, kwargs={"kill": True}),
            threading.Timer(4.0, _resume, args=(replica,)),
        ]
        for timer in timers:
            timer.start()
        wait_for(lambda: _master_port(probe) == replica.port, 30, "sentinel promotes")
        wait_for(lambda: spool.pending_records == 0, 60, "the spool drains with no replica")
        assert not master.running, "the old master never came back"
        scheduler.stop(10)
        assert online_replicas(replica.port) == 0
        assert timeouts(metrics) >= 1  # the stalled, still connected replica was waited for
        assert ids_on(replica.port) == Counter({f"e-{n}": 1 for n in range(total)})
    finally:
        scheduler.stop(10)
        pool.close()
        for timer in timers:
            timer.join(10)
        _resume(replica)
        probe.close()
        sentinel.kill()
        sentinel.wait(10)
        replica.stop(kill=True)
        master.stop(kill=True)


def test_the_probe_notices_a_master_left_alone_without_a_publish(
    pair: tuple[LocalRedis, LocalRedis],
) -> None:
    """A quiet daemon: the background probe's INFO replication feeds the alert's gauge."""
    from daemon.sink.durability import refresh_replication
    from daemon.sink.health import RedisProbe

    master, replica = pair
    client = connect(master.url)
    sink = RedisSink(client, 60, 0, durability=Policy("auto", None, 0.3))
    sink.replication.expected = True  # as after a publish that saw the replica
    probe = RedisProbe(
        client, [STREAM], 20, refresh=lambda: refresh_replication(sink.masters(), sink.replication)
    )
    registry = CollectorRegistry()
    registry.register(sink.replication)
    probe.tick(0.0)
    assert registry.get_sample_value("drainer_redis_masters_without_replicas") == 0
    replica.stop(kill=True)
    wait_for(lambda: online_replicas(master.port) == 0, 10, "the master sees no replica")
    probe.tick(10.0)  # the next group/replication read is due
    assert registry.get_sample_value("drainer_redis_masters_without_replicas") == 1
    client.close()
