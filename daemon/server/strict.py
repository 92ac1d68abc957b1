"""waitress, made strict: framing guards, auth before the body, a whole-request deadline.

waitress reads every socket (request line, headers, body) on one non-blocking I/O thread
and hands a worker only a request that has fully arrived, so a slow client costs a file
descriptor, never a thread. These subclasses run on that I/O thread:

- :class:`StrictParser` (``HTTPChannel.parser_class``) adds what waitress 3.0.2 lacks:
  ``Transfer-Encoding`` with ``Content-Length`` -> 400 and close (RFC 9112 §6.3; upstream
  Pylons/waitress#464), more than one ``Content-Length`` or one that is not ``SP? 1*18DIGIT``
  -> 400 (also stops the uncaught ValueError of a 5000-digit value), ``Transfer-Encoding`` on
  HTTP/1.0 -> 400 (RFC 9112 §6.1). Once the headers are in it asks the router's gate (401)
  and checks ``Content-Length`` (413) before a body byte is read; while a chunked body
  arrives it counts *decoded* bytes (waitress counts chunk framing towards its own limit).
  An error set here is answered by waitress's error task, which closes the connection.
- :class:`DrainerServer` enforces the whole-request deadline in ``maintenance()`` (called
  by the I/O loop every ``cleanup_interval`` = 1 s): waitress's ``channel_timeout`` is idle
  time and every received byte resets it, so a client sending a byte a second would hold
  its connection forever. Past the deadline: 408 and close.
- The task classes count every response, the server-made ones too.

Only waitress's class attributes ``parser_class``, ``channel_class``, ``task_class``,
``error_task_class`` and ``maintenance()`` are used (stable since 1.x; pinned ``<3.1``).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import Error, RequestEntityTooLarge

from daemon.server.apps import MAX_PUSH_BYTES, UNAUTHORIZED, json_bytes, route_of

# Stricter than RFC 9110 §5.5 (which allows OWS around a value): one optional SP, then
# ASCII digits. Rejects "+5", "²", Arabic-Indic digits, "5_0", "-1", "  5", "5 5", "0x5", "".
CONTENT_LENGTH = re.compile(rb"^ ?[0-9]{1,18}$")
MAX_HEADER_FIELDS = 100  # a push needs about ten

Gate = Callable[[str, Mapping[str, str]], "int | None"]
OnResponse = Callable[[str, str], None]

_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class JsonError(Error):  # type: ignore[misc]  # waitress has no type hints
    """A server-made error answered with the same JSON body shape as the apps use."""

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json_bytes({"error": self.body})
        return f"{self.code} {self.reason}", [("Content-Type", "application/json")], body


class UnauthorizedError(JsonError):
    code, reason = 401, "Unauthorized"


class TooLargeError(JsonError, RequestEntityTooLarge):  # type: ignore[misc]
    code, reason = 413, "Payload Too Large"


class StrictParser(HTTPRequestParser):  # type: ignore[misc]
    """One request's parser; see the module docstring. Configured per listener."""

    gate: Gate = staticmethod(lambda path, headers: None)
    max_body = MAX_PUSH_BYTES
    error: Error | None  # set by waitress, or here: the error task answers it

    def __init__(self, adj: Any) -> None:
        super().__init__(adj)
        self.started = time.monotonic()  # the first byte of this request: the deadline clock
        self.route = "other"
        self.app_path = ""

    def parse_header(self, header_plus: bytes) -> None:
        _, _, rest = header_plus.partition(b"\r\n")
        lines = rest.split(b"\r\n")
        if len(lines) > MAX_HEADER_FIELDS:  # each one costs the shared I/O thread
            raise ParsingError(f"more than {MAX_HEADER_FIELDS} header fields")
        lengths, encodings = [], []
        for line in lines:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                lengths.append(value)
            elif name.lower() == b"transfer-encoding":
                encodings.append(value)
        if len(lengths) > 1:
            raise ParsingError("duplicate Content-Length")
        if lengths and not CONTENT_LENGTH.match(lengths[0]):
            raise ParsingError("invalid Content-Length")
        if lengths and encodings:
            raise ParsingError("both Transfer-Encoding and Content-Length")  # RFC 9112 §6.3
        # RFC 9112 §6.1: chunked is applied once; we accept nothing else (no "chunked,
        # chunked", no second Transfer-Encoding line, no other coding).
        if len(encodings) > 1 or (encodings and encodings[0].strip().lower() != b"chunked"):
            raise ParsingError("Transfer-Encoding other than one 'chunked'")
        super().parse_header(header_plus)
        if self.version not in ("1.0", "1.1"):
            raise ParsingError(f"HTTP/{self.version} is not served here")
        if self.version == "1.0" and "TRANSFER_ENCODING" in self.headers:
            raise ParsingError("Transfer-Encoding in an HTTP/1.0 request")  # RFC 9112 §6.1
        # The path as the WSGI app will see it (waitress strips extra leading slashes from
        # PATH_INFO): the gate and the route label judge the path the router dispatches.
        path = str(self.path)
        self.app_path = "/" + path.lstrip("/") if path.startswith("/") else path
        self.route = route_of(self.app_path)

    def received(self, data: bytes) -> int:
        headers_were_done = self.headers_finished
        consumed: int = super().received(data)
        if not headers_were_done and self.headers_finished and not self.empty:
            if self.error is None or isinstance(self.error, RequestEntityTooLarge):
                verdict = self._before_body()
                if verdict is not None:  # answered now; the body is never read
                    self.error, self.completed, self.expect_continue = verdict, True, False
        elif (
            self.chunked
            and self.body_rcv is not None
            and self.error is None
            and len(self.body_rcv) > self.max_body
        ):
            self.error, self.completed = TooLargeError(f"body over {self.max_body} bytes"), True
        return consumed

    def _before_body(self) -> Error | None:
        if self.gate(self.app_path, self.headers) == 401:  # auth first: a stranger learns nothing
            return UnauthorizedError(UNAUTHORIZED)
        if self.content_length > self.max_body:
            return TooLargeError(f"body over {self.max_body} bytes")
        return None


class _Counted:
    """Mixin: report each finished response's route and status code to the server."""

    channel: Any
    request: Any
    status: str

    def finish(self) -> None:
        super().finish()  # type: ignore[misc]
        self.channel.server.on_response(getattr(self.request, "route", "other"), self.status[:3])


class CountedWSGITask(_Counted, WSGITask):  # type: ignore[misc]
    pass


class CountedErrorTask(_Counted, ErrorTask):  # type: ignore[misc]
    pass


class StrictChannel(HTTPChannel):  # type: ignore[misc]
    parser_class = StrictParser
    task_class = CountedWSGITask
    error_task_class = CountedErrorTask


class DrainerServer(TcpWSGIServer):  # type: ignore[misc]
    """A waitress TCP server with the whole-request deadline; configured per listener."""

    channel_class = StrictChannel
    request_deadline = 10.0
    on_response: OnResponse = staticmethod(lambda route, code: None)
    on_deadline: Callable[[], None] = staticmethod(lambda: None)

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive and silent connections (channel_timeout)
        cutoff = time.monotonic() - self.request_deadline
        for channel in list(self.active_channels.values()):
            request = channel.request  # the request still being received, if any
            if (
                request is None
                or request.completed
                or request.started > cutoff
                or channel.will_close
                or channel.close_when_flushed
            ):
                continue
            self.on_deadline()
            try:
                if not channel.requests:  # nothing in flight: 408 can go out before the close
                    channel.write_soon(_REQUEST_TIMEOUT)
                    channel.close_when_flushed = True
                    self.on_response(request.route, "408")
                else:
                    channel.will_close = True
            except Exception:  # ClientDisconnected and the like: just close it
                channel.will_close = True
