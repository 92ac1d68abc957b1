"""HTTP plumbing shared by the simulators: a threaded loopback server, requests in, responses out.

A simulator subclasses :class:`SandboxServer` and implements ``handle(request) ->
Response``; this module does the socket work: keep-alive HTTP/1.1, the per-request
latency, the request log, and the three ways a response can leave -- whole, with its
JSON body cut in half (``truncate``), or not at all (``reset``: the connection is
dropped with an RST and nothing is written).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qs, urlsplit

from daemon.sandbox.clock import SandboxClock
from daemon.sandbox.faults import Fault, Faults


@dataclass(frozen=True)
class Request:
    """What the simulator sees of one HTTP request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        value = self.headers.get(name)
        return None if value is None else str(value)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class Response:
    """What goes back; ``action``: ``send``, ``truncate`` or ``reset``; ``after`` runs once sent."""

    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    action: Literal["send", "truncate", "reset"] = "send"
    after: Callable[[], None] | None = None


def json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


WAF_PAGE = (
    b"<!DOCTYPE html><html><head><title>Just a moment...</title></head><body>"
    b"<h1>Checking your browser before accessing the site.</h1>"
    b"<p>This process is automatic. Request blocked by the web application firewall.</p>"
    b"</body></html>"
)


def waf_response() -> Response:
    """A web application firewall challenge: 405 with an HTML page, not the API's JSON."""
    return Response(405, WAF_PAGE, "text/html; charset=UTF-8")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox"
    sys_version = ""
    timeout = 30  # an idle keep-alive connection is closed after this many seconds
    server: _HTTPServer

    def date_time_string(self, timestamp: float | None = None) -> str:
        """The ``Date`` header in sandbox time, like every other upstream timestamp."""
        return super().date_time_string(
            self.server.app.clock.now() if timestamp is None else timestamp
        )

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, Nagle's algorithm and
        # the client's delayed ACK add ~40 ms to every response.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: ``SandboxServer.requests`` is the request log."""

    def _dispatch(self) -> None:
        app = self.server.app
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = Request(self.command, url.path, parse_qs(url.query), self.headers, body)
        if app.latency > 0:
            app.wait(app.latency)
        try:
            response = app.handle(request)
        except Exception:
            app.record(request.method, request.path, 500)
            self._send(Response(500, b"sandbox error\n", "text/plain"))
            raise
        app.record(
            request.method, request.path, 0 if response.action == "reset" else response.status
        )
        delay = app.take_answer_delay()
        if delay > 0 and response.action != "reset":
            app.wait(delay)  # the ``slow_answer`` fault: served (popped) now, answered later
        if response.action == "reset":
            # Abortive close: SO_LINGER 0 turns the close into an RST, nothing is written.
            linger = struct.pack("ii", 1, 0)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
            self.close_connection = True
            return
        if response.action == "truncate":
            response.body = response.body[: len(response.body) // 2]
        try:
            self._send(response)
        finally:
            if response.after is not None:
                response.after()

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        if response.content_type is not None:
            self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], app: SandboxServer) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_changed = threading.Condition()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_changed:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        try:
            super().shutdown_request(request)
        finally:
            with self._open_changed:
                self._open.discard(request)
                self._open_changed.notify_all()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is normal here; anything else is a bug.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Wake every handler thread and wait until each has closed its socket."""
        with self._open_changed:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            self._open_changed.wait_for(lambda: not self._open, timeout)


class SandboxServer:
    """Start/stop, request log, latency, faults and background tickers for one simulator."""

    def __init__(
        self,
        *,
        clock: SandboxClock | None,
        latency: float,
        host: str,
        port: int,
        seed: int,
    ) -> None:
        self.clock = clock if clock is not None else SandboxClock()
        self.latency = latency
        self.faults = Faults(seed)
        self.requests: list[tuple[str, str, int]] = []
        """Every request served: ``(method, path without query, status)``; 0 = no response."""
        self._lock = threading.RLock()
        self._address = (host, port)
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._answer_delay = threading.local()  # per handler thread: this request's slow_answer

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in a background thread; returns self."""
        if self._httpd is not None:
            raise RuntimeError(f"{type(self).__name__} is already running")
        self._stopping.clear()
        httpd = self._httpd = _HTTPServer(self._address, self)
        self._spawn(f"{type(self).__name__}-{self.port}", lambda: httpd.serve_forever(0.05))
        return self

    def stop(self) -> None:
        """Stop serving, drop open connections, end background threads. Idempotent."""
        httpd, self._httpd = self._httpd, None
        self._stopping.set()
        if httpd is not None:
            httpd.shutdown()
            httpd.close_connections(timeout=5.0)
            httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=5.0)
        self._threads = []

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` of the running server."""
        host = str(self._httpd.server_address[0]) if self._httpd else self._address[0]
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # -- helpers for subclasses --------------------------------------------------------

    def handle(self, request: Request) -> Response:
        raise NotImplementedError

    def expire_tokens(self) -> None:
        """Make every issued token expire now (the ``token_expired`` fault)."""
        raise NotImplementedError

    def draw_fault(self) -> Fault | None:
        """The fault for this request, with ``slow`` and ``token_expired`` already applied."""
        fault = self.faults.draw()
        if fault is not None and fault.kind == "slow":
            self.wait(fault.seconds)
        if fault is not None and fault.kind == "token_expired":
            self.expire_tokens()
        if fault is not None and fault.kind == "slow_answer":
            self._answer_delay.seconds = fault.seconds
        return fault

    def take_answer_delay(self) -> float:
        """Seconds to hold this thread's response back (``slow_answer``), then 0 again."""
        seconds = float(getattr(self._answer_delay, "seconds", 0.0))
        self._answer_delay.seconds = 0.0
        return seconds

    def record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.requests.append((method, path, status))

    def count_status(self, status: int) -> int:
        """How many responses had this status (0 counts dropped connections)."""
        with self._lock:
            return sum(1 for _, _, seen in self.requests if seen == status)

    def wait(self, seconds: float) -> None:
        """Sleep, but wake up early when the server stops."""
        self._stopping.wait(seconds)

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def every(
        self, rate_per_second: float, action: Callable[[int], None], name: str
    ) -> threading.Event:
        """Call ``action(n)`` from a background thread so that ``rate_per_second`` items flow.

        Runs until the server stops or the returned event is set.
        """
        if rate_per_second <= 0:
            raise ValueError("rate_per_second must be positive")
        halt = threading.Event()

        def loop() -> None:
            owed, last = 0.0, time.monotonic()
            while not halt.wait(min(0.1, 1.0 / rate_per_second)) and not self._stopping.is_set():
                now = time.monotonic()
                owed += (now - last) * rate_per_second
                last = now
                if owed >= 1:
                    count = int(owed)
                    owed -= count
                    action(count)

        self._spawn(name, loop)
        return halt
