"""Durable publish: drain throughput and publish latency with a replica WAIT, next to without.

A master and one replica on loopback (the replica online before anything is measured:
WAIT during the initial sync times out); the same spool (20,000 notifications of ~1 KiB, in
records of 100 as DocPlanner pulls them) is drained by a Publisher twice: with
``durability = "replicas"`` (``WAIT 1``, one per publish call of up to 1,000 events) and
with ``durability = "none"``; then 500 single-event publish calls each way (push-sized).
The reference is the run without the wait.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bench.common import Row
from daemon.commands.demo.localredis import LocalRedis
from daemon.envelope.entries import StreamEntry
from daemon.metrics import Metrics
from daemon.publisher import Publisher
from daemon.sink import RedisSink, connect
from daemon.sink.durability import Policy
from daemon.spool import SpoolBudget, SpoolLog

EVENTS = 20_000
PER_RECORD = 100
PAYLOAD = "x" * 1024
ROUNDS = 3  # each way; the best round of each is reported


def _drain(directory: Path, url: str, policy: Policy, stream: str) -> tuple[float, list[float]]:
    """(events per second, seconds per publish call) for one full drain."""
    spool = SpoolLog(directory, SpoolBudget(1 << 32))
    for start in range(0, EVENTS, PER_RECORD):
        spool.append(
            [
                StreamEntry(stream, f"{stream}-{n}", {"event_id": f"{n}", "payload": PAYLOAD})
                for n in range(start, start + PER_RECORD)
            ]
        )
    client = connect(url)
    sink = RedisSink(client, 86400.0, 0, durability=policy)
    sink.detect()
    publisher = Publisher(
        "docplanner", "bench", spool, sink, Metrics(CollectorRegistry()), "bench:{dl}"
    )
    calls: list[float] = []
    started = time.perf_counter()
    while spool.pending_records:
        before = time.perf_counter()
        publisher.tick(0.0)
        calls.append(time.perf_counter() - before)
    elapsed = time.perf_counter() - started
    client.close()
    return EVENTS / elapsed, calls


def _single(url: str, policy: Policy, stream: str, calls: int = 500) -> float:
    """Median seconds of a publish call of one event (a push-sized batch)."""
    client = connect(url)
    sink = RedisSink(client, 86400.0, 0, durability=policy)
    sink.detect()
    took = []
    for n in range(calls):
        entry = StreamEntry(stream, f"{stream}-{n}", {"event_id": f"{n}", "payload": PAYLOAD})
        before = time.perf_counter()
        sink.publish([entry])
        took.append(time.perf_counter() - before)
    client.close()
    return statistics.median(took)


def run() -> list[Row]:
    with tempfile.TemporaryDirectory() as tmp, capture_logs():
        base = Path(tmp)
        master = LocalRedis(base / "master").start()
        replica = LocalRedis(base / "replica", extra=("--replicaof", "127.0.0.1", str(master.port)))
        try:
            replica.start()
            probe = connect(master.url)
            while probe.info("replication").get("slave0", {}).get("state") != "online":
                time.sleep(0.05)
            probe.close()
            wait, none = Policy("replicas", 1, 1.0), Policy("none")
            drains: dict[str, list[tuple[float, list[float]]]] = {"w": [], "n": []}
            singles: dict[str, list[float]] = {"w": [], "n": []}
            for round_ in range(ROUNDS):  # alternate the order: a shared machine is noisy
                for key in "wn" if round_ % 2 == 0 else "nw":
                    policy = wait if key == "w" else none
                    stream = f"b{round_}:{{{key}}}"
                    drains[key].append(_drain(base / f"s{round_}{key}", master.url, policy, stream))
                    singles[key].append(_single(master.url, policy, f"{stream}:1"))
            waited = max(drains["w"], key=lambda d: d[0])
            plain = max(drains["n"], key=lambda d: d[0])
            single_w, single_n = min(singles["w"]), min(singles["n"])
        finally:
            replica.stop()
            master.stop()
    (rate_w, calls_w), (rate_n, calls_n) = waited, plain
    p50_w, p50_n = statistics.median(calls_w) * 1000, statistics.median(calls_n) * 1000
    return [
        Row(
            "durable publish: drain throughput, WAIT 1 (master + replica, loopback)",
            f"{rate_w:,.0f} events/s",
            f"{rate_n:,.0f} events/s without WAIT",
            rate_w / rate_n,
            ">= 0.8 of no-wait",
        ),
        Row(
            "durable publish: one publish call (1,000 events), median",
            f"{p50_w:.1f} ms with WAIT 1",
            f"{p50_n:.1f} ms without WAIT",
            p50_w / p50_n,
            "",
        ),
        Row(
            "durable publish: one publish call (1 event, a push), median",
            f"{single_w * 1000:.2f} ms with WAIT 1",
            f"{single_n * 1000:.2f} ms without WAIT",
            single_w / single_n,
            "",
        ),
    ]
