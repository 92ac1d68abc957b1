"""What ``drainer run`` is made of: :class:`Parts` (shared) and one :class:`Account` each.

Built by ``daemon.runtime.wiring``; a reload (``daemon.runtime.reload``) attaches and
detaches accounts. Readers on other threads (``/readyz``, the push route) see whole lists
and dicts only: every change replaces them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Gauge

from daemon.metrics import Metrics
from daemon.publisher import Publisher
from daemon.settings import DocPlannerAccount, MyInvoisAccount, Settings
from daemon.sink import RedisSink
from daemon.sink.connect import RedisClient
from daemon.sink.health import RedisProbe
from daemon.sink.lease import Lease
from daemon.sources.budget import SharedBudgets
from daemon.sources.docplanner.push import PushReceiver
from daemon.sources.http import UpstreamClient
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import Worker


class PushMap(Mapping[str, PushReceiver]):
    """The push receivers by account name, read by the HTTP threads, changed by a reload.

    A change replaces the whole dict (one reference assignment), so a reader never sees a
    half-made one. A removed receiver is still found by ``[]`` (not by :meth:`get`, which
    authorisation uses) until :meth:`forget`: a push authorised just before the removal
    is spooled to the account's spool, which its publisher still drains.
    """

    def __init__(self) -> None:
        self._current: dict[str, PushReceiver] = {}
        self._retired: dict[str, PushReceiver] = {}

    def __getitem__(self, name: str) -> PushReceiver:
        current = self._current
        return current[name] if name in current else self._retired[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._current.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._current

    def __iter__(self) -> Iterator[str]:
        return iter(self._current)

    def __len__(self) -> int:
        return len(self._current)

    def put(self, name: str, receiver: PushReceiver) -> None:
        self._retired = {k: v for k, v in self._retired.items() if k != name}
        self._current = {**self._current, name: receiver}

    def retire(self, name: str) -> None:
        receiver = self._current.get(name)
        if receiver is not None:
            self._retired = {**self._retired, name: receiver}
            self._current = {k: v for k, v in self._current.items() if k != name}

    def forget(self, name: str) -> None:
        self._retired = {k: v for k, v in self._retired.items() if k != name}


@dataclass(eq=False)
class Account:
    """One configured account's parts: what a reload starts, restarts or retires."""

    source: str
    settings: DocPlannerAccount | MyInvoisAccount
    spool: SpoolLog
    publisher: Publisher
    intake: list[Worker] = field(default_factory=list)
    clients: list[UpstreamClient] = field(default_factory=list)
    push: PushReceiver | None = None
    leases: dict[str, Lease] = field(default_factory=dict)
    on_close: list[Callable[[], None]] = field(default_factory=list)  # when retired

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.settings.name)


@dataclass
class Parts:
    """Everything the threads of one process share; built by :func:`build`, changed by a
    reload. The lists are replaced, never changed in place: other threads iterate them."""

    settings: Settings
    metrics: Metrics
    registry: CollectorRegistry
    redis: RedisClient
    sink: RedisSink
    spool_budget: SpoolBudget
    probe: RedisProbe  # Redis health and figures, read off the request path
    clock: Callable[[], float] = time.monotonic
    wall_clock: Callable[[], float] = time.time
    publishers: list[Publisher] = field(default_factory=list)
    push: PushMap = field(default_factory=PushMap)
    intake: list[Worker] = field(default_factory=list)
    clients: list[UpstreamClient] = field(default_factory=list)
    leases: dict[str, Lease] = field(default_factory=dict)
    accepting: threading.Event = field(default_factory=threading.Event)
    accounts: dict[tuple[str, str], Account] = field(default_factory=dict)
    lease_token: str | None = None
    lease_gauge: Gauge | None = None
    # Budgets by the upstream's unit of limiting (a MyInvois Client ID), shared by accounts
    # and kept across reloads.
    budgets: SharedBudgets = field(default_factory=SharedBudgets)

    def attach(self, account: Account) -> None:
        """Count ``account``'s parts in (its publisher once, when it is new)."""
        if account.publisher not in self.publishers:
            self.publishers = [*self.publishers, account.publisher]
        self.accounts = {**self.accounts, account.key: account}
        self.intake = [*self.intake, *account.intake]
        self.clients = [*self.clients, *account.clients]
        self.leases = {**self.leases, **account.leases}
        if account.push is not None:
            self.push.put(account.settings.name, account.push)

    def detach_intake(self, account: Account) -> None:
        """Count ``account``'s intake out (its spool and publisher stay)."""
        gone = {id(worker) for worker in account.intake}
        self.intake = [worker for worker in self.intake if id(worker) not in gone]
        self.clients = [client for client in self.clients if client not in account.clients]
        self.leases = {k: v for k, v in self.leases.items() if k not in account.leases}
        if account.push is not None:
            self.push.retire(account.settings.name)

    def detach(self, account: Account) -> None:
        """Count ``account`` out altogether (its intake already is)."""
        self.publishers = [p for p in self.publishers if p is not account.publisher]
        self.accounts = {k: v for k, v in self.accounts.items() if v is not account}
        if account.push is not None:
            self.push.forget(account.settings.name)
