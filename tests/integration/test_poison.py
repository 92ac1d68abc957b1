"""Poison items and poison spool records (SPEC §2): set aside on their own, the rest goes on."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.entries import StreamEntry
from daemon.metrics import Metrics
from daemon.publisher import SET_ASIDE_AFTER, Publisher
from daemon.sink import RedisSink, connect
from daemon.sources.docplanner.push import PushReceiver
from daemon.spool import SpoolBudget, SpoolLog
from tests.helpers import stream_entries

DOCPLANNER = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"
NOW = "2026-11-02T10:18:34+00:00"

# Six kinds of broken DocPlanner items; each carries a marker found again in its dead letter.
SLOT = {"name": "slot-booked", "data": {}, "created_at": NOW}
DOCPLANNER_POISON: list[Any] = [
    "poison-dp-1 not an object",
    {**SLOT, "marker": "poison-dp-2", "name": {"x": [{"y": [1, {"z": None}]}]}},
    {**SLOT, "marker": "poison-dp-3", "created_at": "2026-02-30T10:00:00Z"},
    {**SLOT, "marker": "poison-dp-4", "created_at": "0001-01-01T00:00:00+05:00"},
    {**SLOT, "marker": "poison-dp-5", "data": "nope"},
    {**SLOT, "marker": "poison-dp-6", "created_at": 1700000000},
]


def publisher_on(tmp_path: Path, url: str) -> Publisher:
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    sink = RedisSink(connect(url, timeout=2.0), 86400.0, 0)
    return Publisher("docplanner", "pl", spool, sink, metrics, DEADLETTER)


def entry(n: int) -> StreamEntry:
    payload = json.dumps({"name": "slot-booked", "data": {"n": n}, "created_at": NOW})
    event_id = f"docplanner:pl:{n:032x}"
    fields = {"event_id": event_id, "source": "docplanner", "account": "pl", "payload": payload}
    return StreamEntry(DOCPLANNER, event_id, {**fields, "received_at": "2026-11-02T10:20:00Z"})


def test_a_record_redis_keeps_refusing_is_set_aside_and_the_spool_moves_on(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """WRONGTYPE on the stream key: after a few attempts each refused entry goes to the
    dead-letter stream with its notification as raw, counted; later records publish."""
    redis_client.set(DOCPLANNER, "a foreign string key")
    publisher = publisher_on(tmp_path, redis_server.url)
    publisher.spool.append([entry(1), entry(2)])
    publisher.spool.append([entry(3)])
    now = 0.0
    for _ in range(4 * SET_ASIDE_AFTER):  # each tick is one attempt; no waiting between them
        if not publisher.spool.pending_records:
            break
        publisher.tick(now)
        now += 100.0
    assert publisher.spool.pending_records == 0, "the spool must move on"
    letters = stream_entries(redis_client, DEADLETTER)
    assert [e["reason"] for e in letters] == ["publish_refused"] * 3
    assert [json.loads(e["raw"])["data"]["n"] for e in letters] == [1, 2, 3]
    assert all("WRONGTYPE" in e["detail"] for e in letters)
    labels = {"source": "docplanner", "account": "pl"}
    registry = publisher.metrics.registry
    assert registry.get_sample_value("drainer_spool_records_set_aside_total", labels) == 2
    publisher.sink.client.close()


def test_pushed_broken_items_are_400_and_dead_lettered_each_with_its_raw_bytes(
    tmp_path: Path,
) -> None:
    """Each broken DocPlanner item pushed alone: 400, dead-lettered with its bytes; a valid
    push after them is spooled (204)."""
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    accepting = threading.Event()
    accepting.set()
    token = "a-push-token-long-enough-0123"
    receiver = PushReceiver("pl", token, spool, metrics, DOCPLANNER, DEADLETTER, accepting)
    for poison in DOCPLANNER_POISON:
        raw = json.dumps(poison).encode()
        status, answer = receiver.handle(token, raw)
        assert status == 400 and answer is not None, poison
        [record] = spool.pending()[-1:]
        assert [(e.stream, e.fields["raw"]) for e in record.entries] == [(DEADLETTER, raw.decode())]
    assert receiver.handle(token, json.dumps(SLOT).encode()) == (204, None)
