"""RedisProbe.tick with a fake client and a fake clock: the cache, its age and staleness."""

from __future__ import annotations

from dataclasses import dataclass

import redis

from daemon.sink.health import PROBE_EVERY, RedisProbe


@dataclass
class FakeClock:
    now: float = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeProbeClient:
    """PING and XLEN answer, or raise ``fail``; no stream exists (no group reads)."""

    fail: Exception | None = None

    def ping(self) -> bool:
        if self.fail is not None:
            raise self.fail
        return True

    def xlen(self, stream: str) -> int:
        return 7

    def exists(self, stream: str) -> int:
        return 0


def make(client: FakeProbeClient, clock: FakeClock) -> RedisProbe:
    return RedisProbe(client, ["s"], 10, clock=clock, wall_clock=lambda: 1.0e9, stale_after=5.0)  # type: ignore[arg-type]


def test_an_answer_is_cached_for_the_readers() -> None:
    """A good tick caches the stream lengths; /readyz has nothing to say."""
    clock = FakeClock(100.0)
    probe = make(FakeProbeClient(), clock)
    assert probe.tick(100.0) == PROBE_EVERY
    assert list(probe.lengths()) == [("s", 7)] and probe.not_ready() is None


def test_a_failing_ping_marks_redis_not_answering_at_once() -> None:
    """PING raises: not_ready names the error; the age keeps counting from the last answer."""
    clock = FakeClock(100.0)
    client = FakeProbeClient()
    probe = make(client, clock)
    probe.tick(100.0)
    client.fail = redis.ConnectionError("refused")
    clock.now = 102.0
    probe.tick(102.0)
    assert "ConnectionError: refused" in str(probe.not_ready())
    assert probe.fresh() is None and probe.age() == 2.0


def test_a_cache_older_than_stale_after_is_stale() -> None:
    """No answer for longer than stale_after (a hanging probe): the readers see it stale."""
    clock = FakeClock(100.0)
    probe = make(FakeProbeClient(), clock)
    probe.tick(100.0)
    clock.now = 104.0
    assert probe.fresh() is not None
    clock.now = 106.0
    assert probe.fresh() is None and "no answer for 5s" in str(probe.not_ready())


def test_an_answer_after_failures_is_fresh_again() -> None:
    """Redis answers again: the error is cleared and the figures are fresh."""
    clock = FakeClock(100.0)
    client = FakeProbeClient(fail=redis.ConnectionError("refused"))
    probe = make(client, clock)
    probe.tick(100.0)
    assert probe.fresh() is None
    client.fail = None
    probe.tick(101.0)
    assert probe.fresh() is not None and probe.not_ready() is None
