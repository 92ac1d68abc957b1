"""DocPlanner drain rate against the physical limit and a naive client, in the same run.

- Limit: with a round trip of R seconds and 100 notifications per pull, no client that
  waits for one response before the next pull can exceed 100 / R events per second.
- Naive baseline: ``GET /notifications`` (one notification per request) in a loop,
  spooling nothing — the simplest client one could write.
- Do-nothing client: keep-alive ``requests.Session`` set up as the daemon's (``trust_env``
  off: the environment is not re-read on every request), ``limit=100``, reads and discards
  each body until 404 — the ceiling any real client can reach against this sandbox.
- CPU floor: in this process, one thread, the work no implementation can skip per event —
  orjson parse of the same bodies, canonical JSON and sha256 of each item — so the daemon's
  CPU per event reads as a multiple of this machine's speed on the same day.
- The sandbox pre-encodes its notifications (``preencode=True``), so serving a pull
  costs it almost nothing and its own cost is not the ceiling.
- The daemon: the real ``drainer run`` in a subprocess, sandbox and Redis on loopback.
  The rate is taken from the first to the last stream entry id (Redis' own clock),
  so process start-up does not count; the CPU is the daemon's utime+stime from when it
  first found the queue empty to the last entry in Redis (parse, envelope, fsync, publish).
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from pathlib import Path

import orjson
import redis
import requests

from bench.common import Row, daemon_config, proc_stats, start_daemon
from bench.profile_publish import bodies
from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox

STREAM = "drainer:{docplanner}"


def bench_account(base_url: str) -> dict[str, object]:
    return {
        "name": "bench",
        "base_url": base_url,
        "client_id": "bench-id",
        "client_secret": "bench-secret",
        "idle_interval": "100ms",
        "requests_per_hour": 1_000_000,
    }


def drain(latency: float, count: int) -> tuple[float, float, float]:
    """Drain ``count`` notifications; return (events/s, CPU s per 1,000 events, peak RSS MiB)."""
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        client = DocPlannerClient(client_id="bench-id", client_secret="bench-secret")
        with (
            LocalRedis(directory / "redis") as server,
            DocPlannerSandbox(
                clients=[client], latency=latency, requests_per_hour=10**9, preencode=True
            ) as dp,
        ):
            config = daemon_config(directory, server.url, free_port(), bench_account(dp.base_url))
            process = start_daemon(config)
            reader = redis.Redis.from_url(server.url)
            try:
                deadline = time.monotonic() + 300
                while dp.count_status(404) == 0 and time.monotonic() < deadline:
                    time.sleep(0.05)  # started: the daemon has found the queue empty
                cpu_before, _ = proc_stats(process.pid)
                dp.enqueue("bench-id", count)
                while reader.xlen(STREAM) < count and time.monotonic() < deadline:
                    time.sleep(0.01)
                cpu_after, peak = proc_stats(process.pid)
                first = reader.xrange(STREAM, count=1)[0][0]
                last = reader.xrevrange(STREAM, count=1)[0][0]
                first_batch = len(reader.xrange(STREAM, min=first, max=first))
            finally:
                process.terminate()
                process.wait(timeout=30)
                reader.close()
    span_ms = int(last.split(b"-")[0]) - int(first.split(b"-")[0])
    rate = (count - first_batch) / max(span_ms / 1000, 1e-3)
    return rate, (cpu_after - cpu_before) / count * 1000, peak


def naive(
    latency: float, seconds: float = 5.0, path: str = "/notifications", count: int = 100000
) -> float:
    """Events/s of a client that pulls ``path`` in a loop and keeps nothing, until 404.

    ``/notifications`` is the naive one-per-request client; ``/notifications/multiple?
    limit=100`` is the do-nothing client: the empirical ceiling of this machine and sandbox
    (no parsing, no spool, no Redis).
    """
    client = DocPlannerClient(client_id="naive-id", client_secret="naive-secret")
    with DocPlannerSandbox(
        clients=[client], latency=latency, requests_per_hour=10**9, preencode=True
    ) as dp:
        dp.enqueue("naive-id", count)
        with requests.Session() as session:
            session.trust_env = False  # as daemon.sources.http.UpstreamClient
            token = session.post(
                f"{dp.base_url}/oauth/v2/token",
                auth=("naive-id", "naive-secret"),
                data={"grant_type": "client_credentials", "scope": "integration"},
                timeout=5,
            ).json()["access_token"]
            headers = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.docplanner+json",
            }
            got = 0
            started = time.perf_counter()
            while time.perf_counter() - started < seconds:
                response = session.get(
                    f"{dp.base_url}/api/v3/integration{path}", headers=headers, timeout=5
                )
                if response.status_code == 404:
                    break
                if response.status_code == 200:
                    got += response.content.count(b'"created_at"')  # read, then discard
            return got / (time.perf_counter() - started)


def cpu_floor(count: int = 20000) -> float:
    """CPU s per 1,000 events of parse + canonical JSON + sha256 alone (best of 3)."""
    pulled = bodies(count)  # the sandbox's notifications, 100 per body
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        for body in pulled:
            for item in orjson.loads(body)["notifications"]:
                hashlib.sha256(orjson.dumps(item, option=orjson.OPT_SORT_KEYS)).hexdigest()
        best = min(best, time.process_time() - started)
    return best / count * 1000


def run() -> list[Row]:
    rtt = 0.020
    limit = 100 / rtt
    rate, _, peak = drain(rtt, 20000)
    naive_rate = naive(rtt)
    bare_rate = naive(rtt, seconds=300, path="/notifications/multiple?limit=100", count=20000)
    fast_rate, cpu_per_1000, _ = drain(0.0, 20000)
    floor = cpu_floor()
    return [
        Row(
            "DocPlanner drain, 20 ms RTT",
            f"{rate:,.0f} events/s",
            f"limit 100/RTT = {limit:,.0f} events/s",
            rate / limit,
            "≥ 0.95",
        ),
        Row(
            "DocPlanner drain vs a do-nothing 100-per-pull client, 20 ms RTT",
            f"{rate:,.0f} events/s",
            f"do-nothing client {bare_rate:,.0f} events/s ({bare_rate / limit:.2f} of limit)",
            rate / bare_rate,
            "≥ 0.95",
        ),
        Row(
            "DocPlanner drain vs naive 1-per-request client, 20 ms RTT",
            f"{rate:,.0f} events/s",
            f"naive {naive_rate:,.1f} events/s",
            rate / naive_rate,
            "",
        ),
        Row(
            "DocPlanner daemon CPU per 1,000 events, 0 ms RTT (parse, fsync, publish)",
            f"{cpu_per_1000:.3f} CPU-s ({fast_rate:,.0f} events/s)",
            f"floor (parse + canonical JSON + sha256 only, one thread) {floor:.3f} CPU-s",
            cpu_per_1000 / floor,
            "≤ 0.05 CPU-s",
        ),
        Row("DocPlanner daemon peak RSS (20,000 events)", f"{peak:,.0f} MiB", "—", None, ""),
    ]
