"""Stream retention against a real Redis: consumer_groups never trims unread entries; minid."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs

from daemon.commands.demo.localredis import LocalRedis
from daemon.errors import ConfigError
from daemon.settings import RedisSettings, load_settings
from daemon.sink.retention import RetentionWorker, consumer_group_floor, parse_id

STREAM = "drainer:{docplanner}"
DAY = 86400.0


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A bytes client on an empty database."""
    built = redis.Redis.from_url(redis_server.url)
    built.flushall()
    yield built
    built.flushall()  # leave no key (e.g. a WRONGTYPE one) to the next test
    built.close()


def fill(client: redis.Redis, count: int, start_ms: int = 1) -> list[bytes]:
    return [client.xadd(STREAM, {"n": str(i)}, id=f"{start_ms + i}-0") for i in range(count)]


def read(client: redis.Redis, group: str, count: int) -> list[bytes]:
    reply = client.xreadgroup(group, "c1", {STREAM: ">"}, count=count)
    return [entry_id for entry_id, _ in reply[0][1]] if reply else []


def test_consumer_groups_trim_only_what_every_group_acknowledged(client: redis.Redis) -> None:
    """Pending entries of one group and undelivered ones of another are never trimmed."""
    ids = fill(client, 1000)
    client.xgroup_create(STREAM, "slow", id="0")
    client.xgroup_create(STREAM, "fast", id="0")
    slow = read(client, "slow", 600)
    client.xack(STREAM, "slow", *slow[:500])  # 500..599 stay pending
    client.xack(STREAM, "fast", *read(client, "fast", 800))  # 800..999 never delivered
    assert consumer_group_floor(client, STREAM) == parse_id(ids[500])
    worker = RetentionWorker(client, [STREAM], "consumer_groups", 7 * DAY)
    assert worker.tick(0.0) == worker.interval
    left = [entry_id for entry_id, _ in client.xrange(STREAM)]
    assert ids[500:] == left[-500:], "an unacknowledged entry was trimmed"
    assert len(left) < 1000, "nothing was trimmed"
    client.xack(STREAM, "slow", *slow[500:])
    client.xack(STREAM, "slow", *read(client, "slow", 1000))
    worker.tick(1.0)
    left = [entry_id for entry_id, _ in client.xrange(STREAM)]
    assert ids[800:] == left[-200:] and len(left) < 500, "the fast group's undelivered trimmed"


def test_a_stream_without_consumer_groups_is_never_trimmed(client: redis.Redis) -> None:
    """No consumer group means nobody read anything: nothing is trimmed."""
    fill(client, 500)
    RetentionWorker(client, [STREAM, "drainer:{absent}"], "consumer_groups", DAY).tick(0.0)
    assert client.xlen(STREAM) == 500


def test_minid_trims_entries_older_than_retention_age(client: redis.Redis) -> None:
    """minid: entries older than retention_age go (exact trim), younger ones all stay."""
    now_ms = int(time.time() * 1000)
    fill(client, 300, start_ms=now_ms - int(8 * DAY * 1000))
    young = fill(client, 50, start_ms=now_ms - int(6 * DAY * 1000))
    worker = RetentionWorker(client, [STREAM], "minid", 7 * DAY, approximate=False)
    worker.tick(0.0)
    assert [entry_id for entry_id, _ in client.xrange(STREAM)] == young


def test_minid_approximate_keeps_every_young_entry(client: redis.Redis) -> None:
    """The production trim (MINID ~) drops whole old nodes and never a young entry."""
    now_ms = int(time.time() * 1000)
    fill(client, 1000, start_ms=now_ms - int(8 * DAY * 1000))
    young = fill(client, 50, start_ms=now_ms - int(DAY * 1000))
    RetentionWorker(client, [STREAM], "minid", 7 * DAY).tick(0.0)
    left = [entry_id for entry_id, _ in client.xrange(STREAM)]
    assert left[-50:] == young and len(left) < 1000


def test_redis_down_marks_retention_failing_and_backs_off(own_redis: LocalRedis) -> None:
    """An unreachable Redis is a transient failure: recorded in health, retried with backoff."""
    client = redis.Redis.from_url(own_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    own_redis.stop()
    worker = RetentionWorker(client, [STREAM], "minid", DAY)
    try:
        assert worker.tick(0.0) < worker.interval
        assert worker.health.failing_since == 0.0
    finally:
        client.close()


def test_non_maxlen_retention_turns_off_the_publish_maxlen(tmp_path: Path) -> None:
    """minid/consumer_groups force stream_maxlen 0; an explicit stream_maxlen is refused."""
    assert RedisSettings(retention="consumer_groups").stream_maxlen == 0
    assert RedisSettings(retention="minid", retention_age=3600.0).stream_maxlen == 0
    assert RedisSettings().stream_maxlen == 1_000_000
    path = tmp_path / "drainer.toml"
    path.write_text('[redis]\nretention = "minid"\nstream_maxlen = 5000\n')
    with pytest.raises(ConfigError, match=r"drainer.toml: redis\.retention: stream_maxlen"):
        load_settings(path, {})


def test_a_stream_key_of_the_wrong_type_is_an_error_in_the_log_once(client: redis.Redis) -> None:
    """WRONGTYPE on a stream key: health fails, one error line (not one per tick)."""
    client.set(STREAM, "not a stream")
    worker = RetentionWorker(client, [STREAM], "minid", DAY)
    with capture_logs() as logs:
        worker.tick(0.0)
        worker.tick(1.0)
    refused = [log for log in logs if log["event"] == "redis.retention_refused"]
    assert len(refused) == 1 and "WRONGTYPE" in refused[0]["error"]
    assert worker.health.failing_since is not None
