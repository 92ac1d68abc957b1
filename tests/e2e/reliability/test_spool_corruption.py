"""A corrupted spool tail end to end: garbage appended, or the last record torn mid-way."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.spool import MAGIC, decode_payload, scan
from tests.e2e.reliability.conftest import (
    STREAM,
    docplanner_payloads,
    dp_account,
    spool_backlog,
    spool_segments,
    tally,
)
from tests.helpers import Daemon, wait_for, wait_settled, write_config

CLIENTS = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]


def corrupt(segment: Path, how: str) -> int:
    """Damage the tail of ``segment``; return how many notifications the damage destroys."""
    data = segment.read_bytes()
    records, end = scan(data)
    assert end == len(data) and records, "a clean segment to start from"
    if how == "garbage":
        # A plausible frame start followed by junk: the scanner must not trust the magic.
        segment.write_bytes(data + MAGIC + b"\xff\x00garbage after a SIGKILL\x00" * 8)
        return 0
    seq, offset, length, payload = records[-1]
    raw = decode_payload(seq, payload).raw
    assert raw is not None
    segment.write_bytes(data[: offset + length // 2])
    return len(json.loads(raw.body)["notifications"])


@pytest.mark.parametrize("how", ["garbage", "torn"])
def test_corrupt_spool_tail_is_set_aside_and_every_intact_record_published_once(
    tmp_path: Path, own_redis: LocalRedis, how: str
) -> None:
    """SIGKILL with a spooled backlog, damage the tail: intact records land once, logged."""
    own_redis.stop()
    with DocPlannerSandbox(clients=CLIENTS) as sandbox:
        sandbox.enqueue("pl-id", 1000)
        config = write_config(
            tmp_path / "drainer.toml", own_redis.url, docplanner=[dp_account("pl", sandbox)]
        )
        daemon = Daemon(config).start()
        try:
            wait_for(lambda: spool_backlog(tmp_path) == (10, 1000), 30, "10 records spooled")
            daemon.kill()
            segment = spool_segments(tmp_path)[-1]
            destroyed = corrupt(segment, how)
            own_redis.start()
            client = redis.Redis.from_url(own_redis.url)
            daemon.start()
            wait_for(lambda: client.xlen(STREAM) >= 1000 - destroyed, 30, "the intact records")
            sandbox.enqueue("pl-id", 300)
            wait_for(lambda: client.xlen(STREAM) >= 1300 - destroyed, 30, "new pulls published")
            wait_settled(daemon)
            assert daemon.stop() == 0
            published = docplanner_payloads(client)
            client.close()
        finally:
            if daemon.process is not None:
                daemon.kill()
        handed = sandbox.handed_out("pl-id")
    expected = handed[: 1000 - destroyed] + handed[1000:]
    counts = tally(published, expected)
    aside = sorted(segment.parent.glob("*.corrupt-*"))
    print(
        counts.line(
            f"spool-tail-{how}",
            f"handed out {len(handed)}, destroyed by the damage {destroyed}, "
            f"set aside {[p.stat().st_size for p in aside]} bytes",
        )
    )
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == expected
    assert "spool.tail_truncated" in daemon.log
    assert len(aside) == 1 and aside[0].stat().st_size > 0, "the damaged bytes are kept aside"
    assert destroyed == (0 if how == "garbage" else 100)


def test_spool_replayed_after_a_lost_cursor_publishes_nothing_twice(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Spool restored to its pre-publish state (cursor lost at power loss): replay is a no-op."""
    own_redis.stop()
    with DocPlannerSandbox(clients=CLIENTS) as sandbox:
        sandbox.enqueue("pl-id", 1000)
        config = write_config(
            tmp_path / "drainer.toml", own_redis.url, docplanner=[dp_account("pl", sandbox)]
        )
        spool = tmp_path / "spool"
        daemon = Daemon(config).start()
        try:
            wait_for(lambda: spool_backlog(tmp_path) == (10, 1000), 30, "10 records spooled")
            daemon.kill()
            shutil.copytree(spool, tmp_path / "spool-before-publishing")
            own_redis.start()
            client = redis.Redis.from_url(own_redis.url)
            daemon.start()
            wait_for(lambda: spool_backlog(tmp_path) == (0, 0), 30, "the spool published")
            assert daemon.stop() == 0
            shutil.rmtree(spool)
            shutil.copytree(tmp_path / "spool-before-publishing", spool)
            daemon.start()
            wait_for(lambda: spool_backlog(tmp_path) == (0, 0), 30, "the spool replayed")
            wait_settled(daemon)
            assert daemon.stop() == 0
            published = docplanner_payloads(client)
            client.close()
        finally:
            if daemon.process is not None:
                daemon.kill()
        handed = sandbox.handed_out("pl-id")
    counts = tally(published, handed)
    print(counts.line("spool-replay", "10 records (1000 notifications) published twice"))
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed
