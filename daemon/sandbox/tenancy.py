"""Who the MyInvois sandbox knows: clients (taxpayer or intermediary) and their taxpayers.

A taxpayer is keyed by (client_id, TIN): an intermediary's one Client ID acts for many
taxpayers ("Login as Intermediary System",
https://sdk.myinvois.hasil.gov.my/api/08-login-as-intermediary-system/: the ``onbehalfof``
header names the taxpayer the intermediary represents). Rate limits are kept per Client
ID across all its taxpayers: the limit table counts "RPM / Client Id" and login is
"12 RPM / Client ID" (https://sdk.myinvois.hasil.gov.my/integration-practices/), and
``X-Rate-Limit-*`` count requests "for this client"
(https://sdk.myinvois.hasil.gov.my/standard-header-parameters/). Both windows slide over
60 s; the documents do not say how the minute is counted, and a sliding window is the
stricter reading.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from daemon.sandbox.identity import Login
from daemon.sandbox.ratelimit import SlidingWindow
from daemon.sandbox.server import Response
from daemon.sandbox.standard import limited, rate_headers


@dataclass(frozen=True)
class MyInvoisClient:
    """A taxpayer client, or an intermediary acting for the TIN ``on_behalf_of``.

    An intermediary with many taxpayers is one entry per TIN, all with the same
    ``client_id`` and secret.
    """

    client_id: str
    client_secret: str
    on_behalf_of: str | None = None


@dataclass
class Taxpayer:
    client: MyInvoisClient
    tin: str
    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (sent, record)
    handed_out: set[str] = field(default_factory=set)
    malformed: list[dict[str, Any]] = field(default_factory=list)
    polled: list[float] = field(default_factory=list)  # monotonic times of answered pages


@dataclass
class ClientState:
    """One Client ID: its secret, its taxpayers and its two per-client rate windows."""

    secret: str
    intermediary: bool
    window: SlidingWindow  # Get Notifications, per Client ID
    logins: SlidingWindow  # /connect/token, per Client ID
    tins: list[str] = field(default_factory=list)
    limited: list[float] = field(default_factory=list)  # monotonic times of its 429 pages


class Tenancy:
    """Clients and taxpayers; not thread-safe on its own (the simulator holds its lock)."""

    def __init__(self, requests_per_minute: int, logins_per_minute: int) -> None:
        self.requests_per_minute = requests_per_minute
        self.logins_per_minute = logins_per_minute
        self.clients: dict[str, ClientState] = {}
        self.taxpayers: dict[tuple[str, str], Taxpayer] = {}
        self.login_count: Counter[tuple[str, str | None]] = Counter()  # (client, TIN) -> logins

    def add(self, client: MyInvoisClient) -> Taxpayer:
        state = self.clients.get(client.client_id)
        intermediary = client.on_behalf_of is not None
        if state is None:
            state = self.clients[client.client_id] = ClientState(
                client.client_secret,
                intermediary,
                SlidingWindow(self.requests_per_minute, 60.0),
                SlidingWindow(self.logins_per_minute, 60.0),
            )
        elif state.secret != client.client_secret or not (intermediary and state.intermediary):
            raise ValueError(f"client {client.client_id!r}: only an intermediary has many TINs")
        tin = client.on_behalf_of or f"C{20000000000 + len(self.taxpayers) * 7919}"
        state.tins.append(tin)
        taxpayer = self.taxpayers[(client.client_id, tin)] = Taxpayer(client, tin)
        return taxpayer

    def taxpayer(self, client_id: str, tin: str | None = None) -> Taxpayer:
        """One taxpayer; ``tin`` may be left out when the client has only one."""
        state = self.clients.get(client_id)
        if state is None:
            raise KeyError(f"no MyInvois sandbox client {client_id!r}")
        if tin is None:
            if len(state.tins) != 1:
                raise KeyError(f"client {client_id!r} acts for {len(state.tins)} TINs: name one")
            tin = state.tins[0]
        try:
            return self.taxpayers[(client_id, tin)]
        except KeyError:
            raise KeyError(f"client {client_id!r} does not act for {tin!r}") from None

    def logins_table(self) -> dict[str, Login]:
        return {
            cid: Login(state.secret, frozenset(state.tins), state.intermediary)
            for cid, state in self.clients.items()
        }

    def login_gate(self, client_id: str, tin: str | None, now: float) -> Response | None:
        """The login limit, per Client ID across its taxpayers: None (granted, counted) or a
        429 with Retry-After and X-Rate-Limit-* (standard error response and headers)."""
        window = self.clients[client_id].logins
        if window.hit(now):
            self.login_count[(client_id, tin)] += 1
            return None
        wait = math.ceil(window.retry_after(now))
        return limited(rate_headers(window, now), max(wait, 1))
