"""Profile the daemon's per-event path in one thread: spool (fsync) -> PullExpander -> Redis.

`python -m bench.profile_publish [COUNT]` prints the top cProfile entries (own time).
The sandbox's pre-encoded pull bodies are appended to a real spool, then one Publisher
expands and publishes them to a local Redis, as ``drainer run`` does in its threads.
"""

from __future__ import annotations

import cProfile
import io
import logging
import pstats
import sys
import tempfile
import time
from pathlib import Path

import structlog
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.batch import PullExpander
from daemon.metrics import Metrics
from daemon.metrics.docplanner import DocPlannerIntake
from daemon.publisher import Publisher
from daemon.sandbox.events import NotificationFactory
from daemon.sandbox.server import json_body
from daemon.sink import RedisSink, connect
from daemon.sink.connect import RedisClient
from daemon.spool import RawBatch, SpoolBudget, SpoolLog

STREAM, DEADLETTER = "drainer:{docplanner}", "drainer:{deadletter}"


def bodies(count: int) -> list[bytes]:
    items = NotificationFactory(1).batch(count, time.time())
    chunks = [items[i : i + 100] for i in range(0, count, 100)]
    return [json_body({"notifications": c, "remaining": 0}) for c in chunks]


def main(count: int) -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with tempfile.TemporaryDirectory() as tmp, LocalRedis(Path(tmp) / "redis") as server:
        client: RedisClient = connect(server.url)  # as the daemon connects (HiredisPacker)
        metrics = Metrics(CollectorRegistry(), [("docplanner", "bench")])
        spool = SpoolLog(Path(tmp) / "spool", SpoolBudget(1 << 30))
        expand = PullExpander("bench", STREAM, DEADLETTER, DocPlannerIntake(metrics, "bench"))
        sink = RedisSink(client, 86400.0, 0)
        publisher = Publisher(
            "docplanner", "bench", spool, sink, metrics, DEADLETTER, expand=expand
        )
        raw = bodies(count)
        profile = cProfile.Profile()
        started = time.process_time()
        profile.enable()
        for body in raw:
            spool.append_raw(RawBatch(time.time(), "pull", body, 100))
        while spool.pending_records:
            publisher.tick(time.monotonic())
        profile.disable()
        cpu = time.process_time() - started
        assert client.xlen(STREAM) == count, "every event published once"
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(15)
        print(out.getvalue())
        print(f"{count} events: {cpu / count * 1000:.3f} CPU-s per 1,000 (under cProfile)")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20000)
