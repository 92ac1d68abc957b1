"""The header-time verdict: what a request may do before a single body byte is read.

:meth:`Gate.check` runs on a listener's I/O thread as soon as a request's headers are in
(``daemon.server.strict``). It answers every request that will not be served a body:

- ``/metrics``, ``/healthz``, ``/readyz``: GET and HEAD only (else 405), never a body (413);
- any other path, and on the push-only listener anything but the push route: 404;
- ``/push/docplanner/<account>``, in this order: the source has failed auth too often
  (429), the source is outside the account's allowlist (403), the account's ``push_header``
  does not carry its token (401, the same for an unknown account), not POST (405), a body
  over 1 MiB (413).

A refused request is answered with ``Connection: close`` and its body is never read, so
no ``100 Continue`` goes out and no temporary file is written for it. Only a request that
passes may receive ``100 Continue``. The source of a push is the peer address, or, when
the peer is one of ``server.trusted_proxies``, the rightmost address of
``X-Forwarded-For`` that is not a trusted proxy (the one the nearest proxy saw).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from daemon.server.apps import MAX_PUSH_BYTES, PUSH_PREFIX, UNAUTHORIZED, Router, route_of
from daemon.settings.network import IPNetwork

ALLOW_GET = "GET, HEAD"


@dataclass(frozen=True)
class Head:
    """What the gate sees of a request: its line, its headers (waitress keys), its peer."""

    method: str
    path: str
    headers: Mapping[str, str]
    peer: str
    content_length: int
    chunked: bool

    @property
    def has_body(self) -> bool:
        return self.chunked or self.content_length > 0


@dataclass(frozen=True)
class Refusal:
    code: int
    message: str
    allow: str | None = None  # the Allow header of a 405
    reason: str | None = None  # counted in drainer_http_push_refusals_total{reason}


def in_any(address: str, networks: Sequence[IPNetwork]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def push_source(peer: str, forwarded: str | None, trusted: Sequence[IPNetwork]) -> str:
    """The address a push comes from (see the module docstring)."""
    if not trusted or forwarded is None or not in_any(peer, trusted):
        return peer
    for hop in reversed([part.strip() for part in forwarded.split(",")]):
        if not hop or not in_any(hop, trusted):
            return hop or peer
    return peer  # every hop is a trusted proxy: the nearest one is the source


class FailureLimiter:
    """Per-source budget of failed auth attempts: ``per_minute`` refill, bounded memory."""

    MAX_SOURCES = 4096

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _level(self, source: str, now: float) -> float:
        tokens, at = self._buckets.get(source, (self.capacity, now))
        return min(self.capacity, tokens + (now - at) * self.rate)

    def blocked(self, source: str) -> bool:
        with self._lock:
            return source in self._buckets and self._level(source, self.clock()) < 1.0

    def failed(self, source: str) -> None:
        with self._lock:
            now = self.clock()
            self._buckets[source] = (max(self._level(source, now) - 1.0, 0.0), now)
            self._buckets.move_to_end(source)
            while len(self._buckets) > self.MAX_SOURCES:
                self._buckets.popitem(last=False)


class Gate:
    """The header-time verdict of one listener (see the module docstring)."""

    def __init__(
        self,
        router: Router,
        allowed: Callable[[str, str], bool],
        trusted_proxies: Sequence[IPNetwork],
        limiter: FailureLimiter,
        push_only: bool = False,
        on_refusal: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self.on_refusal = on_refusal
        self.router = router
        self.allowed = allowed  # (account, source) -> bool; unknown accounts: any account's
        self.trusted = list(trusted_proxies)
        self.limiter = limiter
        self.push_only = push_only

    def check(self, head: Head) -> Refusal | None:
        route = route_of(head.path)
        if route == "push":
            refusal = self._push(head)
            if refusal is not None and refusal.reason is not None:
                self.on_refusal(refusal.reason)
            return refusal
        if self.push_only or route == "other":
            return Refusal(404, "not found")
        if head.method not in ("GET", "HEAD"):
            return Refusal(405, f"{ALLOW_GET} only", allow=ALLOW_GET)
        if head.has_body:
            return Refusal(413, "this route takes no body")
        return None

    def _push(self, head: Head) -> Refusal | None:
        source = push_source(head.peer, head.headers.get("X_FORWARDED_FOR"), self.trusted)
        account = head.path.removeprefix(PUSH_PREFIX).strip("/")
        if self.limiter.blocked(source):
            return Refusal(429, "too many failed attempts; retry later", reason="rate_limited")
        if not self.allowed(account, source):
            return Refusal(403, "source address not allowed", reason="forbidden_source")
        if not self.router.authorized(account, self.router.token(account, head.headers)):
            self.limiter.failed(source)
            return Refusal(401, UNAUTHORIZED, reason="unauthorized")
        if head.method != "POST":
            return Refusal(405, "POST only", allow="POST")
        if head.content_length > MAX_PUSH_BYTES:
            return Refusal(413, f"body over {MAX_PUSH_BYTES} bytes")
        return None
