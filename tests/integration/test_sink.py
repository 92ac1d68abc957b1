"""The Redis sink against a real redis-server: atomic, de-duplicated publishing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis

from daemon.envelope.entries import StreamEntry
from daemon.errors import RedisCommandError
from daemon.sink import RedisSink, WatermarkUpdate, related_key
from tests.helpers import wait_for


def entry(stream: str, event_id: str) -> StreamEntry:
    return StreamEntry(stream, event_id, {"event_id": event_id, "schema": "1"})


def test_publish_skips_event_ids_already_seen(redis_client: redis.Redis) -> None:
    """The same event_id published twice appears once on the stream."""
    sink = RedisSink(redis_client, dedupe_window=60, stream_maxlen=0)
    first = sink.publish([entry("s:{a}", "1"), entry("s:{a}", "2")])
    second = sink.publish([entry("s:{a}", "2"), entry("s:{a}", "3")])
    assert (first.published, first.duplicates) == (2, 0)
    assert (second.published, second.duplicates) == (1, 1)
    ids = [fields["event_id"] for _, fields in redis_client.xrange("s:{a}")]
    assert ids == ["1", "2", "3"]


def test_publish_keeps_order_across_streams(redis_client: redis.Redis) -> None:
    """Entries for several streams keep their relative order within each stream."""
    sink = RedisSink(redis_client, dedupe_window=60, stream_maxlen=0)
    batch = [entry("x", "1"), entry("y", "a"), entry("x", "2"), entry("y", "b")]
    result = sink.publish(batch)
    assert result.published_by_stream == {"x": 2, "y": 2}
    assert [f["event_id"] for _, f in redis_client.xrange("x")] == ["1", "2"]


def test_entries_with_different_fields_in_one_run_keep_their_own_fields(
    redis_client: redis.Redis,
) -> None:
    """Field names are sent once per change within a call: each entry keeps exactly its own."""
    sink = RedisSink(redis_client, dedupe_window=60, stream_maxlen=0)
    shapes = [
        {"event_id": "1", "schema": "1"},
        {"event_id": "2", "schema": "1"},  # same names: reused
        {"event_id": "3", "reason": "bad", "raw": "x"},  # new names
        {"event_id": "4", "reason": "worse", "raw": "y"},
        {"event_id": "5", "schema": "1"},  # back to the first names
    ]
    sink.publish([StreamEntry("m", f["event_id"], f) for f in shapes])
    assert [fields for _, fields in redis_client.xrange("m")] == shapes


def test_the_watermark_stays_when_part_of_its_window_is_refused(
    redis_client: redis.Redis,
) -> None:
    """A refused dead-letter XADD in the window's publish: no watermark, the error surfaces."""
    sink = RedisSink(redis_client, dedupe_window=60, stream_maxlen=0)
    redis_client.set("drainer:{deadletter}", "not a stream")  # a foreign key: WRONGTYPE
    good = StreamEntry("drainer:{myinvois}", "myinvois:a:1", {"event_id": "myinvois:a:1"})
    dead = StreamEntry("drainer:{deadletter}", "deadletter:x", {"reason": "r", "raw": "b"})
    moment = datetime(2030, 1, 1, tzinfo=UTC)
    with pytest.raises(RedisCommandError):
        sink.publish([good, dead], WatermarkUpdate("drainer:{myinvois}", "a", moment))
    assert redis_client.get("drainer:{myinvois}:watermark:a") is None
    redis_client.delete("drainer:{deadletter}")  # fixed: the retry publishes, then moves it
    sink.publish([good, dead], WatermarkUpdate("drainer:{myinvois}", "a", moment))
    assert float(redis_client.get("drainer:{myinvois}:watermark:a") or 0) == moment.timestamp()


def test_dedupe_window_expires(redis_client: redis.Redis) -> None:
    """After the window the same id is published again (the window is honoured)."""
    sink = RedisSink(redis_client, dedupe_window=0.05, stream_maxlen=0)
    sink.publish([entry("w", "1")])
    redis_client.pexpire(related_key("w", "seen:1"), 1)
    wait_for(lambda: not redis_client.exists(related_key("w", "seen:1")), 5, "the key expired")
    assert sink.publish([entry("w", "1")]).published == 1


def test_maxlen_trims_approximately(redis_client: redis.Redis) -> None:
    """stream_maxlen bounds the stream length (approximately)."""
    sink = RedisSink(redis_client, dedupe_window=60, stream_maxlen=100)
    for chunk in range(20):
        sink.publish([entry("t", f"{chunk}-{i}") for i in range(100)])
    assert 100 <= redis_client.xlen("t") < 400


def test_related_key_shares_the_hash_slot() -> None:
    """Seen keys carry the stream's hash tag, or wrap an untagged stream name in one."""
    assert related_key("drainer:{docplanner}", "seen:x") == "drainer:{docplanner}:seen:x"
    assert related_key("events", "seen:x") == "{events}:seen:x"


def test_watermark_only_moves_forward(redis_client: redis.Redis) -> None:
    """advance_watermark never moves the stored watermark back."""
    from datetime import UTC, datetime

    sink = RedisSink(redis_client, dedupe_window=60, stream_maxlen=0)
    assert sink.get_watermark("m:{m}", "acme") is None
    later = datetime(2026, 11, 2, tzinfo=UTC)
    sink.advance_watermark("m:{m}", "acme", later)
    sink.advance_watermark("m:{m}", "acme", datetime(2026, 11, 1, tzinfo=UTC))
    assert sink.get_watermark("m:{m}", "acme") == later


def test_each_stream_keeps_seen_keys_for_its_own_window(redis_client: redis.Redis) -> None:
    """The MyInvois stream's seen-keys live 35 days; the other streams' the default window."""
    myinvois, docplanner = "win:{myinvois}", "win:{docplanner}"
    sink = RedisSink(redis_client, 86400, 0, {myinvois: 35 * 86400})
    sink.publish([entry(myinvois, "m1"), entry(docplanner, "d1")])
    mine = redis_client.pttl(related_key(myinvois, "seen:m1")) / 1000
    other = redis_client.pttl(related_key(docplanner, "seen:d1")) / 1000
    assert 35 * 86400 - 60 < mine <= 35 * 86400
    assert 86400 - 60 < other <= 86400
    assert sink.dedupe_window(myinvois) == 35 * 86400 and sink.dedupe_window("x") == 86400
