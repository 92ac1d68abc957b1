"""One MyInvois Client ID, shared by every taxpayer it acts for (SPEC §1, §2).

MyInvois limits per Client ID: login "12 RPM / Client ID" and the limit table in
"RPM / Client Id" (https://sdk.myinvois.hasil.gov.my/integration-practices/), and the
``X-Rate-Limit-*`` headers count requests "for this client"
(https://sdk.myinvois.hasil.gov.my/standard-header-parameters/). So every account with the
same ``client_id`` on the same identity host shares one :class:`SharedClient`, keyed
``myinvois:<identity host>:<client_id>``:

- one notifications budget (``requests_per_minute``, spread evenly) and one login budget
  (``logins_per_minute``), both taken in turn (:class:`FairBudget`), and any 429 wait;
- the tokens, one per (client, TIN), each cached for its lifetime ("access tokens should
  be cached for the lifetime of the token", same page);
- the schedule: how far behind its interval the most overdue taxpayer is, for
  ``drainer_myinvois_schedule_lag_seconds``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from daemon.metrics import Metrics
from daemon.settings import MyInvoisAccount
from daemon.sources.budget import FairBudget, SharedBudgets, SlidingWindowBudget
from daemon.sources.http import TokenCache


def client_key(account: MyInvoisAccount) -> str:
    """``myinvois:<identity host>:<client_id>``: what MyInvois limits as one."""
    host = (urlsplit(account.token_base).netloc or account.token_base).lower()
    return f"myinvois:{host}:{account.client_id}"


class SharedClient:
    """Budgets, tokens and schedule of one Client ID; thread-safe."""

    def __init__(self, key: str, requests_per_minute: int, logins_per_minute: int) -> None:
        self.key = key
        # Pages may catch up a late grant (burst 3: never a minute's budget at once);
        # logins keep a strict pace.
        pages = SlidingWindowBudget(requests_per_minute, 60.0, spread=True, burst=3)
        self.notifications = FairBudget(pages)
        self.logins = FairBudget(SlidingWindowBudget(logins_per_minute, 60.0, spread=True))
        self._tokens: dict[str, TokenCache] = {}
        self._members: dict[str, Callable[[float], float]] = {}
        self._lock = threading.Lock()

    def tokens_for(
        self, tin: str, fetch: Callable[[], tuple[str, float]], clock: Callable[[], float]
    ) -> TokenCache:
        """The token cache of one (client, TIN): one login serves every account of that TIN."""
        with self._lock:
            found = self._tokens.get(tin)
            if found is None:
                found = self._tokens[tin] = TokenCache(fetch, clock)
            return found

    def join(self, account: str, lag: Callable[[float], float]) -> None:
        """Count ``account`` in the schedule; ``lag(now)`` is how far behind it is."""
        with self._lock:
            self._members[account] = lag

    def leave(self, account: str) -> None:
        """The account stopped (removed on reload): no longer part of the schedule."""
        with self._lock:
            self._members.pop(account, None)
        self.notifications.forget(account)
        self.logins.forget(account)

    @property
    def members(self) -> int:
        with self._lock:
            return len(self._members)

    def schedule_lag(self, now: float) -> float:
        """Seconds the most overdue taxpayer is behind its interval."""
        with self._lock:
            readers = list(self._members.values())
        return max((reader(now) for reader in readers), default=0.0)

    def budget_used(self, now: float) -> float:
        """Share of the notifications budget used in the last minute."""
        return self.notifications.used_ratio(now)


def shared_client(
    account: MyInvoisAccount,
    budgets: SharedBudgets,
    metrics: Metrics,
    clock: Callable[[], float] = time.monotonic,
    requests_per_minute: int | None = None,
) -> SharedClient:
    """The account's :class:`SharedClient`, created (and exported) by its first account.

    Accounts sharing a client agree on their budgets (settings validation), so the first
    account's values are the client's.
    """
    key = client_key(account)
    rate = requests_per_minute or account.requests_per_minute

    def make() -> SharedClient:
        shared = SharedClient(key, rate, account.logins_per_minute)
        metrics.myinvois_clients.add(
            account.client_id,
            lambda: (shared.budget_used(clock()), shared.schedule_lag(clock())),
        )
        return shared

    return budgets.get(key, SharedClient, make)
