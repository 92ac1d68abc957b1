"""One MyInvois Client ID shared by many taxpayers: one budget, fair turns, spread logins.

``tick()`` of real pollers with a fake clock and a fake API at the HTTP seam: a small
discrete-event loop runs each poller when its returned wait is over, as a driver would.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from daemon.metrics import Metrics
from daemon.settings import MyInvoisAccount
from daemon.sources.budget import FairBudget, SharedBudgets, SlidingWindowBudget
from daemon.sources.myinvois.poll import MyInvoisPoller
from daemon.sources.myinvois.shared import SharedClient, client_key, shared_client
from daemon.sources.myinvois.window import Window
from daemon.spool import SpoolBudget, SpoolLog

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeApi:
    """The MyInvoisApi seam: logins and pages recorded with the fake clock's time."""

    shared: SharedClient
    tin: str
    clock: Clock
    busy: bool = False  # every page says hasNext: an endless backlog
    login_times: list[float] = field(default_factory=list)
    pages: list[float] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.budget = self.shared.notifications
        self.logins = self.shared.logins

    def needs_login(self) -> bool:
        return not self.login_times

    def login(self) -> None:
        self.login_times.append(self.clock())

    def get_page(self, date_from: datetime, date_to: datetime, page_no: int, size: int) -> bytes:
        self.pages.append(self.clock())
        items = [{"notificationId": f"{self.tin}-{page_no}"}] if self.busy else []
        return json.dumps({"result": items, "metadata": {"hasNext": self.busy}}).encode()


class EndlessCursor:
    """A fresh one-minute window each time; nothing is committed (no Redis here)."""

    def next_window(self) -> Window:
        return Window(EPOCH, EPOCH + timedelta(minutes=1))

    def commit(self, window: Window) -> float | None:
        return None

    def window_done(self, window: Window) -> bool:
        return False


def account(n: int, **extra: object) -> MyInvoisAccount:
    values: dict[str, object] = {
        "name": f"tp{n:03d}",
        "base_url": "https://api.example",
        "client_id": "agent",
        "client_secret": "agent-secret-value",
        "on_behalf_of": f"C{n:010d}",
        "interval": 1.0,
        **extra,
    }
    return MyInvoisAccount(**values)  # type: ignore[arg-type]


def pollers(
    tmp_path: Path, count: int, clock: Clock, rpm: int = 12, lpm: int = 12, busy: int = 0
) -> tuple[list[MyInvoisPoller], list[FakeApi], Metrics]:
    """``count`` taxpayers of one client; the first ``busy`` have an endless backlog."""
    metrics = Metrics(CollectorRegistry())
    budgets = SharedBudgets()
    made, apis = [], []
    for n in range(count):
        acct = account(n, requests_per_minute=rpm, logins_per_minute=lpm)
        shared = shared_client(acct, budgets, metrics, clock)
        api = FakeApi(shared, acct.on_behalf_of or "", clock, busy=n < busy)
        spool = SpoolLog(tmp_path / acct.name, SpoolBudget(1 << 20))
        poller = MyInvoisPoller(
            acct,
            api,
            spool,
            metrics,
            "s",
            "d",
            EndlessCursor(),
            wall_clock=clock,  # type: ignore[arg-type]
        )
        made.append(poller)
        apis.append(api)
    return made, apis, metrics


def run(workers: list[MyInvoisPoller], clock: Clock, until: float) -> None:
    """Run every worker's tick when its wait is over (ties in a fixed order), until ``until``."""
    due = dict.fromkeys(range(len(workers)), clock.now)
    while True:
        index = min(due, key=lambda i: (due[i], i))
        if due[index] > until:
            return
        clock.now = due[index]
        due[index] = clock.now + max(workers[index].tick(clock.now), 0.001)


def grants_in_any_window(times: list[float], window: float) -> int:
    ordered = sorted(times)
    return max(
        (sum(1 for t in ordered[i:] if t < s + window) for i, s in enumerate(ordered)), default=0
    )


def test_taxpayers_of_one_client_share_one_budget(tmp_path: Path) -> None:
    """Ten taxpayers of one Client ID never send more than its 12 requests in any minute."""
    clock = Clock()
    workers, apis, _ = pollers(tmp_path, 10, clock)
    run(workers, clock, 600)
    pages = [t for api in apis for t in api.pages]
    assert grants_in_any_window(pages, 60.0) <= 12
    assert len(pages) >= 0.9 * 600 / 60 * 12  # and the budget is used, not wasted
    assert grants_in_any_window(pages, 15.0) <= 3  # spread: a late grant caught up, no burst


def test_logins_are_spread_never_a_burst_at_start(tmp_path: Path) -> None:
    """Twenty taxpayers start at once: one login each, spaced by the client's login budget."""
    clock = Clock()
    workers, apis, _ = pollers(tmp_path, 20, clock, rpm=600, lpm=12)
    run(workers, clock, 300)
    logins = sorted(t for api in apis for t in api.login_times)
    assert [len(api.login_times) for api in apis] == [1] * 20
    assert min(b - a for a, b in itertools.pairwise(logins)) >= 60 / 12
    assert grants_in_any_window(logins, 60.0) <= 12


def test_a_busy_backlog_does_not_starve_quiet_taxpayers(tmp_path: Path) -> None:
    """Two endless backlogs and eight quiet taxpayers: each polled about every N/B, in turn."""
    clock = Clock()
    count, rpm = 10, 12
    workers, apis, _ = pollers(tmp_path, count, clock, rpm=rpm, busy=2)
    run(workers, clock, 300)  # start-up: ten logins at 12 a minute come first
    for worker in workers:
        worker.longest_wait = 0.0
    run(workers, clock, 1800)
    fair = count * 60 / rpm  # N/B: 50 s between two polls of one taxpayer
    for api in apis:
        gaps = [b - a for a, b in itertools.pairwise(api.pages) if a > 300]
        assert max(gaps) <= 2 * fair, (api.tin, max(gaps))
    per_taxpayer = Counter({api.tin: len(api.pages) for api in apis})
    assert max(per_taxpayer.values()) <= 1.5 * min(per_taxpayer.values())
    assert max(w.longest_wait for w in workers) <= 2 * fair


def lag_and_use(metrics: Metrics) -> tuple[float, float]:
    labels = {"client": "agent"}
    registry = metrics.registry
    used = registry.get_sample_value("drainer_myinvois_client_budget_used_ratio", labels)
    lag = registry.get_sample_value("drainer_myinvois_schedule_lag_seconds", labels)
    assert used is not None and lag is not None
    return used, lag


def test_schedule_lag_is_steady_when_the_budget_suffices(tmp_path: Path) -> None:
    """30 quiet taxpayers at 12/min: lag about N/B - interval, not growing; budget all used."""
    clock = Clock()
    workers, _, metrics = pollers(tmp_path, 30, clock, rpm=12)
    run(workers, clock, 900)
    used, early = lag_and_use(metrics)
    run(workers, clock, 1800)
    _, late = lag_and_use(metrics)
    assert used > 0.9
    assert 100 < early < 2 * 150 and abs(late - early) < 60  # N/B = 150 s, interval 1 s


def test_schedule_lag_grows_when_a_backlog_outruns_the_budget(tmp_path: Path) -> None:
    """A backlog the client's budget cannot read: the most overdue lag keeps growing."""
    clock = Clock()
    workers, _, metrics = pollers(tmp_path, 10, clock, rpm=12, busy=1)
    run(workers, clock, 900)
    _, early = lag_and_use(metrics)
    run(workers, clock, 1800)
    _, late = lag_and_use(metrics)
    assert late > early + 800


def test_fair_budget_serves_waiting_callers_in_order() -> None:
    """Callers that had to wait are served first come, first served; a lost one is skipped."""
    fair = FairBudget(SlidingWindowBudget(6, 60.0, spread=True), grace=5.0)
    assert fair.try_acquire(0.0, "a") == 0
    wait_b = fair.try_acquire(0.1, "b")
    wait_c = fair.try_acquire(0.2, "c")
    assert 0 < wait_b < wait_c
    assert fair.try_acquire(0.3, "a") > wait_c - 0.2  # asking again: behind b and c
    assert fair.try_acquire(0.1 + wait_b, "b") == 0
    # c never comes back: past its grace the line moves on without it.
    later = 0.2 + wait_c + 60
    assert fair.try_acquire(later, "a") == 0
    assert fair.waiting() == 0


def test_a_late_caller_keeps_its_place_and_blocks_nobody_for_long() -> None:
    """A head that comes back late is still served first; until then, those behind it
    wait at most `patience` past their own moment."""
    fair = FairBudget(SlidingWindowBudget(60, 60.0, spread=True, margin=0.0), patience=2.0)
    assert fair.try_acquire(0.0, "a") == 0
    assert fair.try_acquire(0.0, "b") == 1.0  # b's moment: 1.0
    assert fair.try_acquire(0.0, "c") == 2.0  # c's moment: 2.0
    assert 0 < fair.try_acquire(2.0, "c") <= 2.0  # b is late: c waits for it ...
    assert fair.try_acquire(2.5, "b") == 0  # ... and b, late, is served first
    assert fair.try_acquire(3.5, "c") == 0
    assert fair.try_acquire(3.6, "d") > 0  # d queues behind; e queues behind d
    assert fair.try_acquire(3.6, "e") > 0
    assert fair.try_acquire(10.0, "e") == 0  # d never came back: e waited only `patience`


def test_client_key_names_what_myinvois_limits() -> None:
    """The key is the identity host and the client_id, never the account or the TIN."""
    one = account(1, identity_url="https://id.example:8443")
    assert client_key(one) == "myinvois:id.example:8443:agent"
    assert client_key(account(2)) == "myinvois:api.example:agent"


def test_accounts_sharing_a_client_share_budgets_and_a_token_per_tin() -> None:
    """Same client: one SharedClient; the same TIN twice: one token cache."""
    budgets, metrics, clock = SharedBudgets(), Metrics(CollectorRegistry()), Clock()
    a = shared_client(account(1), budgets, metrics, clock)
    b = shared_client(account(2), budgets, metrics, clock)
    other = shared_client(account(3, client_id="other"), budgets, metrics, clock)
    assert a is b and a is not other
    fetch = lambda: ("t", 3600.0)  # noqa: E731 - a one-line fake
    assert a.tokens_for("C1", fetch, clock) is b.tokens_for("C1", fetch, clock)
    assert a.tokens_for("C1", fetch, clock) is not a.tokens_for("C2", fetch, clock)


@pytest.mark.parametrize("key", ["requests_per_minute", "logins_per_minute"])
def test_disagreeing_budgets_of_one_client_are_refused(key: str) -> None:
    """Two accounts of one client with different budget values: an error naming both."""
    from pydantic import ValidationError

    from daemon.settings import Settings

    first = account(1).model_dump()
    second = {**account(2).model_dump(), key: 30}
    for values in (first, second):
        values["client_secret"] = "agent-secret-value"
    with pytest.raises(ValidationError, match=rf"myinvois\[1\]\.{key}: accounts 'tp001' .*'tp002'"):
        Settings(myinvois=[first, second])
