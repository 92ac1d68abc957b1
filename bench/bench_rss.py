"""Daemon memory over volume: peak RSS after 20,000 events vs after 1,000,000 events.

The real ``drainer run`` drains a DocPlanner sandbox (0 ms latency) into a private Redis
whose stream is trimmed (``stream_maxlen = 100000``) and whose de-duplication keys expire
after 5 minutes, so Redis memory stays bounded and only the daemon's own memory is in
question. The sandbox queue is topped up as it drains (never more than ~30,000 queued).
``VmRSS`` of the daemon is sampled from ``/proc/<pid>/status`` every 0.5 s together with
``drainer_events_published_total``; the goal is no growth with volume:
``RSS(1M) / RSS(20k) <= 1.5``. Takes a few minutes.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.bench_docplanner import bench_account
from bench.common import Row, daemon_config, start_daemon
from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox

TOTAL = 1_000_000
EARLY = 20_000
TOP_UP = 10_000
QUEUE_LOW = 20_000
SAMPLE_EVERY = 0.5
TIMEOUT = 1800.0


def vm_rss_mib(pid: int) -> float:
    """The resident set of a live process now, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def published(port: int) -> int:
    """``drainer_events_published_total`` of the daemon (0 while it is not answering)."""
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except requests.RequestException:
        return 0
    total = 0.0
    for line in text.splitlines():
        if line.startswith("drainer_events_published_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


def _feed(sandbox: DocPlannerSandbox, total: int, stop: threading.Event) -> None:
    """Keep the sandbox queue topped up until ``total`` notifications were enqueued."""
    enqueued = 0
    while enqueued < total and not stop.is_set():
        if sandbox.queue_length("bench-id") < QUEUE_LOW:
            count = min(TOP_UP, total - enqueued)
            sandbox.enqueue("bench-id", count)
            enqueued += count
            # The sandbox remembers everything it handed out (for tests); drop that here.
            with sandbox._lock:
                sandbox._account("bench-id").handed_out.clear()
        else:
            stop.wait(0.05)


def measure(total: int = TOTAL) -> tuple[float, float, float, float, float]:
    """Drain ``total`` events; return (RSS at 20k, RSS at end, VmHWM, events/s, seconds)."""
    samples: list[tuple[int, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        client = DocPlannerClient(client_id="bench-id", client_secret="bench-secret")
        port = free_port()
        with (
            LocalRedis(directory / "redis") as server,
            DocPlannerSandbox(clients=[client], requests_per_hour=10**9) as sandbox,
        ):
            stop = threading.Event()
            feeder = threading.Thread(target=_feed, args=(sandbox, total, stop), daemon=True)
            feeder.start()
            account = {**bench_account(sandbox.base_url), "requests_per_hour": 100_000_000}
            redis_extra = {"stream_maxlen": 100_000, "dedupe_window": "5m"}
            config = daemon_config(directory, server.url, port, account, redis_extra)
            process = start_daemon(config)
            try:
                started = time.monotonic()
                first: tuple[float, int] | None = None
                count = 0
                while count < total and time.monotonic() - started < TIMEOUT:
                    time.sleep(SAMPLE_EVERY)
                    count = published(port)
                    samples.append((count, vm_rss_mib(process.pid)))
                    if first is None and count > 0:
                        first = (time.monotonic(), count)
                finished = time.monotonic()
                hwm = 0.0
                for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) / 1024
            finally:
                stop.set()
                process.terminate()
                process.wait(timeout=30)
                feeder.join(timeout=10)
    if count < total:
        raise RuntimeError(f"only {count:,} of {total:,} events published in {TIMEOUT:.0f} s")
    early = max(rss for events, rss in samples if events <= EARLY) if samples else 0.0
    late = max(rss for _, rss in samples)
    assert first is not None
    rate = (count - first[1]) / max(finished - first[0], 1e-3)
    return early, late, hwm, rate, finished - started


def run() -> list[Row]:
    early, late, hwm, rate, seconds = measure()
    return [
        Row(
            "Daemon peak RSS over 1,000,000 DocPlanner events (0 ms RTT)",
            f"{late:,.0f} MiB at 1M (VmHWM {hwm:,.0f} MiB)",
            f"{early:,.0f} MiB at 20k events",
            late / early if early else None,
            "≤ 1.5",
        ),
        Row(
            "DocPlanner drain rate over 1,000,000 events (0 ms RTT, stream trimmed to 100k)",
            f"{rate:,.0f} events/s ({seconds:,.0f} s)",
            "—",
            None,
            "",
        ),
    ]


if __name__ == "__main__":
    from bench.common import table

    print(table(run()))
