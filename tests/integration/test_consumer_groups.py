"""Downstream visibility against a real Redis: consumer-group metrics and group-aware retention."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from daemon.commands.demo.localredis import LocalRedis
from daemon.metrics.groups import ConsumerGroupCollector
from daemon.settings import RedisSettings
from daemon.sink.groups import group_stats, read_groups, read_stream_groups
from daemon.sink.retention import RetentionWorker, consumer_group_floor, parse_id

STREAM = "drainer:{docplanner}"
Samples = dict[tuple[str, str, str], float]  # (name, stream, group) -> value


@pytest.fixture
def client(redis_server: LocalRedis) -> Iterator[redis.Redis]:
    """A bytes client on an empty database."""
    built = redis.Redis.from_url(redis_server.url)
    built.flushall()
    yield built
    built.flushall()  # leave no key (e.g. a WRONGTYPE one) to the next test
    built.close()


def group_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("drainer_consumer_group"):
                key = (sample.name, sample.labels["stream"], sample.labels.get("group", ""))
                samples[key] = sample.value
    return samples


def scrape(collector: ConsumerGroupCollector) -> Samples:
    registry = CollectorRegistry()
    registry.register(collector)
    return group_samples(generate_latest(registry).decode())


def fill(client: redis.Redis, count: int, start_ms: int = 1) -> list[bytes]:
    return [client.xadd(STREAM, {"n": str(i)}, id=f"{start_ms + i}-0") for i in range(count)]


def read(client: redis.Redis, group: str, count: int, ack: bool = True) -> list[bytes]:
    reply = client.xreadgroup(group, "c1", {STREAM: ">"}, count=count)
    ids = [entry_id for entry_id, _ in reply[0][1]] if reply else []
    if ack and ids:
        client.xack(STREAM, group, *ids)
    return ids


def test_pending_entries_and_their_age_are_exported(client: redis.Redis) -> None:
    """Delivered but unacknowledged entries: pending count and the oldest one's age."""
    now_ms = int(time.time() * 1000)
    fill(client, 10, start_ms=now_ms - 3_600_000)  # an hour old
    client.xgroup_create(STREAM, "billing", id="0")
    read(client, "billing", 4, ack=False)
    samples = scrape(ConsumerGroupCollector(lambda: read_groups(client, [STREAM, "absent"])))
    assert samples[("drainer_consumer_group_pending", STREAM, "billing")] == 4
    assert samples[("drainer_consumer_group_lag", STREAM, "billing")] == 6
    age = samples[("drainer_consumer_group_oldest_pending_age_seconds", STREAM, "billing")]
    assert 3600 <= age < 86400


def test_a_group_whose_unread_entries_were_trimmed_is_flagged(client: redis.Redis) -> None:
    """Entries trimmed before a group read them: lost_entries 1; a group that kept up: 0."""
    fill(client, 10)
    client.xgroup_create(STREAM, "slow", id="0")
    client.xgroup_create(STREAM, "fast", id="0")
    read(client, "slow", 3)
    read(client, "fast", 10)
    client.xtrim(STREAM, maxlen=5, approximate=False)  # what retention = "maxlen" does
    (groups,) = read_groups(client, [STREAM])
    by_name = {g.group: g for g in groups.groups}
    assert by_name["slow"].lost_entries is True and by_name["fast"].lost_entries is False
    assert [g.group for g in groups.groups] == ["slow", "fast"]  # the worst first


def test_exported_groups_are_capped_per_stream_worst_first(client: redis.Redis) -> None:
    """Past the limit, the laggards are exported and the rest counted as not exported."""
    fill(client, 50)
    for n in range(25):
        client.xgroup_create(STREAM, f"g{n:02}", id="$")
    client.xgroup_create(STREAM, "stopped", id="0")
    collector = ConsumerGroupCollector(lambda: read_groups(client, [STREAM], limit=20))
    samples = scrape(collector)
    lags = {g: v for (name, _, g), v in samples.items() if name == "drainer_consumer_group_lag"}
    assert len(lags) == 20 and lags["stopped"] == 50
    assert samples[("drainer_consumer_groups_not_exported", STREAM, "")] == 6


def test_redis_down_during_a_scrape_skips_the_groups_and_logs_once(
    own_redis: LocalRedis,
) -> None:
    """An unreachable Redis: the scrape still answers, without group series; one log line."""
    down = redis.Redis.from_url(own_redis.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    own_redis.stop()
    collector = ConsumerGroupCollector(lambda: read_groups(down, [STREAM]))
    try:
        with capture_logs() as logs:
            assert scrape(collector) == {}
            assert scrape(collector) == {}
    finally:
        down.close()
    assert [e["event"] for e in logs] == ["metrics.consumer_groups_unreadable"]


def test_default_retention_never_trims_unread_entries_below_the_cap(client: redis.Redis) -> None:
    """Default mode, under stream_maxlen: old acknowledged entries go, old unread ones stay."""
    settings = RedisSettings(stream_maxlen=10_000, retention_age=3600.0)
    assert settings.retention == "consumer_groups_capped" and settings.publish_maxlen == 0
    now_ms = int(time.time() * 1000)
    ids = fill(client, 1000, start_ms=now_ms - 86_400_000)  # a day old
    client.xgroup_create(STREAM, "slow", id="0")
    read(client, "slow", 400)
    worker = RetentionWorker(
        client, [STREAM], settings.retention, settings.retention_age, maxlen=10_000
    )
    worker.tick(0.0)
    left = [entry_id for entry_id, _ in client.xrange(STREAM)]
    assert left[-600:] == ids[400:], "an unread entry was trimmed"
    assert len(left) < 1000, "nothing acknowledged was trimmed"


def test_default_retention_counts_every_unread_entry_it_trims_past_the_cap(
    client: redis.Redis,
) -> None:
    """Past stream_maxlen with a group far behind: each unread entry trimmed is counted."""
    ids = fill(client, 5000)
    client.xgroup_create(STREAM, "slow", id="0")
    client.xgroup_create(STREAM, "fast", id="0")
    read(client, "slow", 300)
    read(client, "slow", 200, ack=False)  # 300..499 pending
    read(client, "fast", 5000)
    floor = consumer_group_floor(client, STREAM)
    assert floor == parse_id(ids[300])
    counted: dict[str, int] = {}
    settings = RedisSettings(stream_maxlen=1000)
    worker = RetentionWorker(
        client,
        [STREAM],
        settings.retention,
        settings.retention_age,
        maxlen=settings.stream_maxlen,
        on_trimmed_unread=lambda stream, n: counted.update({stream: counted.get(stream, 0) + n}),
    )
    worker.tick(0.0)
    left = {entry_id for entry_id, _ in client.xrange(STREAM)}
    unread_trimmed = [i for i in ids if i not in left and parse_id(i) >= parse_id(ids[300])]
    assert 1000 <= len(left) < 1200, "the hard cap was not applied"
    assert counted == {STREAM: len(unread_trimmed)} and len(unread_trimmed) > 3000
    assert min(left, key=parse_id) == ids[len(ids) - len(left)], "trimmed out of order"


def test_a_stream_without_groups_is_trimmed_to_the_cap_uncounted(client: redis.Redis) -> None:
    """No consumer group: the hard cap still bounds the stream; nothing is counted as unread."""
    fill(client, 3000, start_ms=int(time.time() * 1000) - 3_600_000)  # younger than the age
    counted: list[int] = []
    worker = RetentionWorker(
        client,
        [STREAM],
        "consumer_groups_capped",
        7 * 86400.0,
        maxlen=1000,
        on_trimmed_unread=lambda stream, n: counted.append(n),
    )
    worker.tick(0.0)
    assert 1000 <= client.xlen(STREAM) < 1200 and counted == []


def test_retention_modes_pick_where_the_publish_script_trims() -> None:
    """Only retention = "maxlen" trims inline in XADD; the default keeps stream_maxlen as cap."""
    assert RedisSettings().publish_maxlen == 0 and RedisSettings().stream_maxlen == 1_000_000
    assert RedisSettings(retention="maxlen").publish_maxlen == 1_000_000
    assert RedisSettings(retention="consumer_groups").stream_maxlen == 0


def test_groups_of_a_missing_stream_are_empty(client: redis.Redis) -> None:
    """A stream nobody has written yet has no groups (no error, nothing exported)."""
    assert read_stream_groups(client, "drainer:{absent}").groups == ()


def test_on_redis_6_lag_is_derived_only_where_certain() -> None:
    """Redis 6.2 replies (no lag, no entries-added): 0 or length when certain, else unknown."""
    stream = {"length": 50, "first-entry": ("100-0", {}), "last-generated-id": "149-0"}

    def group(last: str) -> dict[str, object]:
        return {"name": "g", "consumers": 1, "pending": 0, "last-delivered-id": last}

    caught_up, before_first, midway = (
        group_stats(group(last), stream) for last in ("149-0", "10-0", "120-0")
    )
    assert (caught_up.lag, before_first.lag, midway.lag) == (0, 50, None)
    assert {caught_up.lost_entries, before_first.lost_entries, midway.lost_entries} == {None}
