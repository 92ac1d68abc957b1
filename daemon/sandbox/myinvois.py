"""A local MyInvois: ``/connect/token`` and ``GET /api/v1.0/notifications/taxpayer`` (SPEC §1).

Notifications are a per-client history, filtered by ``dateFrom <= creationDateTime <=
dateTo`` (inclusive) and by type, status and language, sorted newest first
(creationDateTime, then notificationId, both descending) and paged. New records can
appear at any time, some with creation times in the past (late arrivals), so pages
shift while a client reads them -- the case the daemon's overlap and de-duplication
exist for. The request budget is a sliding 60 s of real (monotonic) time.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from daemon.sandbox.clock import SandboxClock, iso_utc
from daemon.sandbox.faults import RETRY_AFTER_SECONDS
from daemon.sandbox.oauth import TokenStore, bearer, myinvois_token
from daemon.sandbox.query import BadArgumentError, Query
from daemon.sandbox.ratelimit import SlidingWindow
from daemon.sandbox.records import RecordFactory
from daemon.sandbox.server import Request, Response, SandboxServer, json_body, waf_response

TOKEN_PATH = "/connect/token"  # noqa: S105 - a URL path, not a secret
NOTIFICATIONS_PATH = "/api/v1.0/notifications/taxpayer"
SCOPE = "InvoicingAPI"


@dataclass(frozen=True)
class MyInvoisClient:
    """A taxpayer client, or an intermediary when ``on_behalf_of`` (a TIN) is set."""

    client_id: str
    client_secret: str
    on_behalf_of: str | None = None


@dataclass
class _Taxpayer:
    client: MyInvoisClient
    window: SlidingWindow
    tin: str
    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    handed_out: set[str] = field(default_factory=set)
    malformed: list[dict[str, Any]] = field(default_factory=list)


def _error(status: int, code: str, message: str, target: str | None = None) -> Response:
    body = {"error": {"code": code, "message": message, "target": target, "details": None}}
    return Response(status, json_body(body), "application/json; charset=utf-8")


class MyInvoisSandbox(SandboxServer):
    """Taxpayer notification history with paging, filters, rate limit and faults."""

    def __init__(
        self,
        clients: Iterable[MyInvoisClient] = (),
        *,
        clock: SandboxClock | None = None,
        latency: float = 0.0,
        requests_per_minute: int = 12,
        token_ttl: float = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(clock=clock, latency=latency, host=host, port=port, seed=seed)
        self.requests_per_minute = requests_per_minute
        self.token_ttl = token_ttl
        self.tokens = TokenStore()
        self.factory = RecordFactory(seed)
        self._rng = random.Random(seed)
        self._taxpayers: dict[str, _Taxpayer] = {}
        for client in clients:
            self.add_client(client)

    # -- test and demo API -------------------------------------------------------------

    def add_client(self, client: MyInvoisClient) -> None:
        with self._lock:
            tin = client.on_behalf_of or f"C{20000000000 + len(self._taxpayers) * 7919}"
            window = SlidingWindow(self.requests_per_minute, 60.0)
            self._taxpayers[client.client_id] = _Taxpayer(client, window, tin)

    def _taxpayer(self, client_id: str) -> _Taxpayer:
        try:
            return self._taxpayers[client_id]
        except KeyError:
            raise KeyError(f"no MyInvois sandbox client {client_id!r}") from None

    def add_notifications(
        self,
        client_id: str,
        count: int,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """``count`` records created at random times in ``[start, end]``, visible at once.

        ``end`` defaults to sandbox now and ``start`` to three days before ``end``.
        """
        end_ts = end.timestamp() if end else self.clock.now()
        start_ts = start.timestamp() if start else end_ts - 3 * 86400
        if start_ts > end_ts:
            raise ValueError("start is after end")
        with self._lock:
            stamps = sorted(self._rng.uniform(start_ts, end_ts) for _ in range(count))
        return self._add(client_id, stamps)

    def add_notifications_at(
        self, client_id: str, times: Sequence[datetime]
    ) -> list[dict[str, Any]]:
        """One record per given creation time (e.g. late arrivals in the past)."""
        return self._add(client_id, [stamp.timestamp() for stamp in times])

    def _add(self, client_id: str, stamps: Sequence[float]) -> list[dict[str, Any]]:
        taxpayer = self._taxpayer(client_id)
        receiver = f"{taxpayer.client.client_id.upper()} SDN BHD"
        added = []
        for stamp in stamps:
            whole = float(math.floor(stamp))
            added.append((whole, self.factory.make(whole, receiver, taxpayer.tin)))
        with self._lock:
            taxpayer.records.extend(added)
        return [record for _, record in added]

    def notifications(self, client_id: str) -> list[dict[str, Any]]:
        """Every record of this client, in the order they were added."""
        with self._lock:
            return [record for _, record in self._taxpayer(client_id).records]

    def handed_out(self, client_id: str) -> set[str]:
        """The notificationIds served in any page so far (including truncated pages)."""
        with self._lock:
            return set(self._taxpayer(client_id).handed_out)

    def malformed_served(self, client_id: str) -> list[dict[str, Any]]:
        """Invalid items injected by the ``malformed`` fault (records without notificationId)."""
        with self._lock:
            return list(self._taxpayer(client_id).malformed)

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
        """Keep adding records; ``late_fraction`` of them dated up to ``late_max_seconds`` ago."""

        def arrive(count: int) -> None:
            for target in [client_id] if client_id else list(self._taxpayers):
                now = self.clock.now()
                with self._lock:
                    lateness = [
                        self._rng.uniform(1.0, late_max_seconds)
                        if self._rng.random() < late_fraction
                        else 0.0
                        for _ in range(count)
                    ]
                self._add(target, [now - late for late in lateness])

        return self.every(rate_per_second, arrive, "myinvois-arrivals")

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return _error(405, "MethodNotAllowed", "Use POST")
            return self._token(request)
        if request.path == NOTIFICATIONS_PATH:
            if request.method != "GET":
                return _error(405, "MethodNotAllowed", "Use GET")
            return self._notifications(request)
        return _error(404, "NotFound", f"No endpoint {request.path}")

    def _token(self, request: Request) -> Response:
        with self._lock:
            known = {cid: payer.client.client_secret for cid, payer in self._taxpayers.items()}
        return myinvois_token(request, known, self.tokens, self.token_ttl, self.clock.now())

    def _rate_headers(self, taxpayer: _Taxpayer, now: float) -> dict[str, str]:
        reset = time.time() + (taxpayer.window.reset_at(now) - now)
        return {
            "X-Rate-Limit-Limit": str(taxpayer.window.limit),
            "X-Rate-Limit-Remaining": str(taxpayer.window.remaining(now)),
            "X-Rate-Limit-Reset": iso_utc(math.ceil(reset)),
        }

    def _notifications(self, request: Request) -> Response:
        fault = self.draw_fault()
        kind = fault.kind if fault else None
        if kind == "reset":
            return Response(0, action="reset")
        token = bearer(request.header("Authorization"))
        client_id, state = self.tokens.check(token, self.clock.now())
        if client_id is None:
            challenge = f'Bearer error="invalid_token", error_description="The token {state}"'
            return Response(401, headers={"WWW-Authenticate": challenge})
        taxpayer = self._taxpayers[client_id]
        behalf = request.header("onbehalfof")
        if behalf != taxpayer.client.on_behalf_of:
            target = "onbehalfof"
            return _error(403, "Forbidden", "Not authorized to act on behalf of TIN", target)
        mono = time.monotonic()
        with self._lock:
            allowed = taxpayer.window.hit(mono)
            headers = self._rate_headers(taxpayer, mono)
            wait = math.ceil(taxpayer.window.retry_after(mono))
        if not allowed or kind == "429":
            response = _error(429, "TooManyRequests", "Rate limit exceeded")
            retry = str(max(wait, 1) if not allowed else RETRY_AFTER_SECONDS)
            if allowed:  # an injected 429: the window is not really full, it resets soon
                reset_at = math.ceil(time.time()) + RETRY_AFTER_SECONDS
                headers = {**headers, "X-Rate-Limit-Reset": iso_utc(reset_at)}
            response.headers = {**headers, "X-Rate-Limit-Remaining": "0", "Retry-After": retry}
            return response
        if kind in ("500", "503"):
            code = "InternalServerError" if kind == "500" else "ServiceUnavailable"
            return _with(_error(int(kind), code, "Please try again later"), headers)
        if kind == "waf":
            return waf_response()
        try:
            query = Query.parse(request.param)
        except BadArgumentError as exc:
            return _with(_error(400, "BadArgument", str(exc), exc.target), headers)
        with self._lock:
            page, has_next = query.page(taxpayer.records)
            if kind == "reset_after":
                return Response(0, action="reset")
            taxpayer.handed_out.update(record["notificationId"] for record in page)
            if kind == "malformed":
                bad = dict(self._rng.choice(page) if page else self.factory.make(0, "", "C0"))
                bad.pop("notificationId")
                bad["notificationDeliveryId"] = f"MALFORMED{len(taxpayer.malformed):06d}"
                taxpayer.malformed.append(bad)
                page = [*page, bad]
        body = json_body({"result": page, "metadata": {"hasNext": has_next}})
        action: Literal["send", "truncate"] = "truncate" if kind == "truncate" else "send"
        return Response(200, body, "application/json; charset=utf-8", headers, action=action)


def _with(response: Response, headers: dict[str, str]) -> Response:
    response.headers = {**headers, **response.headers}
    return response
