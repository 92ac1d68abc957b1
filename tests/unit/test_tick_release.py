"""ReleaseScheduler.tick with a fake DocPlanner API: cadence, 429, 403 backoff and recovery."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry

from daemon.errors import RateLimitedError
from daemon.metrics import Metrics
from daemon.settings import DocPlannerAccount
from daemon.sources.docplanner.release import ReleaseScheduler
from daemon.worker import REFUSED_CAP


@dataclass
class FakeReleaseApi:
    """Answers release() from a script: a status code or an exception."""

    script: list[int | Exception]
    calls: list[int] = field(default_factory=list)

    def release(self) -> int:
        answer = self.script.pop(0)
        self.calls.append(1)
        if isinstance(answer, Exception):
            raise answer
        return answer


def make(script: list[int | Exception]) -> tuple[ReleaseScheduler, FakeReleaseApi]:
    account = DocPlannerAccount(
        name="pl", base_url="http://127.0.0.1:9", client_id="id", client_secret="secret",
        mode="push", push_token="t" * 32, release_interval=7200,
    )  # fmt: skip
    api = FakeReleaseApi(list(script))
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    release = ReleaseScheduler(account, api, metrics, wall_clock=lambda: 1_790_000_000.0)  # type: ignore[arg-type]
    return release, api


def test_a_204_schedules_the_next_release_one_interval_later() -> None:
    """204: success recorded, the next call is due release_interval later and not before."""
    release, api = make([204, 204])
    assert release.tick(10.0) == 7200
    assert release.health.last_success is not None
    assert release.tick(100.0) == 7110.0 and len(api.calls) == 1
    release.tick(7210.0)
    assert len(api.calls) == 2


def test_a_429_waits_for_its_retry_after_without_failing() -> None:
    """429: wait until retry_at; health is not failing (expected after a restart)."""
    release, _ = make([RateLimitedError("429", retry_at=1810.0)])
    assert release.tick(10.0) == 1800.0
    assert release.health.failing_since is None


def test_a_403_backs_off_capped_and_is_named_in_health() -> None:
    """403: failing, named in not_ready, retried with a backoff never longer than REFUSED_CAP."""
    release, _ = make([403] * 12)
    now = 0.0
    for _ in range(12):
        wait = release.tick(now)
        assert 0 < wait <= REFUSED_CAP
        now += wait
    assert release.forbidden and release.health.failing_since == 0.0
    assert "403" in str(release.health.snapshot().detail["not_ready"])


def test_a_204_after_a_403_clears_the_refusal() -> None:
    """The next 204 clears forbidden, not_ready and the failing state."""
    release, _ = make([403, 204])
    wait = release.tick(0.0)
    release.tick(wait)
    snapshot = release.health.snapshot()
    assert not release.forbidden and "not_ready" not in snapshot.detail
    assert snapshot.failing_since is None
