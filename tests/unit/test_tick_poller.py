"""MyInvoisPoller.tick with a fake API, a fixed-range cursor and a real spool in a temp dir."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.errors import RateLimitedError
from daemon.metrics import Metrics
from daemon.settings import MyInvoisAccount
from daemon.sources.budget import FairBudget
from daemon.sources.myinvois.poll import MyInvoisPoller
from daemon.sources.myinvois.shared import SharedClient
from daemon.sources.myinvois.window import RangeCursor
from daemon.spool import SpoolBudget, SpoolLog

ITEM = (
    b'{"notificationId":"N%d","creationDateTime":"2026-11-02T10:00:00Z",'
    b'"receivedDateTime":"2026-11-02T10:00:00Z","typeId":3}'
)


def page(number: int, has_next: bool) -> bytes:
    flag = b"true" if has_next else b"false"
    return b'{"result":[' + ITEM % number + b'],"metadata":{"hasNext":' + flag + b"}}"


@dataclass
class FakeMyInvoisApi:
    """Answers get_page from a script (bytes or an exception) and records the pages asked;
    its Client ID's budgets are real and ample, and it is always logged in."""

    script: list[bytes | Exception]
    shared: SharedClient = field(default_factory=lambda: SharedClient("myinvois:t:id", 1000, 1000))
    asked: list[int] = field(default_factory=list)

    @property
    def budget(self) -> FairBudget:
        return self.shared.notifications

    @property
    def logins(self) -> FairBudget:
        return self.shared.logins

    def needs_login(self) -> bool:
        return False

    def get_page(self, date_from: datetime, date_to: datetime, page_no: int, size: int) -> bytes:
        self.asked.append(page_no)
        answer = self.script.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(tmp_path: Path, script: list[bytes | Exception]) -> tuple[MyInvoisPoller, FakeMyInvoisApi]:
    account = MyInvoisAccount(
        name="acme", base_url="http://127.0.0.1:9", client_id="id", client_secret="secret",
        interval=60,
    )  # fmt: skip
    api = FakeMyInvoisApi(list(script))
    cursor = RangeCursor(datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC))
    poller = MyInvoisPoller(
        account, api, SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30)),  # type: ignore[arg-type]
        Metrics(CollectorRegistry(), [("myinvois", "acme")]), "s", "dl", cursor,
        wall_clock=lambda: 1_790_000_000.0,
    )  # fmt: skip
    return poller, api


def test_a_page_with_has_next_makes_the_next_tick_fetch_page_two(tmp_path: Path) -> None:
    """hasNext true: the tick asks for more at once and the next tick requests page 2."""
    poller, api = make(tmp_path, [page(1, True), page(2, False)])
    assert poller.tick(0.0) == 0.0
    poller.tick(1.0)  # one spread request later
    assert api.asked == [1, 2]


def test_the_last_page_spools_the_window_oldest_first(tmp_path: Path) -> None:
    """hasNext false: the window's entries (both pages, de-duplicated) are in the spool."""
    poller, _ = make(tmp_path, [page(1, True), page(2, False)])
    poller.tick(0.0)
    poller.tick(1.0)
    [record] = poller.spool.pending()
    assert sorted(e.event_id for e in record.entries) == ["myinvois:acme:N1", "myinvois:acme:N2"]
    assert poller.windows_completed == 1


def test_a_429_returns_the_retry_after_wait(tmp_path: Path) -> None:
    """A 429 waits until its retry time, and the same page is asked for again afterwards."""
    poller, api = make(tmp_path, [RateLimitedError("429", retry_at=42.0), page(1, False)])
    assert poller.tick(2.0) == 40.0
    assert poller.health.failing_since == 2.0
    poller.tick(42.0)
    assert api.asked == [1, 1]


def test_an_empty_range_waits_the_interval_before_the_next_poll(tmp_path: Path) -> None:
    """No window to read: the tick sends nothing and waits one interval."""
    poller, api = make(tmp_path, [])
    poller.cursor = RangeCursor(
        datetime(2026, 11, 3, tzinfo=UTC), datetime(2026, 11, 3, tzinfo=UTC)
    )
    assert poller.tick(10.0) == 60.0
    assert poller.tick(30.0) == 40.0 and api.asked == []


def test_a_finished_window_waits_until_interval_after_it_started(tmp_path: Path) -> None:
    """A poll that read one page at t=5 is followed by the next one at t=65."""
    poller, _ = make(tmp_path, [page(1, False)])
    poller.cursor = RangeCursor(
        datetime(2026, 11, 2, tzinfo=UTC), datetime(2026, 11, 2, 1, tzinfo=UTC)
    )
    assert poller.tick(5.0) == 60.0
