"""A local DocPlanner Integrations API: OAuth, destructive FIFO pulls, release, push (SPEC §1).

Per client: a FIFO queue (each entry remembers its sandbox enqueue time and expires
after 72 h), a sliding-hour GET budget reported in ``X-RateLimit-*`` headers, and the
bookkeeping tests need to prove nothing was lost: :meth:`handed_out` (popped and sent,
whole or truncated, plus injected malformed items), :meth:`lost_in_flight` (popped,
then deliberately never sent) and :meth:`expired`. Every popped notification is in
exactly one of the first two.

Sources: the official OpenAPI "Docplanner Integrations API" 1.14.0 ([OAS]; seed notes in
/work/shared/upstream/docplanner-api-notes.md) and the guide at
https://integrations.docplanner.com/guide/ ([G]). Each behaviour below names its source.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Iterable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

from daemon.sandbox.clock import SandboxClock
from daemon.sandbox.docplanner_wire import (
    API_PREFIX,
    ERROR_TYPE,
    MEDIA_TYPE,
    PUBLIC_IPS_PATH,
    RELEASE_INTERVAL,
    TOKEN_PATH,
    Account,
    DocPlannerClient,
    error,
    expire,
    fault_response,
    pull_response,
    rate_headers,
)
from daemon.sandbox.events import NotificationFactory, malformed
from daemon.sandbox.oauth import TokenStore, bearer, docplanner_token
from daemon.sandbox.push import PushEmitter
from daemon.sandbox.ratelimit import SlidingWindow
from daemon.sandbox.server import Request, Response, SandboxServer, json_body

__all__ = ["DocPlannerClient", "DocPlannerSandbox"]


class DocPlannerSandbox(SandboxServer):
    """``/oauth/v2/token`` and ``/api/v3/integration/notifications[/multiple|/release]``."""

    def __init__(
        self,
        clients: Iterable[DocPlannerClient] = (),
        *,
        clock: SandboxClock | None = None,
        latency: float = 0.0,
        requests_per_hour: int = 8000,
        token_ttl: float = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        seed: int = 0,
        preencode: bool = False,
        push_retries: str = "once",
        push_retry_scale: float = 1.0,
        public_ips: Iterable[str] = ("127.0.0.1",),
    ) -> None:
        super().__init__(clock=clock, latency=latency, host=host, port=port, seed=seed)
        self.public_ips = list(public_ips)  # served at PUBLIC_IPS_PATH; tests may change it
        self.requests_per_hour = requests_per_hour
        self.api_prefix = API_PREFIX  # tests move it to simulate a routing change upstream
        # [OAS] pull body shape (seed: docplanner-api-notes.md §1): benchmarks encode each
        # notification once, when queued, so serving a pull costs almost nothing.
        self.preencode = preencode
        self.token_ttl = token_ttl
        self.tokens = TokenStore()
        self.factory = NotificationFactory(seed)
        self.release_calls: list[tuple[str, int]] = []
        self._accounts: dict[str, Account] = {}
        # "once" [OAS] or "guide" [G] retries after 1, 5, 15 min: see daemon.sandbox.push_retry.
        self.pusher = PushEmitter(push_retries, push_retry_scale)
        self._malformed_serial = 0
        self._rng = random.Random(seed)
        for client in clients:
            self.add_client(client)

    def stop(self) -> None:
        self.pusher.retries.close()
        super().stop()

    # -- test and demo API -------------------------------------------------------------

    def add_client(self, client: DocPlannerClient) -> None:
        with self._lock:
            window = SlidingWindow(self.requests_per_hour, 3600.0)
            self._accounts[client.client_id] = Account(client, window)

    def set_enabled(self, client_id: str, enabled: bool = True) -> None:
        """Enable (or disable) a client, as DocPlanner's staff would."""
        with self._lock:
            account = self._account(client_id)
            account.client = replace(account.client, enabled=enabled)

    def _account(self, client_id: str) -> Account:
        try:
            return self._accounts[client_id]
        except KeyError:
            raise KeyError(f"no DocPlanner sandbox client {client_id!r}") from None

    def enqueue(self, client_id: str, count: int) -> list[dict[str, Any]]:
        """Generate ``count`` realistic notifications at the back of the client's queue."""
        notifications = self.factory.batch(count, self.clock.now())
        self.enqueue_raw(client_id, notifications)
        return notifications

    def enqueue_raw(self, client_id: str, notifications: Sequence[Any]) -> None:
        """Queue these exact objects (any JSON values, valid or not), stamped with sandbox now."""
        now = self.clock.now()
        encoded = [json_body(item) if self.preencode else None for item in notifications]
        with self._lock:
            queue = self._account(client_id).queue
            queue.extend((now, item, raw) for item, raw in zip(notifications, encoded, strict=True))

    def queue_length(self, client_id: str) -> int:
        with self._lock:
            account = self._account(client_id)
            expire(account, self.clock.now())
            return len(account.queue)

    def handed_out(self, client_id: str) -> list[Any]:
        """Everything sent by a pull, in FIFO order: whole, truncated or injected-malformed."""
        with self._lock:
            return list(self._account(client_id).handed_out)

    def lost_in_flight(self, client_id: str) -> list[Any]:
        """Popped, then the connection was dropped without a response (``reset_after``)."""
        with self._lock:
            return list(self._account(client_id).lost)

    def expired(self, client_id: str) -> list[Any]:
        """Deleted unread after 72 h of sandbox time."""
        with self._lock:
            return list(self._account(client_id).expired)

    def pushed(self, client_id: str) -> list[Any]:
        """Notifications whose push (or re-dispatch) got a 2xx."""
        return self.pusher.pushed(client_id)

    def failed_pushes(self, client_id: str) -> list[Any]:
        """Pushes that got no 2xx, waiting for the next successful release."""
        return self.pusher.failed(client_id)

    def expire_tokens(self) -> None:
        """Every issued token expires now (the next API call gets 401)."""
        self.tokens.expire_all()

    def push(
        self, client_id: str, notifications: Sequence[Any] | None = None, *, drain: bool = False
    ) -> list[int]:
        """POST notifications to the client's ``push_url``; returns each status (0 = no answer).

        ``None`` pushes what is queued: copies, as for a client in both modes, or, with
        ``drain=True``, popped from the queue as for a push-only client. Non-2xx pushes
        are remembered and re-sent after the next successful release.
        """
        with self._lock:
            account = self._account(client_id)
            url, token = account.client.push_url, account.client.push_token
            if url is None:
                raise ValueError(f"client {client_id!r} has no push_url")
            if notifications is None:
                expire(account, self.clock.now())
                notifications = [item for _, item, _ in account.queue]
                if drain:
                    account.queue.clear()
        header = account.client.push_header
        return self.pusher.send(client_id, url, token, list(notifications), header)

    def wait_redispatch(self, timeout: float = 5.0) -> bool:
        """Wait until re-dispatches triggered by release calls have finished."""
        return self.pusher.wait_idle(timeout)

    def start_arrivals(
        self, rate_per_second: float, client_id: str | None = None
    ) -> threading.Event:
        """Keep enqueueing new notifications (to one client or all); set the event to stop.

        New notifications of a client with a ``push_url`` are also pushed as they arrive.
        """

        def arrive(count: int) -> None:
            for target in [client_id] if client_id else list(self._accounts):
                fresh = self.enqueue(target, count)
                if self._accounts[target].client.push_url is not None:
                    self.push(target, fresh)

        return self.every(rate_per_second, arrive, "docplanner-arrivals")

    # -- HTTP --------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        if request.path == PUBLIC_IPS_PATH and request.method == "GET":
            return Response(200, json_body({"API": list(self.public_ips)}), "application/json")
        if request.path == TOKEN_PATH:
            if request.method != "POST":
                return error(405, "Method not allowed")
            return self._token(request)
        route = request.path.removeprefix(self.api_prefix)
        if request.path == route:
            return self._unknown_route()
        if route in ("/notifications", "/notifications/multiple"):
            if request.method != "GET":
                # [G] errors: "405 Method Not Allowed - The HTTP method used is not supported".
                return error(405, "Method not allowed")
            # [OAS] GET /notifications pops one, GET /notifications/multiple pops up to limit.
            return self._pull(request, multiple=route.endswith("/multiple"))
        if route == "/notifications/release":
            if request.method != "POST":
                return error(405, "Method not allowed")  # [G] errors, 405
            return self._release(request)  # [OAS] POST /notifications/release
        return self._unknown_route()

    def _unknown_route(self) -> Response:
        # [OAS] Error example: 404 {"errors": [], "message": "Object not found"}. An unknown
        # route (a wrong base URL, a moved API): docs silent; this answer has the empty
        # queue's media type and shape with another message, the strictest test of a client
        # that must read only "No notifications found" as an empty queue.
        return error(404, "Object not found")

    def _token(self, request: Request) -> Response:
        with self._lock:
            known = {cid: account.client.client_secret for cid, account in self._accounts.items()}
        return docplanner_token(request, known, self.tokens, self.token_ttl, self.clock.now())

    def _authenticate(self, request: Request) -> Account | Response:
        token = bearer(request.header("Authorization"))
        client_id, state = self.tokens.check(token, self.clock.now())
        if client_id is None:
            # [G] /guide/fundamentals/authorization.html: a bearer token from /oauth/v2/token.
            problem = "has expired" if state == "expired" else "is invalid"
            text = f"The access token provided {problem}."
            challenge = f'Bearer realm="Service", error="invalid_grant", error_description="{text}"'
            return error(401, text, {"WWW-Authenticate": challenge})
        return self._accounts[client_id]

    def _pull(self, request: Request, *, multiple: bool) -> Response:
        fault = self.draw_fault()
        kind = fault.kind if fault else None
        if kind == "reset":
            return Response(0, action="reset")
        account = self._authenticate(request)
        if isinstance(account, Response):
            return account
        now = self.clock.now()
        with self._lock:
            allowed = account.window.hit(now)
            headers = rate_headers(account.window, now)
        if not allowed:
            # [OAS]: "GET action limit is 8000 requests per hour"; 429 "until the request
            # reset time has been reached" (no Retry-After on pulls: X-RateLimit-Reset).
            return error(429, "Too many requests", headers)
        # Accept: application/vnd.docplanner+json ([OAS] media type); other Accept values:
        # docs silent; stricter than the client (406).
        if MEDIA_TYPE not in (request.header("Accept") or ""):
            return error(406, f"Not acceptable: send Accept: {MEDIA_TYPE}", headers)
        refused = fault_response(kind, headers, now)
        if refused is not None:
            return refused
        limit = 1
        if multiple and (raw := request.param("limit")) is not None:
            limit = int(raw) if raw.strip().isdigit() else 0
            if not 1 <= limit <= 100:
                # [OAS] limit "Can take value from 1 to 100"; out of range: docs silent;
                # stricter than the client (400).
                errors = {"limit": ["This value should be between 1 and 100."]}
                return error(400, "Invalid arguments", headers, errors=errors)
        popped: list[tuple[float, Any, bytes | None]] = []
        with self._lock:
            expire(account, now)
            if kind == "malformed" and not multiple:
                items, remaining = self._malformed(1), len(account.queue)
            elif not account.queue:
                # [OAS]: 404 "Notification queue is empty", {errors: [], message: ...}.
                return error(404, "No notifications found", headers)
            else:
                count = min(limit, len(account.queue))
                popped = [account.queue.popleft() for _ in range(count)]
                items = [item for _, item, _ in popped]
                remaining = len(account.queue)
                if kind == "reset_after":
                    account.lost.extend(items)
                    return Response(0, action="reset")
                if kind == "malformed":
                    for bad in self._malformed(1 + self._rng.randrange(2)):
                        items.insert(self._rng.randrange(len(items) + 1), bad)
            account.handed_out.extend(items)
        return pull_response(items, popped, remaining, headers, multiple=multiple, kind=kind)

    def _malformed(self, count: int) -> list[Any]:
        self._malformed_serial += count
        serials = range(self._malformed_serial - count + 1, self._malformed_serial + 1)
        return [malformed(serial, self.clock.now()) for serial in serials]

    def _release(self, request: Request) -> Response:
        account = self._authenticate(request)
        if isinstance(account, Response):
            return account
        accept = request.header("Accept") or ""
        if MEDIA_TYPE not in accept and ERROR_TYPE not in accept:
            response = error(406, f"Not acceptable: send Accept: {ERROR_TYPE}")
        elif account.client.push_url is None or not account.client.enabled:
            # [OAS] release 403: "API client is not using PUSH communication model or API
            # client is not enabled", body {"errors":[],"message":"You are not allowed ..."}.
            response = error(403, "You are not allowed to use this method")
        else:
            response = self._release_now(account)
        with self._lock:
            self.release_calls.append((account.client.client_id, response.status))
        return response

    def _release_now(self, account: Account) -> Response:
        now = self.clock.now()
        with self._lock:
            last = account.last_release
            if last is not None and now - last < RELEASE_INTERVAL:
                wait = str(max(1, math.ceil(last + RELEASE_INTERVAL - now)))
                message = "You have reached the limit of 1 request per hour"
                # [OAS] release 429 with Retry-After: "Time (in seconds) until the next call".
                return error(429, message, {"Retry-After": wait})
            account.last_release = now
            pending = self.pusher.take_failed(account.client.client_id)
        client = account.client
        url = client.push_url or ""
        send = partial(
            self.pusher.redispatch,
            client.client_id,
            url,
            client.push_token,
            pending,
            client.push_header,
        )
        return Response(204, after=send)  # [OAS] release: 204 "Successfully queued notifications"
