"""Poison items and poison spool records (SPEC §2): set aside on their own, the rest goes on."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.docplanner import docplanner_event_id
from daemon.envelope.entries import StreamEntry
from daemon.metrics import Metrics
from daemon.publisher import SET_ASIDE_AFTER, Publisher
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox
from daemon.sink import RedisSink, connect
from daemon.sources.docplanner.push import PushReceiver
from daemon.spool import SpoolBudget, SpoolLog
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config

DOCPLANNER = "drainer:{docplanner}"
MYINVOIS = "drainer:{myinvois}"
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


def myinvois_poison() -> list[Any]:
    """Seven kinds of broken MyInvois items."""
    good = {"creationDateTime": "2026-11-02T10:18:34Z", "typeId": "6", "status": "delivered"}
    return [
        {**good, "marker": "poison-mi-1", "notificationId": "POISON1", "typeId": "³"},
        {**good, "marker": "poison-mi-2", "notificationId": "POISON2",
         "creationDateTime": "0001-01-01T00:00:00+08:00"},
        {**good, "marker": "poison-mi-3", "notificationId": "POISON3",
         "creationDateTime": "2026-02-30T00:00:00Z"},
        {**good, "marker": "poison-mi-4", "notificationId": 12345},
        {**good, "marker": "poison-mi-5", "notificationId": "POISON5", "typeId": {"a": [1]}},
        "poison-mi-6 not an object",
        {**good, "marker": "poison-mi-7", "notificationId": "POISON7", "typeId": 3.5},
    ]  # fmt: skip


def test_broken_items_in_live_batches_are_dead_lettered_and_the_rest_published_once(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """6 broken DocPlanner and 7 broken MyInvois items among valid ones: each is on the
    stream or the dead-letter stream, every valid item once, and no account stalls."""
    dp_clients = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]
    mi_clients = [MyInvoisClient(client_id="acme-id", client_secret="acme-id-secret-value")]
    with (
        DocPlannerSandbox(clients=dp_clients) as dp,
        MyInvoisSandbox(clients=mi_clients, requests_per_minute=6000) as mi,
    ):
        valid_dp: list[Any] = []
        for poison in DOCPLANNER_POISON:  # each poison item inside a live batch
            valid_dp += dp.enqueue("pl-id", 30)
            dp.enqueue_raw("pl-id", [poison])
        valid_dp += dp.enqueue("pl-id", 30)
        now = datetime.now(UTC).replace(microsecond=0)
        valid_mi = mi.add_notifications("acme-id", 150, start=now - timedelta(hours=6))
        mi.add_raw("acme-id", myinvois_poison(), now - timedelta(hours=3))
        acct = {
            "name": "acme",
            "base_url": mi.base_url,
            "client_id": "acme-id",
            "client_secret": "acme-id-secret-value",
            "interval": "1s",
            "page_size": 20,
            "requests_per_minute": 6000,
            "start_at": (now - timedelta(days=1)).isoformat().replace("+00:00", "Z"),
        }
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account("pl", dp, batch_size=25)],
            myinvois=[acct],
        )
        watermark = "drainer:{myinvois}:watermark:acme"

        def dead(source: str) -> list[dict[str, str]]:
            return [e for e in stream_entries(redis_client, DEADLETTER) if e["source"] == source]

        def watermark_passed() -> bool:
            stored = redis_client.get(watermark)
            return stored is not None and float(stored) > now.timestamp() - 5

        with Daemon(config) as daemon:
            wait_for(lambda: redis_client.xlen(DOCPLANNER) >= len(valid_dp), 90, "DocPlanner")
            wait_for(lambda: len(dead("docplanner")) >= 6, 60, "DocPlanner dead letters")
            wait_for(lambda: redis_client.xlen(MYINVOIS) >= len(valid_mi), 90, "MyInvois")
            wait_for(lambda: len(dead("myinvois")) >= 7, 60, "MyInvois dead letters")
            wait_for(watermark_passed, 60, "the MyInvois watermark past the poison items")
            assert dp.queue_length("pl-id") == 0
            assert daemon.stop() == 0
        log = daemon.log
    assert "tick_crashed" not in log and "Traceback" not in log.replace("item_not_normalised", "")
    dp_ids = [e["event_id"] for e in stream_entries(redis_client, DOCPLANNER)]
    assert sorted(dp_ids) == sorted(docplanner_event_id("pl", item) for item in valid_dp)
    mi_ids = [e["event_id"] for e in stream_entries(redis_client, MYINVOIS)]
    assert sorted(mi_ids) == sorted(f"myinvois:acme:{i['notificationId']}" for i in valid_mi)
    for source, count, prefix in (("docplanner", 6, "poison-dp-"), ("myinvois", 7, "poison-mi-")):
        letters = dead(source)
        markers = {n for n in range(1, count + 1) for e in letters if f"{prefix}{n}" in e["raw"]}
        assert markers == set(range(1, count + 1)), (source, letters)
        assert len(letters) == count and {e["reason"] for e in letters} == {"invalid_notification"}


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
