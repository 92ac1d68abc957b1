"""The daemon's HTTP server (SPEC §6): /metrics, /healthz, /readyz and the push receiver.

A ``ThreadingHTTPServer`` (one thread per connection, a socket timeout so a slow client
cannot pin a thread). Push requests are checked for size here (413 before reading a
body over 1 MiB) and handed to the account's :class:`PushEndpoint`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

MAX_PUSH_BYTES = 1024 * 1024
REQUEST_TIMEOUT = 10.0
PUSH_PREFIX = "/push/docplanner/"


class PushEndpoint(Protocol):
    def handle(self, token: str | None, body: bytes) -> tuple[int, dict[str, Any] | None]:
        """Return the HTTP status and an optional JSON body."""
        ...


Readiness = Callable[[], tuple[bool, dict[str, Any]]]


class DrainerHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # DocPlanner may open many push connections at once

    def __init__(
        self,
        address: tuple[str, int],
        registry: CollectorRegistry,
        alive: Callable[[], bool],
        readiness: Readiness,
        push: Mapping[str, PushEndpoint],
    ) -> None:
        self.registry = registry
        self.alive = alive
        self.readiness = readiness
        self.push = push
        super().__init__(address, _Handler)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    server: DrainerHTTPServer
    timeout = REQUEST_TIMEOUT
    protocol_version = "HTTP/1.1"
    server_version = "notification-drainer"

    def log_message(self, format: str, *args: Any) -> None:
        """Access logs are not wanted: metrics count requests."""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.server.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            alive = self.server.alive()
            self._json(200 if alive else 503, {"status": "ok" if alive else "stalled"})
        elif path == "/readyz":
            ready, detail = self.server.readiness()
            self._json(200 if ready else 503, {"ready": ready, **detail})
        else:
            self._json(404, {"error": "not found"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if not path.startswith(PUSH_PREFIX):
            self._json(404, {"error": "not found"})
            return
        endpoint = self.server.push.get(path.removeprefix(PUSH_PREFIX).strip("/"))
        if endpoint is None:
            self._json(404, {"error": "unknown push account"})
            return
        length_header = self.headers.get("Content-Length")
        if length_header is None or not length_header.isdigit():
            self.close_connection = True
            self._json(411, {"error": "Content-Length required"})
            return
        length = int(length_header)
        if length > MAX_PUSH_BYTES:
            self.close_connection = True
            self._json(413, {"error": f"body larger than {MAX_PUSH_BYTES} bytes"})
            return
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self.close_connection = True
            return
        if len(body) < length:
            self.close_connection = True
            return
        status, document = endpoint.handle(self.headers.get("X-Drainer-Token"), body)
        if document is None:
            self._send(status, b"", None)
        else:
            self._json(status, document)

    def _json(self, status: int, document: dict[str, Any]) -> None:
        self._send(status, json.dumps(document).encode(), "application/json")

    def _send(self, status: int, body: bytes, content_type: str | None) -> None:
        self.send_response(status)
        if content_type and status != 204:
            self.send_header("Content-Type", content_type)
        if status != 204:
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if status != 204:
            self.wfile.write(body)
