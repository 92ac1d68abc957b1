"""The WSGI apps behind the HTTP server (SPEC §6): push, /metrics, /healthz, /readyz.

:class:`Router` dispatches by path. ``/metrics`` is prometheus_client's own WSGI app
(OpenMetrics negotiation, gzip). ``/push/docplanner/<account>`` hands the body to the
account's :class:`PushEndpoint` (``daemon.sources.docplanner.push.PushReceiver``).
The header-time checks (``daemon.server.gate``) run on the server's I/O thread before any
body byte is read and call :meth:`Router.authorized`; the router checks the token again
itself. The token is read from the account's ``push_header`` (``header_of``). An unknown
account, a pull-only account, a wrong and a missing token all get the same 401, byte for
byte and in the same time, so account names cannot be probed. ``HEAD`` is answered with
the GET's headers, its ``Content-Length`` included, and no body.

The apps never raise into the server: an unexpected error is a ``http.app_error`` log
event (with its traceback, in JSON) and a 500 JSON body without one. They never set a
``Connection`` header: waitress owns hop-by-hop headers (and answers 500 if an app sets one).
"""

from __future__ import annotations

import hmac
import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any, Protocol

import structlog
from prometheus_client import CollectorRegistry, make_wsgi_app

log = structlog.get_logger("daemon.server")

MAX_PUSH_BYTES = 1024 * 1024  # SPEC §6: a push body is at most 1 MiB
PUSH_PREFIX = "/push/docplanner/"
UNAUTHORIZED = "missing or wrong push token"  # one message for every auth failure
DEFAULT_HEADER = "X_DRAINER_TOKEN"  # waitress's key of the default push_header
ROUTES = ("push", "metrics", "healthz", "readyz", "other")

Environ = dict[str, Any]
ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
StartResponse = Callable[..., Any]
Readiness = Callable[[], tuple[bool, dict[str, Any]]]

_REASONS = {
    200: "OK",
    204: "No Content",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    403: "Forbidden",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class _Decoy:
    """Stands in for an unknown account: the same work as a real account's refusal.

    ``hmac.compare_digest(a, b)`` runs over ``len(b)``: the given token goes first and a
    stored one second, as in ``PushReceiver.authorized``, so a long token costs the same
    whichever account it names (issue 29: the arguments were swapped here).
    """

    def __init__(self) -> None:
        self._token = b"\x00" * 32
        self._lock = threading.Lock()
        self._refused = 0
        self._last = 0.0

    def authorized(self, token: str | None) -> bool:
        given = (token or "").encode("utf-8", errors="replace")
        hmac.compare_digest(given, self._token)
        with self._lock:  # PushReceiver counts its refusals under a lock too
            self._refused += 1
            self._last = time.monotonic()
        return False


class PushEndpoint(Protocol):
    """One push account: ``PushReceiver`` in ``daemon.sources.docplanner.push``."""

    def authorized(self, token: str | None) -> bool:
        """Whether ``token`` is this account's push token (constant time)."""
        ...

    def handle(self, token: str | None, body: bytes) -> tuple[int, dict[str, Any] | None]:
        """Return the HTTP status and an optional JSON body."""
        ...


def route_of(path: str) -> str:
    """The bounded ``route`` label of a request path."""
    if path.startswith(PUSH_PREFIX):
        return "push"
    return path.strip("/") if path in ("/metrics", "/healthz", "/readyz") else "other"


def status_line(status: int) -> str:
    return f"{status} {_REASONS.get(status, 'Unknown')}"


def json_bytes(document: Mapping[str, Any]) -> bytes:
    return json.dumps(document).encode()


class Router:
    """The WSGI app of one listener; ``push_only`` serves the push route alone (404 else)."""

    def __init__(
        self,
        registry: CollectorRegistry,
        alive: Callable[[], bool],
        readiness: Readiness,
        push: Mapping[str, PushEndpoint],
        push_only: bool = False,
        header_of: Callable[[str], str] = lambda account: DEFAULT_HEADER,
    ) -> None:
        self.alive = alive
        self.header_of = header_of  # account -> waitress key of its push_header
        self._decoy = _Decoy()
        self.readiness = readiness
        self.push = push
        self.push_only = push_only
        self.metrics_app = make_wsgi_app(registry)

    def token(self, account: str, headers: Mapping[str, str], prefix: str = "") -> str | None:
        """The push token as sent in ``account``'s header (``prefix`` "HTTP_" in an environ)."""
        return headers.get(prefix + self.header_of(account))

    def authorized(self, account: str, token: str | None) -> bool:
        """Whether ``token`` opens the push ``account`` (unknown: never, in the same time)."""
        endpoint = self.push.get(account)
        return (endpoint or self._decoy).authorized(token)

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            if environ.get("REQUEST_METHOD") == "HEAD":
                return self._head(environ, start_response)
            body = self._dispatch(environ, start_response)
            return body
        except Exception:
            log.error("http.app_error", route=route_of(environ.get("PATH_INFO", "")), exc_info=True)
            exc_info = sys.exc_info()
            return _json(start_response, 500, {"error": "internal error"}, exc_info)  # type: ignore[arg-type]

    def _head(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        """The headers of the GET, with its Content-Length, and no body (RFC 9110 §9.3.2).

        Without a length waitress would frame the empty answer as chunked and send a
        terminating chunk a HEAD response may not carry; a kept-open connection would read
        it as the start of the next response.
        """
        seen: list[tuple[str, list[tuple[str, str]]]] = []
        get = {**environ, "REQUEST_METHOD": "GET"}
        parts = self._dispatch(
            get, lambda status, headers, exc_info=None: seen.append((status, headers))
        )
        try:
            length = sum(len(part) for part in parts)
        finally:
            close = getattr(parts, "close", None)
            if close is not None:
                close()
        status, headers = seen[-1]
        headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
        start_response(status, [*headers, ("Content-Length", str(length))])
        return []

    def _dispatch(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ["REQUEST_METHOD"]
        if path.startswith(PUSH_PREFIX):
            return self._push(environ, start_response, path, method)
        if self.push_only:
            return _json(start_response, 404, {"error": "not found"})
        if path == "/metrics":
            return self.metrics_app(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            ok = self.alive()
            return _json(start_response, 200 if ok else 503, {"status": "ok" if ok else "stalled"})
        if path == "/readyz":
            ready, detail = self.readiness()
            return _json(start_response, 200 if ready else 503, {"ready": ready, **detail})
        return _json(start_response, 404, {"error": "not found"})

    def _push(
        self, environ: Environ, start_response: StartResponse, path: str, method: str
    ) -> Iterable[bytes]:
        account = path.removeprefix(PUSH_PREFIX).strip("/")
        token = self.token(account, environ, prefix="HTTP_")
        if not self.authorized(account, token):  # the gate already did; defence in depth
            return _json(start_response, 401, {"error": UNAUTHORIZED})
        if method != "POST":
            return _json(start_response, 405, {"error": "POST only"})
        length = int(environ.get("CONTENT_LENGTH") or 0)  # waitress sets it for chunked too
        if length > MAX_PUSH_BYTES:  # the parser already refused it; defence in depth
            return _json(start_response, 413, {"error": f"body over {MAX_PUSH_BYTES} bytes"})
        body = environ["wsgi.input"].read(length) if length else b""
        endpoint = self.push[account]
        status, document = endpoint.handle(token, body)
        return _json(start_response, status, document)


def _json(
    start_response: StartResponse,
    status: int,
    document: Mapping[str, Any] | None,
    exc_info: ExcInfo | None = None,
) -> list[bytes]:
    body = b"" if document is None or status == 204 else json_bytes(document)
    headers = [] if status == 204 else [("Content-Length", str(len(body)))]
    if body:
        headers.append(("Content-Type", "application/json"))
    start_response(status_line(status), headers, exc_info)
    return [body]
