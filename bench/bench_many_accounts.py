"""Many accounts in one daemon: 30 DocPlanner pull accounts and 10 MyInvois accounts.

One ``drainer run`` against one DocPlanner sandbox (20 ms round trip, pre-encoded bodies)
holding 30 clients and one MyInvois sandbox holding 10 taxpayers. Reported, from the same
run: every notification on its stream exactly once (per account), the aggregate DocPlanner
rate against the physical limit of 30 accounts x 100 per round trip, CPU per 1,000
events, the daemon's peak RSS (``VmHWM``) and its largest thread count while draining.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from bench.common import Row, proc_stats, start_daemon
from bench.common import threads as thread_count
from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox

DOCPLANNER_ACCOUNTS = 30
MYINVOIS_ACCOUNTS = 10
PER_DOCPLANNER = 2_000
PER_MYINVOIS = 300
RTT = 0.020
DP_STREAM = "drainer:{docplanner}"
MI_STREAM = "drainer:{myinvois}"


def _config(directory: Path, redis_url: str, dp_url: str, mi_url: str, start: datetime) -> Path:
    lines = [
        "[redis]",
        f"url = {json.dumps(redis_url)}",
        "[spool]",
        f"dir = {json.dumps(str(directory / 'spool'))}",
        "[server]",
        f'listen = "127.0.0.1:{free_port()}"',
        "[log]",
        'level = "warning"',
    ]
    for n in range(DOCPLANNER_ACCOUNTS):
        lines += [
            "[[docplanner]]",
            f'name = "dp{n:02d}"',
            f"base_url = {json.dumps(dp_url)}",
            f'client_id = "dp{n:02d}-id"',
            f'client_secret = "dp{n:02d}-secret-value"',
            'idle_interval = "200ms"',
            "requests_per_hour = 1000000",
        ]
    for n in range(MYINVOIS_ACCOUNTS):
        lines += [
            "[[myinvois]]",
            f'name = "mi{n:02d}"',
            f"base_url = {json.dumps(mi_url)}",
            f'client_id = "mi{n:02d}-id"',
            f'client_secret = "mi{n:02d}-secret-value"',
            'interval = "1s"',
            f'start_at = "{start.strftime("%Y-%m-%dT%H:%M:%SZ")}"',
            "requests_per_minute = 600",
        ]
    path = directory / "drainer.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _per_account(reader: redis.Redis, stream: str) -> tuple[Counter[str], int]:
    """Distinct event ids per account, and the number of entries (duplicates show here)."""
    ids: dict[str, set[bytes]] = {}
    total = 0
    for _, fields in reader.xrange(stream):
        ids.setdefault(fields[b"account"].decode(), set()).add(fields[b"event_id"])
        total += 1
    return Counter({account: len(found) for account, found in ids.items()}), total


def run() -> list[Row]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=1)
    dp_clients = [
        DocPlannerClient(f"dp{n:02d}-id", f"dp{n:02d}-secret-value")
        for n in range(DOCPLANNER_ACCOUNTS)
    ]
    mi_clients = [
        MyInvoisClient(f"mi{n:02d}-id", f"mi{n:02d}-secret-value") for n in range(MYINVOIS_ACCOUNTS)
    ]
    dp_total = DOCPLANNER_ACCOUNTS * PER_DOCPLANNER
    mi_total = MYINVOIS_ACCOUNTS * PER_MYINVOIS
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalRedis(Path(tmp) / "redis") as server,
        DocPlannerSandbox(
            clients=dp_clients, latency=RTT, requests_per_hour=10**9, preencode=True
        ) as dp,
        MyInvoisSandbox(clients=mi_clients, requests_per_minute=10**6) as mi,
    ):
        for client in mi_clients:
            mi.add_notifications(client.client_id, PER_MYINVOIS, start=start, end=now)
        config = _config(Path(tmp), server.url, dp.base_url, mi.base_url, start)
        process = start_daemon(config)
        reader = redis.Redis.from_url(server.url)
        threads = 0
        try:
            deadline = time.monotonic() + 600
            while dp.count_status(404) < DOCPLANNER_ACCOUNTS and time.monotonic() < deadline:
                time.sleep(0.05)  # every puller has found its queue empty once
            cpu_before, _ = proc_stats(process.pid)
            for client in dp_clients:
                dp.enqueue(client.client_id, PER_DOCPLANNER)
            while time.monotonic() < deadline and (
                reader.xlen(DP_STREAM) < dp_total or reader.xlen(MI_STREAM) < mi_total
            ):
                threads = max(threads, thread_count(process.pid))
                time.sleep(0.05)
            cpu_after, peak = proc_stats(process.pid)
            first = reader.xrange(DP_STREAM, count=1)[0][0]
            last = reader.xrevrange(DP_STREAM, count=1)[0][0]
            dp_ids, dp_entries = _per_account(reader, DP_STREAM)
            mi_ids, mi_entries = _per_account(reader, MI_STREAM)
        finally:
            process.terminate()
            process.wait(timeout=30)
            reader.close()
    span = max((int(last.split(b"-")[0]) - int(first.split(b"-")[0])) / 1000, 1e-3)
    rate = dp_total / span
    limit = DOCPLANNER_ACCOUNTS * 100 / RTT
    exact = (
        all(dp_ids[f"dp{n:02d}"] == PER_DOCPLANNER for n in range(DOCPLANNER_ACCOUNTS))
        and all(mi_ids[f"mi{n:02d}"] == PER_MYINVOIS for n in range(MYINVOIS_ACCOUNTS))
        and dp_entries == dp_total
        and mi_entries == mi_total
    )
    once = "all exactly once" if exact else f"NOT exactly once: {dp_entries}+{mi_entries}"
    cpu = (cpu_after - cpu_before) / (dp_total + mi_total) * 1000
    core = 1000 / cpu  # one process, one GIL: at most one core of Python work
    return [
        Row(
            "30 DocPlanner + 10 MyInvois accounts, 20 ms RTT: aggregate drain",
            f"{rate:,.0f} events/s; {dp_total:,} + {mi_total:,} events, {once}",
            f"one core at the measured CPU per event = {core:,.0f} events/s "
            f"(network limit 30 x 100/RTT = {limit:,.0f})",
            rate / core,
            "every event once",
        ),
        Row(
            "40 accounts: daemon CPU per 1,000 events",
            f"{cpu:.3f} CPU-s",
            "—",
            None,
            "",
        ),
        Row(
            "40 accounts: peak RSS and threads",
            f"{peak:,.0f} MiB; at most {threads} threads",
            "MiB goal 150",
            peak / 150,
            "RSS ≤ 150 MiB, threads bounded",
        ),
    ]
