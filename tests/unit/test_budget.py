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
