"""MyInvois backfill: the request rate reached as a fraction of the configured budget.

A backfill of a long, busy range against the MyInvois sandbox whose own limit equals our
budget (120 requests/minute), for 30 s: the goal is >= 95 % of the budget used and not a
single 429. The reference is the budget itself over the same measured time.
"""

from __future__ import annotations

import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from bench.common import Row
from daemon.commands.backfill import pipeline, walk
from daemon.commands.demo.localredis import LocalRedis
from daemon.metrics import Metrics
from daemon.sandbox import MyInvoisClient, MyInvoisSandbox
from daemon.settings import MyInvoisAccount
from daemon.sink import RedisSink, connect
from daemon.sources.myinvois.poll import build_api
from daemon.sources.myinvois.window import RangeCursor

RATE = 120  # requests per minute, ours and the sandbox's
DURATION = 30.0
NOTIFICATIONS = 12_000  # more pages than 30 s of budget can read


def run() -> list[Row]:
    client = MyInvoisClient(client_id="bench-id", client_secret="bench-secret")
    with (
        tempfile.TemporaryDirectory() as tmp,
        LocalRedis(Path(tmp) / "redis") as server,
        MyInvoisSandbox(clients=[client], requests_per_minute=RATE) as sandbox,
        capture_logs(),
    ):
        now = datetime.fromtimestamp(int(time.time()), UTC)
        since, until = now - timedelta(days=10), now - timedelta(days=1)
        sandbox.add_notifications("bench-id", NOTIFICATIONS, start=since, end=until)
        account = MyInvoisAccount(
            name="bench",
            base_url=sandbox.base_url,
            client_id="bench-id",
            client_secret="bench-secret",
            requests_per_minute=RATE,
        )
        metrics = Metrics(CollectorRegistry(), [("myinvois", "bench")])
        redis_client = connect(server.url)
        api = build_api(account, metrics)
        cursor = RangeCursor(since, until)
        sink = RedisSink(redis_client, 86400.0, 0)
        poller, publisher = pipeline(
            account,
            api,
            sink,
            metrics,
            "bench:{myinvois}",
            "bench:{dl}",
            cursor,
            Path(tmp) / "spool",
        )
        try:
            started = time.monotonic()
            walk(poller, publisher, cursor, deadline=started + DURATION)
            elapsed = time.monotonic() - started
        finally:
            api.http.close()
            redis_client.close()
        window = poller.window
        pending = sum(len(items) for items, _ in window.received) if window else 0
        read = poller.notifications + pending
        sent = sum(1 for _, path, _ in sandbox.requests if path.endswith("/taxpayer"))
        limited = sandbox.count_status(429)
    allowed = RATE * elapsed / 60.0
    per_minute = sent * 60.0 / elapsed
    return [
        Row(
            benchmark="myinvois backfill request rate",
            measured=f"{sent} requests in {elapsed:.1f} s ({per_minute:.1f}/min), {limited} x 429",
            reference=f"budget {RATE}/min = {allowed:.1f} requests in {elapsed:.1f} s",
            ratio=sent / allowed,
            goal=">= 0.95 and 0 x 429",
        ),
        Row(
            benchmark="myinvois backfill items per page",
            measured=f"{read} notifications read, {publisher.published} published",
            reference=f"{sent} pages x 100 = {sent * 100}",
            ratio=read / max(1, sent * 100),
            goal="~1 (only the last page of a window is short)",
        ),
    ]
