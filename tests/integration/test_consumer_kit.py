"""The consumer kit against a real Redis: crashes, redelivery and poison entries handled."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.docplanner import docplanner_entry
from drainer_consumer import Consumer, DeadLetter, Event
from tests.helpers import ROOT, stream_entries, wait_for

KIT = "kit:{s}"


# --- the Consumer --------------------------------------------------------------------------


def _fill(client: redis.Redis, count: int, stream: str = KIT) -> list[str]:
    """``count`` valid DocPlanner entries (built by the daemon's envelope); their event ids."""
    ids = []
    for n in range(count):
        notification = {
            "name": "slot-booked",
            "data": {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": str(n)}},
            "created_at": "2026-11-02T10:18:34+01:00",
        }
        entry = docplanner_entry(stream, "pl", notification, datetime.now(UTC), "pull")
        client.xadd(stream, entry.fields)  # type: ignore[arg-type]
        ids.append(entry.event_id)
    return ids


class Running:
    """A Consumer driven by :meth:`Consumer.run` in a thread; stopped and joined on exit."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.thread = threading.Thread(target=consumer.run, daemon=True)

    def __enter__(self) -> Consumer:
        self.thread.start()
        return self.consumer

    def __exit__(self, *exc: object) -> None:
        self.consumer.stop()
        self.thread.join(timeout=30)
        self.consumer.close()
        assert not self.thread.is_alive()


def _worker(url: str, name: str, *flags: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "tests.integration.kit_worker", "--redis", url]
    argv += ["--stream", KIT, "--group", "g", "--name", name, *flags]
    return subprocess.Popen(argv, cwd=ROOT)


@pytest.fixture
def workers() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Worker processes of one test, killed at the end if still running."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def _text(items: list[Any]) -> list[str]:
    return [i.decode() if isinstance(i, bytes) else i for i in items]


def test_a_consumer_killed_mid_batch_has_its_entries_claimed_and_handled_once(
    redis_server: LocalRedis,
    redis_client: redis.Redis,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """Two consumers, one SIGKILLed holding 7 of its 10: the other claims them; all once."""
    ids = _fill(redis_client, 30)
    workers.append(_worker(redis_server.url, "doomed", "--count", "10", "--hang-after", "3"))
    wait_for(lambda: redis_client.llen("stuck") == 1, 60, "the doomed worker stuck mid-batch")
    workers[0].send_signal(signal.SIGKILL)  # before the survivor exists: nobody can claim yet
    workers[0].wait(timeout=10)
    doomed = redis_client.xpending_range(KIT, "g", "-", "+", 100, consumername="doomed")
    assert len(doomed) == 7  # read, never acked: its PEL at the moment it died
    handled: list[str] = []
    survivor = Consumer(
        redis_server.url,
        KIT,
        "g",
        "survivor",
        lambda e: handled.append(e.event_id),
        claim_idle=2.0,
        count=10,
        block=0.5,
    )
    with Running(survivor):
        wait_for(lambda: len(handled) >= 27, 60, "the survivor's 20 new + 7 claimed entries")
        wait_for(lambda: redis_client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
    by_doomed = [line.split()[1] for line in _text(redis_client.lrange("handled", 0, -1))]
    assert len(by_doomed) == 3
    assert sorted(by_doomed + handled) == sorted(ids)  # every entry handled exactly once
    stats = survivor.stats
    assert (stats.claimed, stats.acked, stats.ack_misses) == (7, 27, 0)


def test_a_poison_entry_is_moved_aside_after_max_deliveries(
    redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """A handler that always fails on one entry: 3 deliveries, then the failed stream; acked."""
    ids = _fill(redis_client, 6)
    poison = ids[2]
    calls: dict[str, int] = {}

    def handle(event: Event) -> None:
        calls[event.event_id] = calls.get(event.event_id, 0) + 1
        if event.event_id == poison:
            raise RuntimeError("cannot bill this one")

    consumer = Consumer(
        redis_server.url, KIT, "g", "c1", handle, claim_idle=0.3, max_deliveries=3, block=0.2
    )
    failed = "kit:{s}:failed:g"
    with Running(consumer):
        wait_for(lambda: redis_client.xlen(failed) == 1, 60, "the poison entry moved aside")
        wait_for(lambda: redis_client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
    assert calls == {**dict.fromkeys(ids, 1), poison: 3}
    (moved,) = stream_entries(redis_client, failed)
    assert moved["event_id"] == poison and moved["failed_reason"] == "handler_failed"
    assert moved["failed_deliveries"] == "3" and "cannot bill" in moved["failed_error"]
    original = dict(stream_entries(redis_client, KIT)[2])
    assert {k: v for k, v in moved.items() if not k.startswith("failed_")} == original
    assert (consumer.stats.handled, consumer.stats.failed, consumer.stats.moved) == (5, 3, 1)


def test_an_entry_that_is_not_a_valid_entry_is_moved_aside_without_the_handler(
    redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Garbage on the stream (and a dead letter with no handler for it) never reach handle()."""
    (good,) = _fill(redis_client, 1)
    redis_client.xadd(KIT, {"event_id": "x", "payload": b"\xff\xfe"})
    letter = {"source": "docplanner", "account": "pl", "reason": "invalid_json", "raw": "{"}
    redis_client.xadd(KIT, {**letter, "received_at": "2026-12-08T00:00:00Z", "schema": "1"})
    seen: list[str] = []
    consumer = Consumer(redis_server.url, KIT, "g", "c1", lambda e: seen.append(e.event_id))
    with Running(consumer):
        wait_for(lambda: redis_client.xlen("kit:{s}:failed:g") == 2, 60, "two moved aside")
        wait_for(lambda: redis_client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
    assert seen == [good]
    raw = redis.Redis.from_url(redis_server.url)
    moved = [fields for _, fields in raw.xrange("kit:{s}:failed:g")]
    raw.close()
    assert [m[b"failed_reason"] for m in moved] == [b"invalid_entry", b"no_deadletter_handler"]
    assert moved[0][b"payload"] == b"\xff\xfe"  # moved verbatim, bytes that are not UTF-8


def test_sigterm_finishes_the_entry_in_the_handler_then_exits_0(
    redis_server: LocalRedis,
    redis_client: redis.Redis,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """SIGTERM while an entry is in the handler: it completes and is acked; the rest waits."""
    ids = _fill(redis_client, 5)
    workers.append(_worker(redis_server.url, "w1", "--hold", "--count", "5"))
    wait_for(lambda: redis_client.llen("holding") == 1, 60, "an entry in the handler")
    workers[0].send_signal(signal.SIGTERM)
    redis_client.set("release", "1")
    assert workers[0].wait(timeout=30) == 0
    assert _text(redis_client.lrange("handled", 0, -1)) == [f"w1 {ids[0]}"]
    assert redis_client.get("stats:w1") == "1 1 0"
    pending = redis_client.xpending_range(KIT, "g", "-", "+", 10, consumername="w1")
    assert len(pending) == 4  # read but not started: left for this name or a claimer


def test_an_entry_that_crashes_the_consumer_is_moved_aside_after_max_deliveries(
    redis_server: LocalRedis,
    redis_client: redis.Redis,
    workers: list[subprocess.Popen[bytes]],
) -> None:
    """A handler that kills its process on one entry: restarts under the same name re-read
    their own pending entries, count deliveries, and the third run moves it aside."""
    ids = _fill(redis_client, 6)
    flags = ("--crash-on", ids[2], "--max-deliveries", "2", "--count", "4")
    for run in (1, 2):
        workers.append(_worker(redis_server.url, "w1", *flags))
        assert workers[-1].wait(timeout=60) == 3, f"run {run} crashed on the poison entry"
    (row,) = redis_client.xpending_range(KIT, "g", "-", "+", 10, consumername="w1")[:1]
    assert row["times_delivered"] == 2  # the first pending one is the poison entry
    workers.append(_worker(redis_server.url, "w1", *flags))
    wait_for(lambda: redis_client.xlen("kit:{s}:failed:g") == 1, 60, "the poison moved aside")
    wait_for(lambda: redis_client.llen("handled") == 5, 60, "the other five handled")
    wait_for(lambda: redis_client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
    (moved,) = stream_entries(redis_client, "kit:{s}:failed:g")
    assert (moved["event_id"], moved["failed_reason"]) == (ids[2], "max_deliveries")
    handled = [line.split()[1] for line in _text(redis_client.lrange("handled", 0, -1))]
    assert sorted(handled) == sorted(ids[:2] + ids[3:])


def test_a_consumer_outlives_a_redis_restart_and_loses_nothing(
    own_redis: LocalRedis, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis stopped under a running consumer: it retries with backoff, then reads on."""
    client = redis.Redis.from_url(own_redis.url, socket_timeout=5)
    before = _fill(client, 3)
    handled: list[str] = []
    consumer = Consumer(own_redis.url, KIT, "g", "c1", lambda e: handled.append(e.event_id))
    with Running(consumer):
        wait_for(lambda: len(handled) == 3, 60, "the first three")
        wait_for(lambda: client.client_list(_type="normal"), 10, "the consumer connected")
        own_redis.stop()

        def logged(event: str) -> bool:
            return any(r.getMessage().startswith(event) for r in caplog.records)

        wait_for(lambda: logged("consumer.redis_unavailable"), 60, "the outage noticed")
        own_redis.start()  # same port, same append-only file
        after = _fill(client, 3)
        wait_for(lambda: len(handled) == 6, 60, "three more after the restart")
        wait_for(lambda: client.xpending(KIT, "g")["pending"] == 0, 30, "nothing pending")
    client.close()
    assert handled == before + after
    events = [r.getMessage().split()[0] for r in caplog.records if r.name == "drainer_consumer"]
    assert events == ["consumer.redis_unavailable", "consumer.redis_back"]  # once per outage


def test_one_consumer_reads_events_and_dead_letters_of_several_streams(
    redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Two streams in one XREADGROUP: events to the handler, dead letters to on_deadletter."""
    ids = _fill(redis_client, 2)
    letter = {"source": "myinvois", "account": "acme", "reason": "invalid_notification"}
    letter |= {"raw": "{}", "detail": "no notificationId", "received_at": "2026-12-08T00:00:00Z"}
    redis_client.xadd("kit:{d}", {**letter, "schema": "1"})
    events: list[str] = []
    letters: list[DeadLetter] = []
    consumer = Consumer(
        redis_server.url,
        [KIT, "kit:{d}"],
        "g",
        "c1",
        lambda e: events.append(e.event_id),
        on_deadletter=letters.append,
    )
    with Running(consumer):
        wait_for(lambda: len(events) == 2 and len(letters) == 1, 60, "both streams read")
    assert events == ids
    assert (letters[0].stream, letters[0].reason) == ("kit:{d}", "invalid_notification")
    assert redis_client.xpending("kit:{d}", "g")["pending"] == 0
