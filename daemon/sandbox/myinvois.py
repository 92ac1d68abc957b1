"""A local MyInvois: the identity service's ``/connect/token`` and Get Notifications.

Follows the official SDK pages; each behaviour names its page in a comment (the login
pages are cited in :mod:`daemon.sandbox.identity`, the query rules in
:mod:`daemon.sandbox.query`). Where the documents are silent, the sandbox is stricter
than the client's assumptions, and says so.

Notifications are a per-taxpayer history (one per (client_id, TIN), see
:mod:`daemon.sandbox.tenancy`: an intermediary acts for many TINs), filtered by the date
**sent** (``dateFrom <= receivedDateTime <= dateTo``, inclusive) and by type, status and
language, sorted newest sent first, and paged. Some are sent hours after they were
created. New records can appear at any time, some with sent times in the past (late
arrivals), so pages shift while a client reads them. Tokens are bound at login to the
TIN they may read: a page request answers 403 to any other token, whatever headers it
carries. The identity service answers on the API's port, or on a port of its own when
``identity_port`` is given. The notifications and login limits are per Client ID across
all its taxpayers, each a sliding 60 s of real time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, Self

from daemon.sandbox.clock import SandboxClock
from daemon.sandbox.faults import RETRY_AFTER_SECONDS
from daemon.sandbox.identity import TOKEN_PATH, IdentityServer, login
from daemon.sandbox.oauth import TokenStore, bearer
from daemon.sandbox.query import MAX_PAGE_SIZE, BadArgumentError, Query
from daemon.sandbox.records import RecordFactory, record_id
from daemon.sandbox.server import Request, Response, SandboxServer, json_body, waf_response
from daemon.sandbox.standard import (
    error,
    limited,
    rate_headers,
    refusal,
    server_error,
    with_headers,
)
from daemon.sandbox.tenancy import MyInvoisClient, Taxpayer, Tenancy

NOTIFICATIONS_PATH = "/api/v1.0/notifications/taxpayer"
SENT_LATE_FRACTION = 0.2  # share of generated notifications sent hours after creation
SENT_LATE_HOURS = (1.0, 6.0)


class MyInvoisSandbox(SandboxServer):
    """Taxpayer notification history with paging, filters, rate limit and faults."""

    def __init__(
        self,
        clients: Iterable[MyInvoisClient] = (),
        *,
        clock: SandboxClock | None = None,
        latency: float = 0.0,
        requests_per_minute: int = 12,
        logins_per_minute: int = 12,
        token_ttl: float = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        identity_port: int | None = None,
        max_page_size: int = MAX_PAGE_SIZE,
        seed: int = 0,
    ) -> None:
        super().__init__(clock=clock, latency=latency, host=host, port=port, seed=seed)
        self.requests_per_minute = requests_per_minute
        self.token_ttl = token_ttl
        self.max_page_size = max_page_size  # "defined by e-Invoice system administrators"
        self.tokens = TokenStore()
        self.factory = RecordFactory(seed)
        self._rng = random.Random(seed)
        self.tenancy = Tenancy(requests_per_minute, logins_per_minute)
        self.identity: IdentityServer | None = None
        if identity_port is not None:
            self.identity = IdentityServer(
                self._login, clock=self.clock, host=host, port=identity_port
            )
        for client in clients:
            self.add_client(client)

    # -- lifecycle: the identity service, when separate, starts and stops with the API ----

    def start(self) -> Self:
        super().start()
        if self.identity is not None:
            try:
                self.identity.start()
            except OSError:
                super().stop()
                raise
        return self

    def stop(self) -> None:
        if self.identity is not None:
            self.identity.stop()
        super().stop()

    @property
    def identity_url(self) -> str:
        """Base URL of the identity service (the token endpoint's host)."""
        return self.identity.base_url if self.identity is not None else self.base_url

    # -- test and demo API -------------------------------------------------------------

    def add_client(self, client: MyInvoisClient) -> None:
        """A taxpayer client, or one more taxpayer (TIN) of an intermediary client."""
        with self._lock:
            self.tenancy.add(client)

    def tin(self, client_id: str) -> str:
        """The TIN whose notifications this (single-taxpayer) client reads."""
        return self._taxpayer(client_id).tin

    def _taxpayer(self, client_id: str, tin: str | None = None) -> Taxpayer:
        with self._lock:
            return self.tenancy.taxpayer(client_id, tin)

    def logins(self, client_id: str, tin: str | None = None) -> int:
        """Tokens issued to this client for this TIN (None: plain intermediary logins)."""
        with self._lock:
            return self.tenancy.login_count[(client_id, tin)]

    def limited_at(self, client_id: str) -> list[float]:
        """Monotonic times of the 429s this client's page requests got."""
        with self._lock:
            return list(self.tenancy.clients[client_id].limited)

    def polled(self, client_id: str, tin: str | None = None) -> list[float]:
        """Monotonic times of the pages this taxpayer was served (200 answers)."""
        with self._lock:
            return list(self.tenancy.taxpayer(client_id, tin).polled)

    def add_notifications(
        self,
        client_id: str,
        count: int,
        start: datetime | None = None,
        end: datetime | None = None,
        sent_late_fraction: float = SENT_LATE_FRACTION,
        tin: str | None = None,
    ) -> list[dict[str, Any]]:
        """``count`` records **sent** at random times in ``[start, end]``, visible at once.

        ``sent_late_fraction`` of them were created 1 to 6 hours before they were sent, the
        rest a few seconds before. ``end`` defaults to sandbox now and ``start`` to three
        days before ``end``.
        """
        end_ts = end.timestamp() if end else self.clock.now()
        start_ts = start.timestamp() if start else end_ts - 3 * 86400
        if start_ts > end_ts:
            raise ValueError("start is after end")
        low, high = (hours * 3600 for hours in SENT_LATE_HOURS)
        with self._lock:
            sent = sorted(self._rng.uniform(start_ts, end_ts) for _ in range(count))
            delays = [
                self._rng.uniform(low, high)
                if self._rng.random() < sent_late_fraction
                else self._rng.randrange(0, 5)
                for _ in sent
            ]
        stamps = [(stamp - delay, stamp) for stamp, delay in zip(sent, delays, strict=True)]
        return self._add(self._taxpayer(client_id, tin), stamps)

    def add_notifications_at(
        self,
        client_id: str,
        times: Sequence[datetime],
        created_before: float = 0.0,
        tin: str | None = None,
    ) -> list[dict[str, Any]]:
        """One record per given sent time (e.g. late arrivals in the past).

        Each was created ``created_before`` seconds before it was sent.
        """
        stamps = [stamp.timestamp() for stamp in times]
        taxpayer = self._taxpayer(client_id, tin)
        return self._add(taxpayer, [(stamp - created_before, stamp) for stamp in stamps])

    def _add(
        self, taxpayer: Taxpayer, stamps: Sequence[tuple[float, float]]
    ) -> list[dict[str, Any]]:
        receiver = f"{taxpayer.client.client_id.upper()} SDN BHD"
        added = []
        for created, sent in stamps:
            when = float(math.floor(sent))
            record = self.factory.make(float(math.floor(created)), receiver, taxpayer.tin, when)
            added.append((when, record))
        with self._lock:
            taxpayer.records.extend(added)
        return [record for _, record in added]

    def add_raw(
        self, client_id: str, items: Sequence[Any], sent: datetime, tin: str | None = None
    ) -> None:
        """Serve these exact values (valid or not: poison items) as sent at ``sent``."""
        with self._lock:
            self._taxpayer(client_id, tin).records.extend((sent.timestamp(), i) for i in items)

    def notifications(self, client_id: str, tin: str | None = None) -> list[dict[str, Any]]:
        """Every record of this taxpayer, in the order they were added."""
        taxpayer = self._taxpayer(client_id, tin)
        with self._lock:
            return [record for _, record in taxpayer.records]

    def handed_out(self, client_id: str, tin: str | None = None) -> set[str]:
        """The notificationIds served in any page so far (including truncated pages)."""
        taxpayer = self._taxpayer(client_id, tin)
        with self._lock:
            return set(taxpayer.handed_out)

    def malformed_served(self, client_id: str, tin: str | None = None) -> list[dict[str, Any]]:
        """Invalid items injected by the ``malformed`` fault (records without notificationId)."""
        taxpayer = self._taxpayer(client_id, tin)
        with self._lock:
            return list(taxpayer.malformed)

    def expire_tokens(self) -> None:
        """Every issued token expires now (the next API call gets 401)."""
        self.tokens.expire_all()

    def start_arrivals(
        self,
        rate_per_second: float,
        late_fraction: float = 0.2,
        late_max_seconds: float = 300.0,
        client_id: str | None = None,
    ) -> threading.Event:
        """Keep adding records; ``late_fraction`` of them sent up to ``late_max_seconds`` ago.

        Late arrivals are SPEC §1 ("new notifications keep appearing for past timestamps
        while a window is paged"); the official page is silent: stricter than the client.
        """

        def arrive(count: int) -> None:
            with self._lock:
                every = list(self.tenancy.taxpayers.values())
            targets = [t for t in every if client_id is None or t.client.client_id == client_id]
            for target in targets:
                now = self.clock.now()
                with self._lock:
                    lateness = [
                        self._rng.uniform(1.0, late_max_seconds)
                        if self._rng.random() < late_fraction
                        else 0.0
                        for _ in range(count)
                    ]
                self._add(target, [(now - late, now - late) for late in lateness])

        return self.every(rate_per_second, arrive, "myinvois-arrivals")

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            if self.identity is not None:
                # Login pages: the token is issued by the identity service, not by the
                # service hosting the integration APIs (here: on its own port).
                return error(404, "NotFound", f"No endpoint {request.path}")
            if request.method != "POST":
                return error(405, "MethodNotAllowed", "Use POST")  # "POST /connect/token"
            return self._login(request)
        if request.path == NOTIFICATIONS_PATH:
            if request.method != "GET":
                # Get Notifications: "GET /api/v1.0/notifications/taxpayer".
                return error(405, "MethodNotAllowed", "Use GET")
            return self._notifications(request)
        return error(404, "NotFound", f"No endpoint {request.path}")  # standard 404 NotFound

    def _login(self, request: Request) -> Response:
        with self._lock:
            clients = self.tenancy.logins_table()
        return login(
            request, clients, self.tokens, self.token_ttl, self.clock.now(), self._login_gate
        )

    def _login_gate(self, client_id: str, tin: str | None) -> Response | None:
        with self._lock:
            return self.tenancy.login_gate(client_id, tin, time.monotonic())

    def _notifications(self, request: Request) -> Response:
        fault = self.draw_fault()
        kind = fault.kind if fault else None
        if kind == "reset":
            return Response(0, action="reset")
        token = bearer(request.header("Authorization"))
        client_id, state = self.tokens.check(token, self.clock.now())
        if client_id is None or token is None:
            # Standard errors: 401 when the token "was not provided or was malformed or the
            # token had expired".
            challenge = f'Bearer error="invalid_token", error_description="The token {state}"'
            return Response(401, headers={"WWW-Authenticate": challenge})
        subject = self.tokens.subject(token)
        with self._lock:
            client = self.tenancy.clients[client_id]
            found = self.tenancy.taxpayers.get((client_id, subject)) if subject else None
        if found is None:
            # Login pages: the token carries the taxpayer it represents; a token from a
            # plain intermediary login reading a taxpayer's notifications: docs silent;
            # stricter than the client (403 Forbidden, "does not have access to the data
            # requested"), whatever headers the GET carries.
            return error(403, "Forbidden", "The token does not represent this taxpayer")
        taxpayer = found
        if kind in ("400", "403"):
            return refusal(kind)
        mono = time.monotonic()
        with self._lock:
            # Limits are per Client ID across all its taxpayers (daemon.sandbox.tenancy).
            allowed = client.window.hit(mono)
            headers = rate_headers(client.window, mono)
            wait = math.ceil(client.window.retry_after(mono))
        if not allowed or kind == "429":
            with self._lock:
                client.limited.append(mono)
        if not allowed:
            return limited(headers, max(wait, 1))
        if kind == "429":  # an injected 429: the window is not really full, it resets soon
            return limited(headers, RETRY_AFTER_SECONDS)
        if kind in ("500", "503"):
            return with_headers(server_error(kind), headers)
        if kind == "waf":
            # Not documented by MyInvois: a WAF challenge in front of any API (SPEC §1).
            return waf_response()
        try:
            query = Query.parse(request.param, self.max_page_size)
        except BadArgumentError as exc:
            return with_headers(error(400, "BadArgument", str(exc), exc.target), headers)
        with self._lock:
            page, has_next = query.page(taxpayer.records)
            if kind == "reset_after":
                return Response(0, action="reset")
            taxpayer.handed_out.update(str(record_id(record)) for record in page)
            taxpayer.polled.append(mono)
            if kind == "malformed":
                bad = dict(self._rng.choice(page) if page else self.factory.make(0, "", "C0"))
                bad.pop("notificationId")
                bad["notificationDeliveryId"] = f"MALFORMED{len(taxpayer.malformed):06d}"
                taxpayer.malformed.append(bad)
                page = [*page, bad]
        # Get Notifications, response: {"result": [...], "metadata": {"hasNext": bool}}.
        body = json_body({"result": page, "metadata": {"hasNext": has_next}})
        action: Literal["send", "truncate"] = "truncate" if kind == "truncate" else "send"
        return Response(200, body, "application/json; charset=utf-8", headers, action=action)
