"""One intermediary, many taxpayers: N taxpayers under one MyInvois Client ID, one daemon.

One ``drainer run`` with N ``[[myinvois]]`` accounts (default 1,000; ``BENCH_TAXPAYERS``)
sharing one ``client_id``, against a MyInvois sandbox that enforces the same per-Client-ID
budget B (scaled up: ``BENCH_BUDGET`` requests and logins a minute). Reported, from the
same run: every notification on the stream once under its account, the 429s, one login
per taxpayer, the daemon's threads and peak RSS (``VmHWM``), its CPU while polling with
nothing new upstream, and the worst time between two polls of one taxpayer against the
N/B floor (every taxpayer once per round of the shared budget). A second daemon then runs
the same taxpayers at the default 12 requests a minute with nothing upstream, for its CPU
at rest (logins scaled up so the start-up is short).
"""

from __future__ import annotations

import itertools
import json
import os
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from bench.common import Row, proc_stats, start_daemon
from bench.common import threads as thread_count
from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import MyInvoisClient, MyInvoisSandbox

TAXPAYERS = int(os.environ.get("BENCH_TAXPAYERS", "1000"))
BUDGET = int(os.environ.get("BENCH_BUDGET", "6000"))  # requests (and logins) a minute
PER_TAXPAYER = 5
STEADY = 60.0  # seconds of polling with nothing new, measured after the catch-up
IDLE_RATE, IDLE_WARMUP, IDLE = 12, 20.0, 60.0  # the default budget, nothing upstream
CLIENT, SECRET = "bench-agent", "bench-agent-secret-value"
STREAM = "drainer:{myinvois}"


def tin(n: int) -> str:
    return f"C{3000000000 + n}"


def _config(
    directory: Path,
    redis_url: str,
    sandbox: MyInvoisSandbox,
    start: datetime,
    requests_per_minute: int = BUDGET,
) -> Path:
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
    for n in range(TAXPAYERS):
        lines += [
            "[[myinvois]]",
            f'name = "tp{n:04d}"',
            f"base_url = {json.dumps(sandbox.base_url)}",
            f"identity_url = {json.dumps(sandbox.identity_url)}",
            f'client_id = "{CLIENT}"',
            f'client_secret = "{SECRET}"',
            f'on_behalf_of = "{tin(n)}"',
            'interval = "1s"',
            f'start_at = "{start.strftime("%Y-%m-%dT%H:%M:%SZ")}"',
            f"requests_per_minute = {requests_per_minute}",
            f"logins_per_minute = {BUDGET}",
        ]
    path = directory / "drainer.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def idle_cpu() -> tuple[float, int]:
    """(share of one core, threads) of the daemon at the default 12 requests a minute for
    the Client ID with nothing upstream, once every taxpayer has logged in."""
    clients = [MyInvoisClient(CLIENT, SECRET, on_behalf_of=tin(n)) for n in range(TAXPAYERS)]
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalRedis(Path(tmp) / "redis") as server,
        MyInvoisSandbox(
            clients, requests_per_minute=IDLE_RATE, logins_per_minute=BUDGET, identity_port=0
        ) as mi,
    ):
        config = _config(Path(tmp), server.url, mi, start, requests_per_minute=IDLE_RATE)
        process = start_daemon(config)
        try:
            deadline = time.monotonic() + 300
            while (
                time.monotonic() < deadline
                and sum(mi.logins(CLIENT, tin(n)) for n in range(TAXPAYERS)) < TAXPAYERS
            ):
                time.sleep(0.5)
            time.sleep(IDLE_WARMUP)
            before, _ = proc_stats(process.pid)
            time.sleep(IDLE)
            after, _ = proc_stats(process.pid)
            threads = thread_count(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=60)
    return (after - before) / IDLE, threads


def run() -> list[Row]:
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(hours=2)
    clients = [MyInvoisClient(CLIENT, SECRET, on_behalf_of=tin(n)) for n in range(TAXPAYERS)]
    total = TAXPAYERS * PER_TAXPAYER
    floor = TAXPAYERS * 60 / BUDGET  # N/B seconds: one poll of every taxpayer
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalRedis(Path(tmp) / "redis") as server,
        MyInvoisSandbox(
            clients, requests_per_minute=BUDGET, logins_per_minute=BUDGET, identity_port=0
        ) as mi,
    ):
        for n in range(TAXPAYERS):
            mi.add_notifications(CLIENT, PER_TAXPAYER, start=start, end=now, tin=tin(n))
        process = start_daemon(_config(Path(tmp), server.url, mi, start))
        reader = redis.Redis.from_url(server.url)
        threads = 0
        try:
            began = time.monotonic()
            deadline = began + 900
            while reader.xlen(STREAM) < total and time.monotonic() < deadline:
                threads = max(threads, thread_count(process.pid))
                time.sleep(0.2)
            caught_up = time.monotonic() - began
            steady_from = time.monotonic()
            cpu_before, _ = proc_stats(process.pid)
            while time.monotonic() < steady_from + STEADY:
                threads = max(threads, thread_count(process.pid))
                time.sleep(0.5)
            cpu_after, peak = proc_stats(process.pid)
            steady_to = time.monotonic()
            entries = reader.xrange(STREAM)
        finally:
            process.terminate()
            process.wait(timeout=60)
            reader.close()
        gaps: list[float] = []
        for n in range(TAXPAYERS):
            polls = [t for t in mi.polled(CLIENT, tin(n)) if steady_from <= t <= steady_to]
            gaps += [b - a for a, b in itertools.pairwise(polls)]
        gaps.sort()
        worst = gaps[-1] if gaps else float("inf")
        p99 = gaps[int(len(gaps) * 0.99)] if gaps else float("inf")
        logins = [mi.logins(CLIENT, tin(n)) for n in range(TAXPAYERS)]
        limited = mi.count_status(429)
        steady_pages = sum(
            1 for n in range(TAXPAYERS) for t in mi.polled(CLIENT, tin(n)) if t >= steady_from
        )
    per_account = Counter(fields[b"account"].decode() for _, fields in entries)
    ids = Counter(fields[b"event_id"] for _, fields in entries)
    exact = (
        len(entries) == total
        and max(ids.values()) == 1
        and all(per_account[f"tp{n:04d}"] == PER_TAXPAYER for n in range(TAXPAYERS))
    )
    once = "all exactly once" if exact else f"NOT exactly once: {len(entries)} of {total}"
    cpu_share = (cpu_after - cpu_before) / (steady_to - steady_from)
    rate = steady_pages / (steady_to - steady_from) * 60
    label = f"{TAXPAYERS:,} taxpayers, one Client ID, B = {BUDGET:,}/min"
    idle, idle_threads = idle_cpu()
    return [
        Row(
            f"{label}: catch-up",
            f"{total:,} notifications, {once}, in {caught_up:.0f} s; {limited} x 429;"
            f" logins per taxpayer {min(logins)}..{max(logins)}",
            f"one round of the budget N/B = {floor:.1f} s",
            None,
            "every notification once, 0 x 429, one login each",
        ),
        Row(
            f"{label}: worst time between two polls of one taxpayer",
            f"{worst:.1f} s (p99 {p99:.1f} s; interval 1 s; {rate:,.0f} pages/min polled)",
            f"floor max(interval, N/B) = {max(1.0, floor):.1f} s",
            worst / max(1.0, floor),
            "≤ 2",
        ),
        Row(
            f"{label}: threads, peak RSS, CPU polling with nothing new",
            f"at most {threads} threads; {peak:,.0f} MiB; {cpu_share:.0%} of one core",
            "goal 64 threads",
            threads / 64,
            "≤ 64 threads; RSS ≤ 250 MiB (150 taxpayers), ≤ 400 MiB (1,000)",
        ),
        Row(
            f"{TAXPAYERS:,} taxpayers at the default 12/min, nothing upstream: daemon CPU",
            f"{idle:.0%} of one core ({idle_threads} threads)",
            "goal 5 % of one core",
            idle / 0.05,
            "≤ 5 % (no per-account wake-ups)",
        ),
    ]
