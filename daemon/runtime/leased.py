"""The lease decorator: an intake worker ticks only while its account's lease is held.

The lease protocol itself (acquire, renew, release in Redis) is :mod:`daemon.sink.lease`;
this module wraps the workers in it, shows each lease in ``drainer_lease_held`` and hands
the leases to ``/readyz`` and to shutdown.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Gauge

from daemon.sink.connect import RedisClient
from daemon.sink.lease import Lease, identity, lease_key
from daemon.worker import Health, Worker

log = structlog.get_logger("daemon.runtime.leased")


class LeasedWorker:
    """Ticks ``inner`` only while ``lease`` is held; keeps the lease renewed meanwhile."""

    def __init__(
        self, inner: Worker, lease: Lease, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.inner = inner
        self.lease = lease
        self.name = inner.name
        self.health: Health = inner.health
        self._clock = clock
        self._due = 0.0  # when the inner worker asked to be ticked next

    def tick(self, now: float) -> float:
        if not self.lease.ensure(now):
            self._due = 0.0  # tick at once when the lease comes (back)
            self.health.set_detail("lease", f"standby, held by {self.lease.holder or 'nobody'}")
            return max(0.0, self.lease.next_attempt - now)
        self.health.set_detail("lease", "held")
        if now >= self._due:
            delay = self.inner.tick(now)
            now = self._clock()
            self._due = now + max(0.0, delay)
        return max(0.0, min(self._due, self.lease.next_attempt) - now)


def lease_gauge(registry: CollectorRegistry) -> Gauge:
    """``drainer_lease_held``: register it once per registry, then hand it to :func:`wrap`."""
    return Gauge(
        "drainer_lease_held",
        "1 while this process holds the account's lease (leases = true), else 0.",
        ("source", "account"),
        registry=registry,
    )


def wrap(
    intake: Sequence[Worker],
    client: RedisClient,
    streams: Mapping[str, str],
    ttl: float,
    registry: CollectorRegistry,
    clock: Callable[[], float] = time.monotonic,
    *,
    token: str | None = None,
    gauge: Gauge | None = None,
) -> tuple[list[Worker], dict[str, Lease]]:
    """Wrap every intake worker of a source in ``streams`` in its account's lease.

    Returns the wrapped workers and the leases by ``source:account``. Accounts added later
    (a reload) pass this process's ``token`` and the ``gauge`` of the first call.
    """
    first = token is None
    gauge = gauge or lease_gauge(registry)
    token = token or identity()
    leases: dict[str, Lease] = {}
    wrapped: list[Worker] = []
    for worker in intake:
        source, account = worker.health.source, worker.health.account
        if source not in streams:
            wrapped.append(worker)
            continue
        name = f"{source}:{account}"
        lease = leases.get(name)
        if lease is None:
            child = gauge.labels(source=source, account=account)
            child.set(0)
            lease = Lease(
                client,
                lease_key(streams[source], source, account),
                token,
                ttl,
                on_change=_show_in(child),
                clock=clock,
            )
            leases[name] = lease
        wrapped.append(LeasedWorker(worker, lease, clock))
    if first:
        log.info("lease.enabled", identity=token, ttl=ttl)
    return wrapped, leases


def _show_in(gauge: Gauge) -> Callable[[bool], None]:
    def show(held: bool) -> None:
        gauge.set(1 if held else 0)

    return show


def holders(leases: Mapping[str, Lease]) -> dict[str, Any]:
    """``{"docplanner:pl": {"held": true, "holder": "host:pid:ab12cd"}}`` for /readyz."""
    return {name: {"held": lease.held, "holder": lease.holder} for name, lease in leases.items()}


def release_all(leases: Mapping[str, Lease]) -> None:
    """On shutdown, after intake stopped: hand every lease over at once."""
    for lease in leases.values():
        lease.release()
