"""The listening side of one waitress server: deadlines, per-source caps, descriptor back-off.

:class:`DrainerServer` (a ``TcpWSGIServer``) runs on the listener's I/O thread:

- ``maintenance()`` (every ``cleanup_interval`` = 1 s) closes what waitress would keep:
  a connection that has not *begun* a request within ``idle_timeout`` of opening or of its
  last response (blank lines and keep-alive silence alike: the clock is
  ``StrictChannel.waiting_since``, which received bytes never move), and a request not
  fully received within ``request_deadline`` of its first byte (408). A connection thus
  holds its slot at most ``idle_timeout + request_deadline`` without a response.
- At ``connection_limit`` the server closes the connections that have waited longest
  without beginning a request (at most :data:`EVICT_BATCH` every :data:`EVICT_EVERY`
  seconds), so that idle or blank-line connections from many addresses cannot keep a new
  push waiting in the backlog until their idle deadline.
- ``handle_accept()`` refuses (closes at once) a connection from a peer that already holds
  ``max_connections_per_source`` of this listener's connections (``trusted_proxies`` are
  exempt: every proxied client shares their address).
- When ``accept()`` fails for want of descriptors (EMFILE, ENFILE) or memory, the server
  stops accepting for :data:`BACKOFF` seconds instead of spinning on a readable socket, and
  logs once when it starts and once when it accepts again; open connections, ``/healthz``
  on them included, are served meanwhile.
"""

from __future__ import annotations

import errno
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import structlog
from waitress.server import TcpWSGIServer

from daemon.server.strict import StrictChannel

log = structlog.get_logger("daemon.server")

BACKOFF = 1.0  # seconds without accept() after running out of descriptors
EVICT_EVERY = 0.05  # seconds between scans for idle connections while at the limit
EVICT_BATCH = 16  # idle connections closed per scan
_EXHAUSTED = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_REQUEST_TIMEOUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"

OnResponse = Callable[[str, str], None]
OnEvent = Callable[[str], None]


class DrainerServer(TcpWSGIServer):  # type: ignore[misc]
    """A waitress TCP server with the guards above; configured per listener (class attrs)."""

    channel_class = StrictChannel
    listener = "main"
    request_deadline = 10.0
    idle_deadline = 15.0
    per_source = 64
    exempt: Callable[[str], bool] = staticmethod(lambda peer: False)
    on_response: OnResponse = staticmethod(lambda route, code: None)
    on_deadline: Callable[[], None] = staticmethod(lambda: None)
    on_close: OnEvent = staticmethod(lambda reason: None)  # idle, per_source, descriptors

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._sources: Counter[str] = Counter()
        self._sources_lock = threading.Lock()
        self._backoff_until = 0.0
        self._exhausted = False
        self._next_evict = 0.0
        super().__init__(*args, **kwargs)

    # --- per-source accounting (channels call these; a close may run on a worker thread) --

    def source_opened(self, peer: str) -> None:
        with self._sources_lock:
            self._sources[peer] += 1

    def source_closed(self, peer: str) -> None:
        with self._sources_lock:
            self._sources[peer] -= 1
            if self._sources[peer] <= 0:
                del self._sources[peer]

    def connections_from(self, peer: str) -> int:
        with self._sources_lock:
            return self._sources.get(peer, 0)

    # --- accepting --------------------------------------------------------------------------

    def readable(self) -> bool:
        accepting: bool = super().readable()  # also runs maintenance() when it is due
        if self.in_connection_overflow:
            self._evict_idle()
        return accepting and time.monotonic() >= self._backoff_until

    def _evict_idle(self) -> None:
        """At the limit: close the connections that have waited longest for a request."""
        now = time.monotonic()
        if now < self._next_evict:
            return
        self._next_evict = now + EVICT_EVERY
        idle = [
            channel
            for channel in self.active_channels.values()
            if not channel.requests
            and not channel.total_outbufs_len  # a response still going out is not idle
            and not channel.will_close
            and not channel.close_when_flushed
            and (channel.request is None or not channel.request.begun)
        ]
        idle.sort(key=lambda channel: channel.waiting_since)
        for channel in idle[:EVICT_BATCH]:
            channel.will_close = True  # closed by the loop's next pass (writable)
            self.on_close("evicted")

    def handle_accept(self) -> None:
        try:
            pair = self.accept()
        except OSError as exc:
            if exc.errno in _EXHAUSTED:
                self._backoff_until = time.monotonic() + BACKOFF
                self.on_close("descriptors")
                if not self._exhausted:
                    self._exhausted = True
                    log.error("http.accept_backoff", listener=self.listener, error=exc.strerror)
            return  # anything else: the peer is gone already; nothing to log
        if pair is None:
            return
        conn, addr = pair
        if self._exhausted:
            self._exhausted = False
            log.info("http.accept_resumed", listener=self.listener)
        peer = str(addr[0]) if isinstance(addr, tuple) else str(addr)
        if self.connections_from(peer) >= self.per_source and not self.exempt(peer):
            conn.close()
            self.on_close("per_source")
            return
        try:
            self.set_socket_options(conn)
            self.channel_class(self, conn, self.fix_addr(addr), self.adj, map=self._map)
        except OSError:  # the peer closed already, or no descriptor left for the channel
            conn.close()

    # --- deadlines --------------------------------------------------------------------------

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # waitress's idle rule (channel_timeout, reset by any byte)
        clock = time.monotonic()
        for channel in list(self.active_channels.values()):
            if channel.requests or channel.will_close or channel.close_when_flushed:
                continue  # being answered, or closing already
            request = channel.request
            if request is None or not request.begun:
                if clock - channel.waiting_since > self.idle_deadline:
                    channel.will_close = True
                    self.on_close("idle")
                continue
            if request.completed or clock - request.started <= self.request_deadline:
                continue
            self.on_deadline()
            try:  # nothing in flight: 408 can go out before the close
                channel.write_soon(_REQUEST_TIMEOUT)
                channel.close_when_flushed = True
                self.on_response(request.route, "408")
            except Exception:  # ClientDisconnected and the like: just close it
                channel.will_close = True
