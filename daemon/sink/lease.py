"""Per-account leases in Redis: two daemons on one config, one active per account.

Opt-in (``[redis] leases = true``). Each intake worker (DocPlanner puller, release
scheduler, MyInvois poller) is wrapped in a ``daemon.runtime.leased.LeasedWorker`` that
ticks the real worker only while this process holds the account's lease:

- acquire: ``SET lease-key token NX PX ttl`` (token = hostname:pid:random);
- renew every ``ttl/3``: a Lua compare-and-``PEXPIRE`` on the token; a renewal that finds
  another token (or none) means the lease was lost: the worker stops at once;
- release on shutdown: a Lua compare-and-``DEL``, so the other node takes over at once.

If Redis cannot be reached, a holder keeps working only while at least ``ttl/3`` of its
last confirmed lease is left (so a pull started then ends before the key can expire),
then stands by. A confirmed lease counts from the moment its ``SET``/renew was *sent*
(Redis may apply it later, never earlier), and whether it is still good is judged on the
clock read *after* the renew returned: a renew that blocks (Redis hanging, up to the socket
timeout) can never let a stale holder pull once more after the other node took over.
The lease key lives in the stream's hash slot (works on Redis Cluster).

Push receivers and publishers run on every node: the spool is local, and a node's
unpublished spool is published when that node comes back; event ids keep that exactly once.
"""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
from collections.abc import Callable

import structlog

from daemon.sink.connect import RedisClient
from daemon.sink.failures import REDIS_ERRORS, Refusals
from daemon.sink.keys import related_key

log = structlog.get_logger("daemon.sink.lease")

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def identity() -> str:
    """This process as a lease holder: ``hostname:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def lease_key(stream: str, source: str, account: str) -> str:
    return related_key(stream, f"lease:{source}:{account}")


class Lease:
    """One account's lease as seen by this process; thread-safe, driven by ``ensure(now)``."""

    def __init__(
        self,
        client: RedisClient,
        key: str,
        token: str,
        ttl: float,
        on_change: Callable[[bool], None] = lambda held: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self._clock = clock
        self.key = key
        self.token = token
        self.ttl = ttl
        self.held = False
        self.holder: str | None = None  # the token of whoever holds it, as last seen
        self.closed = False
        self._ttl_ms = max(1, int(ttl * 1000))
        self._valid_until = 0.0  # the lease is ours until then at least (local clock)
        self._next_attempt = 0.0
        # WRONGTYPE on the lease key, NOPERM, a script error: retrying alone will not fix it
        # and the account stays on standby, so it is said loudly (once per error).
        self._refusals = Refusals(log, "lease.redis_refused", "lease.redis_accepts_again", key=key)
        self._on_change = on_change
        self._lock = threading.Lock()
        self._renew = client.register_script(RENEW_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    @property
    def renew_every(self) -> float:
        return self.ttl / 3

    @property
    def retry_every(self) -> float:
        """How often a standby tries to take the lease."""
        return min(1.0, self.ttl / 10)

    @property
    def next_attempt(self) -> float:
        return self._next_attempt

    def ensure(self, now: float) -> bool:
        """Acquire or renew when due; True while this process may work for the account."""
        with self._lock:
            if self.closed:
                return False
            if now >= self._next_attempt:
                started = self._clock()
                self._attempt(now)
                # The renew may have blocked (Redis hanging): judge on the time it is now.
                now += max(0.0, self._clock() - started)
            if self.held and now > self._valid_until - self.ttl / 3:
                # Redis has not confirmed the lease for too long: stand by.
                self._set_held(False, "unconfirmed")
            return self.held

    def _attempt(self, now: float) -> None:
        try:
            self._try(now)
        except REDIS_ERRORS as exc:
            self._next_attempt = now + self.retry_every
            if not self._refusals.failed(exc) and self.held:
                log.warning("lease.renew_failed", key=self.key, error=type(exc).__name__)
            return
        self._refusals.succeeded()

    def _try(self, now: float) -> None:
        if self.held:
            renewed = int(self._renew(keys=[self.key], args=[self.token, self._ttl_ms]))
            if renewed:
                self._valid_until = now + self.ttl  # now: before the command was sent
                self._next_attempt = now + self.renew_every
            else:
                self.holder = self._current_holder()
                self._set_held(False, "lost")
                self._next_attempt = now + self.retry_every
            return
        if self.client.set(self.key, self.token, nx=True, px=self._ttl_ms):
            self._valid_until = now + self.ttl  # now: before the command was sent
            self._next_attempt = now + self.renew_every
            self.holder = self.token
            self._set_held(True, "acquired")
        else:
            self.holder = self._current_holder()
            self._next_attempt = now + self.retry_every

    def _current_holder(self) -> str | None:
        raw = self.client.get(self.key)
        return raw.decode(errors="replace") if isinstance(raw, bytes) else raw

    def _set_held(self, held: bool, why: str) -> None:
        if held == self.held:
            return
        self.held = held
        if not held and self.holder == self.token:
            self.holder = None
        log.info(f"lease.{why}", key=self.key, identity=self.token, holder=self.holder)
        self._on_change(held)

    def release(self) -> None:
        """Give the lease up (compare-and-delete) and never take it again."""
        with self._lock:
            self.closed = True
            if not self.held:
                return
            try:
                self._release(keys=[self.key], args=[self.token])
            except REDIS_ERRORS as exc:
                log.warning("lease.release_failed", key=self.key, error=type(exc).__name__)
            self._set_held(False, "released")
