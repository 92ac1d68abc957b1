"""The spool at its limits: full (``spool.max_bytes``) while Redis is down, and a real ENOSPC."""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.e2e.reliability.conftest import STREAM, docplanner_payloads, dp_account, metric, tally
from tests.helpers import Daemon, wait_for, wait_settled, write_config

CLIENTS = [DocPlannerClient(client_id="pl-id", client_secret="pl-secret-value")]


def readyz(daemon: Daemon) -> tuple[int, dict[str, Any]]:
    response = requests.get(f"http://127.0.0.1:{daemon.port}/readyz", timeout=5)
    return response.status_code, response.json()


def wait_stable(read: Any, seconds: float, timeout: float, what: str) -> Any:
    """Wait until ``read()`` has not changed for ``seconds``; return the value."""
    deadline = time.monotonic() + timeout
    value, since = read(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)  # poll interval of a loop with a deadline
        now = read()
        if now != value:
            value, since = now, time.monotonic()
        elif time.monotonic() - since >= seconds:
            return value
    raise AssertionError(f"timed out after {timeout}s waiting for {what} to settle")


@contextlib.contextmanager
def full_spool(tmp_path: Path, own_redis: LocalRedis) -> Iterator[tuple[DocPlannerSandbox, Daemon]]:
    """A daemon with a 5 MiB spool whose Redis is down and whose spool has filled up."""
    with DocPlannerSandbox(clients=CLIENTS) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml",
            own_redis.url,
            docplanner=[dp_account("pl", sandbox)],
            spool_max="5MiB",
        )
        sandbox.enqueue("pl-id", 500)
        client = redis.Redis.from_url(own_redis.url)
        try:
            with Daemon(config) as daemon:
                wait_for(lambda: client.xlen(STREAM) >= 500, 30, "first 500")
                own_redis.stop()
                sandbox.enqueue("pl-id", 4000)
                wait_stable(lambda: sandbox.queue_length("pl-id"), 3.0, 30, "the queue")
                yield sandbox, daemon
        finally:
            client.close()


def test_full_spool_pauses_pulling_says_why_and_later_drains_exactly_once(
    tmp_path: Path, own_redis: LocalRedis
) -> None:
    """Spool full while Redis is down: intake pauses, logged; Redis back: all once, in order."""
    with full_spool(tmp_path, own_redis) as (sandbox, daemon):
        left = sandbox.queue_length("pl-id")
        status, body = readyz(daemon)
        assert status == 503 and "redis" in body["not_ready"]
        assert "spool full: pulling paused" in daemon.log
        time.sleep(2.0)  # an observation window: a pull would show within it
        assert sandbox.queue_length("pl-id") == left, "no pull while the spool is full"
        own_redis.start()
        client = redis.Redis.from_url(own_redis.url)
        try:
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 60, "intake resumed")
            wait_for(lambda: client.xlen(STREAM) >= 4500, 60, "4500 entries")
            wait_for(lambda: readyz(daemon)[0] == 200, 20, "/readyz 200")
            wait_settled(daemon)
            assert daemon.stop() == 0
            published = docplanner_payloads(client)
        finally:
            client.close()
        handed = sandbox.handed_out("pl-id")
    counts = tally(published, handed)
    print(
        counts.line(
            "spool-full",
            f"queue stopped at {left} of 4000 with a 5 MiB spool, /readyz said {body}",
        )
    )
    assert 0 < left < 4000, "the spool filled before the queue was empty"
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed


def test_readyz_names_the_full_spool(tmp_path: Path, own_redis: LocalRedis) -> None:
    """While intake is paused by a full spool, /readyz names the spool, not only Redis."""
    with full_spool(tmp_path, own_redis) as (_, daemon):
        status, body = readyz(daemon)
        own_redis.start()
        assert daemon.stop() == 0
    assert status == 503
    assert any("spool" in str(why) for name, why in body["not_ready"].items() if name != "redis")


def test_spool_gauges_grow_while_redis_is_down(tmp_path: Path, own_redis: LocalRedis) -> None:
    """The spool backlog gauges show the backlog that builds up during a Redis outage."""
    with full_spool(tmp_path, own_redis) as (_, daemon):
        text = daemon.metrics()
        own_redis.start()
        assert daemon.stop() == 0
    assert metric(text, "drainer_spool_bytes", account="pl") > 1024 * 1024
    assert metric(text, "drainer_spool_pending_events", account="pl") >= 1000


@contextlib.contextmanager
def tiny_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on ``directory`` (needs CAP_SYS_ADMIN)."""
    directory.mkdir(parents=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs for a real ENOSPC: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path, leave: int) -> Path:
    """Fill the filesystem of ``directory`` until only about ``leave`` bytes are free."""
    filler = directory / "filler"
    stat = os.statvfs(directory)
    free = stat.f_bavail * stat.f_frsize
    with filler.open("wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    return filler


def test_real_enospc_holds_the_batch_then_publishes_it_once(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """The spool disk is full (ENOSPC on a tmpfs): logged, no more pulls, then all once."""
    with (
        tiny_tmpfs(tmp_path / "spool", "1m") as spool_fs,
        DocPlannerSandbox(clients=CLIENTS) as sandbox,
    ):
        filler = fill(spool_fs, 16 * 1024)
        sandbox.enqueue("pl-id", 1000)
        config = write_config(
            tmp_path / "drainer.toml", redis_server.url, docplanner=[dp_account("pl", sandbox)]
        )
        with Daemon(config) as daemon:
            wait_for(lambda: "docplanner.spool_write_failed" in daemon.log, 20, "ENOSPC logged")
            held = 1000 - wait_stable(lambda: sandbox.queue_length("pl-id"), 2.0, 20, "queue")
            on_stream_while_full = redis_client.xlen(STREAM)
            filler.unlink()
            wait_for(lambda: sandbox.queue_length("pl-id") == 0, 60, "queue drained")
            wait_for(lambda: redis_client.xlen(STREAM) >= 1000, 60, "1000 entries")
            wait_settled(daemon)
            assert daemon.stop() == 0
        handed = sandbox.handed_out("pl-id")
    published = docplanner_payloads(redis_client)
    counts = tally(published, handed)
    print(
        counts.line(
            "spool-enospc",
            f"1 MiB tmpfs filled: {held} popped and held in memory, "
            f"{on_stream_while_full} on the stream while the disk was full",
        )
    )
    assert held == 100 and on_stream_while_full == 0, "one batch popped, nothing spooled"
    assert "No space left on device" in daemon.log
    assert counts.duplicates == 0 and counts.lost == 0 and counts.unexpected == 0
    assert published == handed
