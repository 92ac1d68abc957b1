"""The consumer kit against a real Redis that refuses for a while: READONLY, OOM."""

from __future__ import annotations

import threading

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis, free_port
from drainer_consumer import Consumer, Event
from tests.helpers import stream_entries, wait_for
from tests.integration.test_consumer_kit import KIT, Running, _fill

FAILED = "kit:{s}:failed:g"


def _events(caplog: pytest.LogCaptureFixture) -> list[str]:
    events = [r.getMessage().split()[0] for r in caplog.records if r.name == "drainer_consumer"]
    return [event for event in events if event.startswith("consumer.redis_")]


def test_a_node_turned_replica_is_waited_out_then_reading_resumes(
    own_redis: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """REPLICAOF under a running consumer (READONLY, as after a failover): logged once,
    retried with backoff, and once it is a master again the consumer reads on."""
    client = redis.Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=10)
    before = _fill(client, 2)
    handled: list[str] = []
    running = Running(Consumer(own_redis.url, KIT, "g", "c1", lambda e: handled.append(e.event_id)))
    with running:
        wait_for(lambda: len(handled) == 2, 60, "the first two")
        client.replicaof("127.0.0.1", free_port())  # no master there: data kept, writes refused
        wait_for(lambda: "consumer.redis_unavailable" in _events(caplog), 60, "READONLY seen")
        client.replicaof("NO", "ONE")
        after = _fill(client, 2)
        wait_for(lambda: len(handled) == 4, 60, "two more once it is a master again")
        wait_for(lambda: client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
        assert running.thread.is_alive()
    client.close()
    assert handled == before + after
    assert _events(caplog) == ["consumer.redis_unavailable", "consumer.redis_back"]


def test_oom_while_moving_an_entry_aside_is_waited_out_and_it_is_moved_once(
    own_redis: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """maxmemory reached (OOM on the XADD of the move-aside MULTI): retried with backoff;
    once memory is back the entry is copied aside exactly once and the rest handled."""
    client = redis.Redis.from_url(own_redis.url, decode_responses=True, socket_timeout=10)
    (first,) = _fill(client, 1)
    client.xadd(KIT, {"event_id": "x", "payload": "not an entry"})
    (last,) = _fill(client, 1)
    entered, gate = threading.Event(), threading.Event()
    handled: list[str] = []

    def handle(event: Event) -> None:
        if event.event_id == first:
            entered.set()
            gate.wait(60)
        handled.append(event.event_id)

    consumer = Consumer(own_redis.url, KIT, "g", "c1", handle, max_deliveries=100)
    running = Running(consumer)
    with running:
        wait_for(entered.is_set, 60, "the first entry in the handler")
        client.config_set("maxmemory", 1)  # noeviction (the default): XADD is refused, OOM
        gate.set()
        wait_for(lambda: "consumer.redis_unavailable" in _events(caplog), 60, "the OOM seen")
        assert "OutOfMemoryError" in caplog.text
        assert running.thread.is_alive() and client.xlen(FAILED) == 0
        client.config_set("maxmemory", 0)
        wait_for(lambda: len(handled) == 2, 60, "the entry behind it handled")
        wait_for(lambda: client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
    (moved,) = stream_entries(client, FAILED)  # once: the refused MULTI was not re-sent
    client.close()
    assert (moved["payload"], moved["failed_reason"]) == ("not an entry", "invalid_entry")
    assert handled == [first, last]
    assert consumer.stats.moved == 1
    assert _events(caplog) == ["consumer.redis_unavailable", "consumer.redis_back"]
