"""One intermediary, many taxpayers: the sandbox's per-Client-ID limits and a real Redis.

Workers are driven by calling ``tick()`` in one loop, each when its returned wait is over
(what a driver does), so the test sees the daemon's schedule and not thread luck.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import LocalRedis
from daemon.metrics import Metrics
from daemon.publisher import Publisher
from daemon.sandbox import MyInvoisClient, MyInvoisSandbox
from daemon.settings import MyInvoisAccount
from daemon.sink import RedisSink, connect
from daemon.sources.budget import SharedBudgets
from daemon.sources.myinvois.poll import MyInvoisPoller, build_api
from daemon.sources.myinvois.window import WatermarkCursor
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import Backoff
from tests.helpers import stream_entries

STREAM = "drainer:{myinvois}"
DEADLETTER = "drainer:{deadletter}"
CLIENT, SECRET = "agent-id", "agent-secret-value"
TAXPAYERS = 20  # the 150, scaled down for the suite (budget scaled alike)
BUDGET = 300  # requests a minute for the Client ID: 20 taxpayers -> one poll each 4 s


def tin(n: int) -> str:
    return f"C{7000000000 + n}"


@dataclass
class Pair:
    poller: MyInvoisPoller
    publisher: Publisher


@pytest.fixture
def sandbox() -> Iterator[MyInvoisSandbox]:
    """An intermediary acting for TAXPAYERS taxpayers; limits per Client ID as documented."""
    clients = [MyInvoisClient(CLIENT, SECRET, on_behalf_of=tin(n)) for n in range(TAXPAYERS)]
    with MyInvoisSandbox(
        clients, requests_per_minute=BUDGET, logins_per_minute=BUDGET, identity_port=0
    ) as server:
        yield server


def build(
    sandbox: MyInvoisSandbox, redis_url: str, tmp_path: Path, count: int, **extra: Any
) -> tuple[list[Pair], Metrics]:
    """``count`` accounts of the one client, wired as the daemon wires them (shared budgets)."""
    names = [f"tp{n:03d}" for n in range(count)]
    metrics = Metrics(CollectorRegistry(), [("myinvois", name) for name in names])
    budgets = SharedBudgets()
    client = connect(redis_url, timeout=2.0)
    sink = RedisSink(client, 86400.0, 0)
    pairs = []
    for n, name in enumerate(names):
        values: dict[str, Any] = {
            "name": name,
            "base_url": sandbox.base_url,
            "identity_url": sandbox.identity_url,
            "client_id": CLIENT,
            "client_secret": SECRET,
            "on_behalf_of": tin(n),
            "interval": 1.0,
            "requests_per_minute": BUDGET,
            "logins_per_minute": BUDGET,
            **extra,
        }
        account = MyInvoisAccount(**values)
        spool = SpoolLog(tmp_path / name, SpoolBudget(1 << 30))
        publisher = Publisher(
            "myinvois", name, spool, sink, metrics, DEADLETTER,
            watermark_stream=STREAM, count_deadletters=True,
        )  # fmt: skip
        api = build_api(account, metrics, budgets=budgets)
        cursor = WatermarkCursor(account, publisher.read_watermark, metrics, safety_lag=1.0)
        poller = MyInvoisPoller(
            account, api, spool, metrics, STREAM, DEADLETTER, cursor,
            backoff=Backoff(base=0.05, cap=0.5), refused_backoff=Backoff(base=0.05, cap=0.3),
        )  # fmt: skip
        pairs.append(Pair(poller, publisher))
    return pairs, metrics


def drive(pairs: list[Pair], until: Any, timeout: float = 120.0) -> None:
    """Tick every poller when its wait is over, its publisher when it has spooled work."""
    due = dict.fromkeys(range(len(pairs)), 0.0)
    deadline = time.monotonic() + timeout
    while not until():
        assert time.monotonic() < deadline, [p.poller.health.last_error for p in pairs]
        index = min(due, key=lambda i: due[i])
        pause = due[index] - time.monotonic()
        if pause > 0:
            time.sleep(min(pause, 0.05))
            continue
        pair = pairs[index]
        wait = pair.poller.tick(time.monotonic())
        if pair.publisher.spool.pending_records:
            wait = min(wait, pair.publisher.tick(time.monotonic()))
        due[index] = time.monotonic() + wait


def close(pairs: list[Pair]) -> None:
    for pair in pairs:
        pair.poller.api.http.close()
    pairs[0].publisher.sink.client.close()


def test_taxpayers_of_one_intermediary_share_its_budget_fairly(
    sandbox: MyInvoisSandbox, redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """20 taxpayers, one Client ID: each notification once under its account, one login
    each, at most a couple of 429s, and nobody waits much more than its fair share."""
    now = datetime.fromtimestamp(int(time.time()), UTC)
    expected: dict[str, set[str]] = {}
    for n in range(TAXPAYERS):
        count = 240 if n == 0 else 15  # one busy taxpayer: a backlog of 6 pages
        added = sandbox.add_notifications(
            CLIENT, count, start=now - timedelta(hours=2), end=now, tin=tin(n)
        )
        expected[f"tp{n:03d}"] = {item["notificationId"] for item in added}
    pairs, metrics = build(
        sandbox, redis_server.url, tmp_path, TAXPAYERS, start_at=now - timedelta(hours=3),
        page_size=40,
    )  # fmt: skip
    try:
        started = time.monotonic()
        drive(pairs, lambda: all(p.poller.windows_completed >= 3 for p in pairs))
        drive(pairs, lambda: time.monotonic() > started + 25)  # a steady stretch to measure
    finally:
        close(pairs)
    entries = stream_entries(redis_client, STREAM)
    ids = Counter(entry["event_id"] for entry in entries)
    assert max(ids.values()) == 1
    for account, wanted in expected.items():
        got = {e["event_id"].rsplit(":", 1)[1] for e in entries if e["account"] == account}
        assert got == wanted, account
    assert [sandbox.logins(CLIENT, tin(n)) for n in range(TAXPAYERS)] == [1] * TAXPAYERS
    assert sandbox.count_status(429) <= 2
    fair = max(1.0, TAXPAYERS * 60 / BUDGET)  # max(interval, N/B)
    for n in range(TAXPAYERS):
        polls = sandbox.polled(CLIENT, tin(n))
        worst = max(b - a for a, b in itertools.pairwise(polls))
        assert worst <= 2 * fair + 3.0, (n, worst, fair)  # slack for a loaded machine
    labels = {"client": CLIENT}
    used = metrics.registry.get_sample_value("drainer_myinvois_client_budget_used_ratio", labels)
    lag = metrics.registry.get_sample_value("drainer_myinvois_schedule_lag_seconds", labels)
    assert used is not None and used > 0.3  # of a minute's budget, within a 25 s run
    assert lag is not None and lag <= 2 * fair + 3.0


def test_a_403_drops_the_token_so_the_next_attempt_logs_in_again(
    sandbox: MyInvoisSandbox, redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """A page answered 403 drops that taxpayer's token: its retry logs in afresh, and the
    other taxpayer of the client keeps its token."""
    pairs, metrics = build(sandbox, redis_server.url, tmp_path, 2)
    try:
        drive(pairs, lambda: all(p.poller.windows_completed >= 1 for p in pairs))
        assert [sandbox.logins(CLIENT, tin(n)) for n in range(2)] == [1, 1]
        sandbox.faults.script(["403"])
        done = [p.poller.windows_completed for p in pairs]
        drive(
            pairs,
            lambda: (
                sandbox.count_status(403) == 1
                and all(
                    p.poller.windows_completed > d + 1 for p, d in zip(pairs, done, strict=True)
                )
            ),
        )
    finally:
        close(pairs)
    forbidden = [
        metrics.registry.get_sample_value(
            "drainer_upstream_forbidden_total", {"source": "myinvois", "account": f"tp00{n}"}
        )
        for n in range(2)
    ]
    assert sorted(forbidden) == [0.0, 1.0]
    refused = forbidden.index(1.0)
    assert sandbox.logins(CLIENT, tin(refused)) == 2, "logged in again after the 403"
    assert sandbox.logins(CLIENT, tin(1 - refused)) == 1, "the other taxpayer's token is kept"


def test_a_429_for_one_taxpayer_holds_every_taxpayer_of_the_client(
    sandbox: MyInvoisSandbox, redis_server: LocalRedis, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """After a 429 (Retry-After 1 s) no taxpayer of that client asks before the wait is over."""
    pairs, _ = build(sandbox, redis_server.url, tmp_path, 5)
    try:
        drive(pairs, lambda: all(p.poller.windows_completed >= 1 for p in pairs))
        sandbox.faults.script(["429"])
        drive(pairs, lambda: bool(sandbox.limited_at(CLIENT)))
        limited = sandbox.limited_at(CLIENT)[0]
        drive(pairs, lambda: all(p.poller.windows_completed >= 3 for p in pairs))
    finally:
        close(pairs)
    polls = [t for n in range(5) for t in sandbox.polled(CLIENT, tin(n)) if t > limited]
    assert polls and min(polls) >= limited + 1.0  # Retry-After: 1
