"""waitress, made strict: framing guards, the header-time gate, clean error pages.

waitress reads every socket (request line, headers, body) on one non-blocking I/O thread
and hands a worker only a request that has fully arrived, so a slow client costs a file
descriptor, never a thread. These subclasses run on that I/O thread:

- :class:`StrictParser` (``HTTPChannel.parser_class``) adds what waitress 3.0.2 lacks:
  ``Transfer-Encoding`` with ``Content-Length`` -> 400 and close (RFC 9112 §6.3; upstream
  Pylons/waitress#464), more than one ``Content-Length`` or one that is not ``SP? 1*18DIGIT``
  -> 400 (also stops the uncaught ValueError of a 5000-digit value), ``Transfer-Encoding`` on
  HTTP/1.0 -> 400 (RFC 9112 §6.1). Once the headers are in it asks the listener's gate
  (``daemon.server.gate``: 401/403/404/405/413/429) before a body byte is read; a refused
  request never gets ``100 Continue`` and the rest of that read is dropped unparsed. While
  a chunked body arrives it counts *decoded* bytes (waitress counts chunk framing).
  An error set here is answered by the error task, which closes the connection.
- :class:`StrictChannel` knows its peer (for the gate and the per-source cap) and since
  when it waits for a request (``daemon.server.conns`` enforces the deadlines).
- The task classes count every response, the server-made ones too; the WSGI task keeps a
  connection open after a 204, the error task never quotes the request.

Only waitress's class attributes ``parser_class``, ``channel_class``, ``task_class``,
``error_task_class``, the tasks' ``build_response_header``/``set_close_on_finish``/``execute``
and the server's ``maintenance()``/``handle_accept()``/``readable()`` are used (stable since
1.x; pinned ``<3.1``; tests/e2e/test_http_hostile.py and test_http_intake.py guard them).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Callable
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.task import ErrorTask, WSGITask
from waitress.utilities import Error, RequestEntityTooLarge

from daemon.server.apps import MAX_PUSH_BYTES, json_bytes, route_of, status_line
from daemon.server.gate import Head, Refusal

# Stricter than RFC 9110 §5.5 (which allows OWS around a value): one optional SP, then
# ASCII digits. Rejects "+5", "²", Arabic-Indic digits, "5_0", "-1", "  5", "5 5", "0x5", "".
CONTENT_LENGTH = re.compile(rb"^ ?[0-9]{1,18}$")
MAX_HEADER_FIELDS = 100  # a push needs about ten

Verdict = Callable[[Head], "Refusal | None"]


class JsonError(Error):  # type: ignore[misc]  # waitress has no type hints
    """A server-made error answered with the same JSON body shape as the apps use."""

    allow: str | None = None

    def to_response(self, ident: str | None = None) -> tuple[str, list[tuple[str, str]], bytes]:
        body = json_bytes({"error": self.body})
        headers = [("Content-Type", "application/json")]
        if self.allow:
            headers.append(("Allow", self.allow))
        return f"{self.code} {self.reason}", headers, body


class RefusedError(JsonError):
    """The gate's verdict, answered before the body is read."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.code = refusal.code
        self.reason = status_line(refusal.code).partition(" ")[2]
        self.allow = refusal.allow


class TooLargeError(JsonError, RequestEntityTooLarge):  # type: ignore[misc]
    code, reason = 413, "Payload Too Large"


class StrictParser(HTTPRequestParser):  # type: ignore[misc]
    """One request's parser; see the module docstring. Configured per listener."""

    gate: Verdict = staticmethod(lambda head: None)
    max_body = MAX_PUSH_BYTES
    error: Error | None  # set by waitress, or here: the error task answers it

    def __init__(self, adj: Any, peer: str = "") -> None:
        super().__init__(adj)
        self.started = time.monotonic()  # the first byte of this request: the deadline clock
        self.peer = peer
        self.route = "other"
        self.app_path = ""
        self.command = ""

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

    @property
    def begun(self) -> bool:
        """Whether a request has started (blank lines before a request do not count)."""
        return bool((self.headers_finished and not self.empty) or self.header_plus.strip())

    def received(self, data: bytes) -> int:
        headers_were_done = self.headers_finished
        consumed: int = super().received(data)
        if not headers_were_done and self.headers_finished and not self.empty:
            if self.error is None or isinstance(self.error, RequestEntityTooLarge):
                refusal = self.gate(self._head())
                if refusal is not None:  # answered now: the body is never read
                    self.error, self.completed = RefusedError(refusal), True
            if self.error is not None:  # never "100 Continue" for a request refused
                self.expect_continue = False
                return len(data)  # the rest of this read is its body: never parsed
            if not (self.chunked or self.content_length > 0):
                # waitress would send 100 Continue and then wait for a body that never comes
                self.expect_continue = False
        elif (
            self.chunked
            and self.body_rcv is not None
            and self.error is None
            and len(self.body_rcv) > self.max_body
        ):
            self.error, self.completed = TooLargeError(f"body over {self.max_body} bytes"), True
        return consumed

    def _head(self) -> Head:
        return Head(
            method=str(self.command),
            path=self.app_path,
            headers=self.headers,
            peer=self.peer,
            content_length=int(self.content_length),
            chunked=bool(self.chunked),
        )


class _Counted:
    """Mixin: report each finished response's route and status code to the server."""

    channel: Any
    request: Any
    status: str

    def finish(self) -> None:
        super().finish()  # type: ignore[misc]
        self.channel.server.on_response(getattr(self.request, "route", "other"), self.status[:3])


class CountedWSGITask(_Counted, WSGITask):  # type: ignore[misc]
    """Keeps the connection open after a 204 when the client did not ask to close.

    waitress closes after every HTTP/1.1 response without a Content-Length, a 204 included,
    though a 204 has no body to delimit (RFC 9112 §6.3 rule 1): each DocPlanner push would
    cost a new TCP connection.
    """

    _building = False

    def build_response_header(self) -> bytes:
        self._building = True
        try:
            return super().build_response_header()  # type: ignore[no-any-return]
        finally:
            self._building = False

    def set_close_on_finish(self) -> None:
        keep = (
            self._building
            and not self.has_body
            and self.version == "1.1"
            and not self.request.connection_close
            and self.request.headers.get("CONNECTION", "").lower() != "close"
        )
        if not keep:
            super().set_close_on_finish()


class CountedErrorTask(_Counted, ErrorTask):  # type: ignore[misc]
    """Server-made errors, with a body that never repeats what the client sent.

    waitress's own error pages quote the offending request line or header (a push token
    included); ours say only the status, or the gate's fixed message.
    """

    def execute(self) -> None:
        error = self.request.error
        if not isinstance(error, JsonError):
            error = _plain(error)
        status, headers, body = error.to_response()
        self.status = status
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)  # a HEAD gets the length, not the body
        self.write(b"" if getattr(self.request, "command", "") == "HEAD" else body)


def _plain(error: Error) -> JsonError:
    plain = JsonError(str(error.reason).lower())
    plain.code, plain.reason = error.code, error.reason
    return plain


class StrictChannel(HTTPChannel):  # type: ignore[misc]
    """One connection: knows its peer, and since when it waits for a request.

    ``waiting_since`` is set when the connection opens and when a response is done; blank
    lines or a byte now and then do not move it (waitress's ``last_activity`` they do).
    """

    parser_class = StrictParser
    task_class = CountedWSGITask
    error_task_class = CountedErrorTask

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Any, map: Any = None) -> None:
        self.peer = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        self.waiting_since = time.monotonic()
        self._counted = False
        super().__init__(server, sock, addr, adj, map)
        # waitress builds each request's parser with self.parser_class(adj): give it the peer
        setattr(self, "parser_class", functools.partial(type(self).parser_class, peer=self.peer))  # noqa: B010
        server.source_opened(self.peer)
        self._counted = True

    def service(self) -> None:
        try:
            super().service()
        finally:
            self.waiting_since = time.monotonic()

    def del_channel(self, map: Any = None) -> None:
        if self._counted:
            self._counted = False
            self.server.source_closed(self.peer)
        super().del_channel(map)
