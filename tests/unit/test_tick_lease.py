"""LeasedWorker.tick and Lease.ensure with a fake clock, a fake inner worker and a fake client."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from daemon.runtime.leased import LeasedWorker
from daemon.sink.lease import Lease
from daemon.worker import Health


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class CountingWorker:
    """An intake worker that counts its ticks and asks to be ticked every ``every`` seconds."""

    every: float = 1.0
    ticks: list[float] = field(default_factory=list)
    name: str = "docplanner:pl:puller"
    health: Health = field(default_factory=lambda: Health("docplanner", "pl", "puller"))

    def tick(self, now: float) -> float:
        self.ticks.append(now)
        return self.every


@dataclass
class FakeLeaseClient:
    """The lease's Redis seam: SET NX PX, GET and the renew script; ``renew`` scripts answers."""

    renew: list[int | Exception] = field(default_factory=list)
    holder: str | None = None

    def set(self, key: str, value: str, nx: bool, px: int) -> bool:
        if self.holder is not None:
            return False
        self.holder = value
        return True

    def get(self, key: str) -> str | None:
        return self.holder

    def register_script(self, script: str) -> Callable[..., int]:
        def renew(keys: list[str], args: list[Any]) -> int:
            answer = self.renew.pop(0) if self.renew else 1
            if isinstance(answer, Exception):
                raise answer
            return answer

        return renew


def make(client: FakeLeaseClient, clock: FakeClock) -> tuple[LeasedWorker, CountingWorker]:
    inner = CountingWorker()
    lease = Lease(client, "{s}:lease:docplanner:pl", "me", 30.0, clock=clock)  # type: ignore[arg-type]
    return LeasedWorker(inner, lease, clock), inner


def test_a_held_lease_ticks_the_inner_worker() -> None:
    """The first tick takes the free lease and ticks the wrapped worker."""
    clock = FakeClock()
    leased, inner = make(FakeLeaseClient(), clock)
    leased.tick(0.0)
    assert inner.ticks == [0.0] and leased.lease.held


def test_a_lost_lease_stops_the_wrapped_workers_ticks() -> None:
    """A renewal that finds another holder: the inner worker is not ticked again."""
    client = FakeLeaseClient(renew=[0])
    clock = FakeClock()
    leased, inner = make(client, clock)
    leased.tick(0.0)
    client.holder = "other"
    for now in (10.0, 11.0, 12.0, 20.0):  # renew is due at ttl/3 = 10 s
        clock.now = now
        leased.tick(now)
    assert inner.ticks == [0.0] and not leased.lease.held
    assert "held by other" in str(leased.health.snapshot().detail["lease"])


def test_a_standby_worker_never_ticks_while_another_holds_the_lease() -> None:
    """The lease is taken by someone else: the wrapped worker stays idle and retries soon."""
    clock = FakeClock()
    leased, inner = make(FakeLeaseClient(holder="other"), clock)
    wait = leased.tick(0.0)
    assert inner.ticks == [] and 0 < wait <= 1.0


def test_redis_away_longer_than_two_thirds_of_the_ttl_stands_by() -> None:
    """Renewals fail: the holder keeps working only while ttl/3 of its lease is left."""
    client = FakeLeaseClient(renew=[redis.ConnectionError("refused")] * 100)
    clock = FakeClock()
    leased, inner = make(client, clock)
    leased.tick(0.0)
    clock.now = 15.0
    leased.tick(15.0)
    assert len(inner.ticks) == 2
    clock.now = 21.0
    leased.tick(21.0)
    assert len(inner.ticks) == 2 and not leased.lease.held
