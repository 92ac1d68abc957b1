"""Broken items in live batches through the real CLI: dead-lettered, the rest published once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.docplanner import docplanner_event_id
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config
from tests.integration.test_poison import DEADLETTER, DOCPLANNER, DOCPLANNER_POISON

MYINVOIS = "drainer:{myinvois}"


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
