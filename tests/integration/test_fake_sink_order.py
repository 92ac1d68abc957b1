"""The unit tier's FakeSink follows RedisSink's call order: one publisher scenario, both sinks."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
from prometheus_client import CollectorRegistry

from daemon.envelope.entries import StreamEntry
from daemon.metrics import Metrics
from daemon.publisher import Publisher
from daemon.sink import RedisSink
from daemon.spool import SpoolBudget, SpoolLog
from tests.unit.fakes import FakeSink

STREAM = "s:{myinvois}"
DEAD = "s:{dl}"
Call = tuple[str, str, object]


def entries(*ids: str, stream: str = STREAM) -> list[StreamEntry]:
    return [StreamEntry(stream, i, {"event_id": i}) for i in ids]


def scenario(tmp_path: Path, sink: RedisSink | FakeSink) -> None:
    """Two ticks of one MyInvois publisher (interleaved streams, a replay, watermarks)."""
    metrics = Metrics(CollectorRegistry(), [("myinvois", "acme")])
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    publisher = Publisher("myinvois", "acme", spool, sink, metrics, DEAD, watermark_stream=STREAM)  # type: ignore[arg-type]
    spool.append([*entries("a", "b"), *entries("x", stream=DEAD), *entries("c")])
    spool.append(entries("d"), watermark=1_790_000_000.0)
    publisher.tick(0.0)
    spool.append(entries("d", "e"), watermark=1_790_000_060.0)
    publisher.tick(1.0)
    sink.advance_watermark(STREAM, "acme", datetime(2026, 12, 1, tzinfo=UTC))


@pytest.fixture
def command_log(redis_client: redis.Redis) -> Iterator[redis.Redis]:
    """Every command the server runs goes to its slow log during the test (then restored)."""
    before = redis_client.config_get("slowlog-*")
    redis_client.config_set("slowlog-max-len", 10000)
    redis_client.config_set("slowlog-log-slower-than", 0)
    redis_client.slowlog_reset()
    yield redis_client
    for name, value in before.items():
        redis_client.config_set(name, value)


def script_calls(client: redis.Redis) -> list[Call]:
    """The publish and watermark script calls the server ran, oldest first, as FakeSink.calls."""
    calls: list[Call] = []
    for item in sorted(client.slowlog_get(10000), key=lambda item: item["id"]):
        command = item["command"]
        parts = (command.decode() if isinstance(command, bytes) else command).split(" ")
        if parts[0].upper() not in ("EVALSHA", "EVAL"):
            continue
        keys = parts[3 : 3 + int(parts[2])]
        if ":watermark:" in keys[0]:
            stream, account = keys[0].rsplit(":watermark:", 1)
            calls.append(("watermark", stream, account))
        else:
            ids = tuple(key.split(":seen:", 1)[1] for key in keys[2:])
            calls.append(("entries", keys[0], ids))
    return calls


def test_the_fake_sink_calls_redis_steps_in_the_real_sinks_order(
    tmp_path: Path, command_log: redis.Redis
) -> None:
    """The same scenario: FakeSink.calls equals the script calls RedisSink sent to Redis."""
    fake = FakeSink()
    scenario(tmp_path / "fake", fake)
    scenario(tmp_path / "real", RedisSink(command_log, dedupe_window=60, stream_maxlen=0))
    real = script_calls(command_log)
    assert real == fake.calls
    assert [call[0] for call in real].count("watermark") == 3  # two windows, one direct call
    assert real[:4] == [
        ("entries", STREAM, ("a", "b")),
        ("entries", DEAD, ("x",)),
        ("entries", STREAM, ("c", "d")),
        ("watermark", STREAM, "acme"),
    ]
