"""Sliding-window budgets: hard ceilings in any window, even spacing, upstream blocks."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from daemon.sources.budget import SlidingWindowBudget


def simulate(budget: SlidingWindowBudget, horizon: float, step: float) -> list[float]:
    """Grant requests as fast as allowed; return the grant times."""
    now, granted = 0.0, []
    while now < horizon:
        wait = budget.try_acquire(now)
        if wait == 0:
            granted.append(now)
        else:
            now += max(wait, step)
    return granted


@given(st.integers(min_value=1, max_value=50), st.floats(min_value=1, max_value=120))
def test_never_more_than_limit_in_any_window(limit: int, window: float) -> None:
    """No window of the configured length ever holds more than `limit` grants."""
    budget = SlidingWindowBudget(limit, window)
    times = simulate(budget, window * 4, 0.001)
    for i, start in enumerate(times):
        inside = [t for t in times[i:] if t < start + window]
        assert len(inside) <= limit


def test_spread_spaces_requests_evenly() -> None:
    """spread=True never bursts: consecutive grants are at least window/limit apart."""
    budget = SlidingWindowBudget(12, 60, spread=True)
    times = simulate(budget, 300, 0.01)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 60 / 12
    assert 0.95 <= len(times) / (300 / 60 * 12) <= 1.0


def test_burst_allowed_without_spread() -> None:
    """Without spread a backlog may use the whole budget at once (the DocPlanner hour)."""
    budget = SlidingWindowBudget(100, 3600)
    assert all(budget.try_acquire(0.0) == 0 for _ in range(100))
    assert budget.try_acquire(0.0) > 3000


def test_block_until_holds_every_request() -> None:
    """After a 429 no request is granted before the upstream's reset."""
    budget = SlidingWindowBudget(100, 60)
    budget.block_until(30.0)
    assert budget.try_acquire(10.0) == 20.0
    assert budget.try_acquire(30.0) == 0


def test_spread_with_burst_catches_up_a_late_grant_but_keeps_the_pace() -> None:
    """burst=3: after a late grant two more may follow at once, never a fourth, and the
    minute's ceiling holds."""
    budget = SlidingWindowBudget(12, 60, spread=True, burst=3, margin=0.0)
    assert [budget.try_acquire(t) for t in (0.0, 5.0, 10.0)] == [0, 0, 0]
    assert budget.try_acquire(20.0) == 0  # taken 5 s late ...
    assert budget.try_acquire(20.0) == 0  # ... so the next may follow at once
    assert budget.try_acquire(20.0) == 5.0  # but no more: back to one per 5 s
    budget = SlidingWindowBudget(12, 60, spread=True, burst=3, margin=0.0)
    times = simulate(budget, 600, 0.01)
    assert all(b - a >= 15 - 1e-9 for a, b in zip(times, times[3:], strict=False))
    for i, start in enumerate(times):
        assert len([t for t in times[i:] if t < start + 60]) <= 12
