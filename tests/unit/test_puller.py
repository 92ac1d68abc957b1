"""DocPlannerPuller.tick with a fake API and a real spool: spool first, idle, pauses."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.errors import RateLimitedError, TransientError
from daemon.metrics import Metrics
from daemon.settings import DocPlannerAccount
from daemon.sources.budget import SlidingWindowBudget
from daemon.sources.docplanner.pull import SPOOL_HEADROOM, DocPlannerPuller
from daemon.spool import SpoolBudget, SpoolLog
from tests.unit.fakes import FakeDocPlannerApi

BODY = (
    b'{"notifications":[{"name":"x","data":{},"created_at":"2026-11-02T10:18:34Z"}],"remaining":7}'
)


def make(
    tmp_path: Path, script: list[bytes | Exception | None], max_bytes: int = 1 << 30
) -> tuple[DocPlannerPuller, FakeDocPlannerApi, list[int]]:
    account = DocPlannerAccount(
        name="pl", base_url="http://127.0.0.1:9", client_id="id", client_secret="secret",
        idle_interval=5,
    )  # fmt: skip
    budget = SpoolBudget(max_bytes)
    spool = SpoolLog(tmp_path / "spool", budget)
    api = FakeDocPlannerApi(list(script))
    woken: list[int] = []
    puller = DocPlannerPuller(
        account, api, spool, budget,  # type: ignore[arg-type]
        Metrics(CollectorRegistry(), [("docplanner", "pl")]), "s", "dl",
        SlidingWindowBudget(8000, 3600.0), on_spooled=lambda: woken.append(spool.pending_records),
        wall_clock=lambda: 1_790_000_000.0,
    )  # fmt: skip
    return puller, api, woken


def test_a_pulled_body_is_spooled_verbatim_before_the_next_pull(tmp_path: Path) -> None:
    """The raw body is in the spool (and the publisher woken) when tick returns 0 to pull again."""
    puller, api, woken = make(tmp_path, [BODY, None])
    assert puller.tick(0.0) == 0.0
    assert woken == [1] and api.pulls == 1
    [record] = puller.spool.pending()
    assert record.raw is not None and record.raw.body == BODY and record.raw.delivery == "pull"
    assert record.raw.count == 1


def test_an_empty_queue_waits_the_idle_interval(tmp_path: Path) -> None:
    """404 (None) is idle, not an error: wait idle_interval, health stays good."""
    puller, _, woken = make(tmp_path, [None])
    assert puller.tick(0.0) == 5.0
    assert woken == [] and puller.health.failing_since is None
    assert puller.health.last_success is not None


def test_a_429_waits_until_its_retry_time(tmp_path: Path) -> None:
    """RateLimitedError: the next tick comes at retry_at, not before."""
    puller, _, _ = make(tmp_path, [RateLimitedError("429", retry_at=42.0)])
    assert puller.tick(2.0) == 40.0
    assert "429" in str(puller.health.last_error)


def test_transient_errors_back_off_and_recover(tmp_path: Path) -> None:
    """A 5xx backs off (growing waits); the next good pull clears the failure."""
    puller, _, _ = make(tmp_path, [TransientError("503"), TransientError("503"), BODY])
    first = puller.tick(0.0)
    second = puller.tick(1.0)
    assert first > 0 and second > 0 and puller.health.failing_since == 0.0
    assert puller.tick(2.0) == 0.0 and puller.health.failing_since is None


def test_no_pull_when_the_spool_cannot_take_a_batch(tmp_path: Path) -> None:
    """Spool budget below the headroom: no pull at all (a pull is destructive), named not-ready."""
    puller, api, _ = make(tmp_path, [BODY], max_bytes=SPOOL_HEADROOM // 2)
    assert puller.tick(0.0) > 0
    assert api.pulls == 0
    assert "spool full" in str(puller.health.snapshot().detail["not_ready"])


def test_a_pulled_batch_the_full_spool_refuses_goes_to_disk_past_the_budget(
    tmp_path: Path,
) -> None:
    """A body larger than the room left (it was popped upstream) is spooled past max_bytes,
    never held in memory where a SIGTERM would drop it."""
    big = BODY.replace(b'"data":{}', b'"data":{"blob":"' + b"x" * (SPOOL_HEADROOM + 10) + b'"}')
    puller, api, woken = make(tmp_path, [big], max_bytes=SPOOL_HEADROOM)
    assert puller.tick(0.0) == 0.0
    assert api.pulls == 1 and woken == [1]
    [record] = puller.spool.pending()
    assert record.raw is not None and record.raw.body == big
    assert puller.spool_budget.used > SPOOL_HEADROOM
