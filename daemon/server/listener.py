"""Start and stop the daemon's HTTP listeners: waitress servers embedded in threads.

:class:`Listener` is one waitress server: its own socket map, one I/O thread and a fixed
pool of worker threads (started when the server binds, in the constructor; port 0 binds a
free port, :attr:`Listener.port` is the real one). :class:`HttpFront` is what the runtime
holds: the main listener (``server.listen``: every route) and, when ``server.push_listen``
is set, a second one serving ``/push`` alone, so operators can expose push while
``/metrics`` and ``/readyz`` stay on loopback. ``stop()`` closes every socket and joins
every thread it started, from any thread, in a few milliseconds.
"""

from __future__ import annotations

import contextlib
import ipaddress
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import structlog
from prometheus_client import CollectorRegistry
from waitress import wasyncore

from daemon.errors import ListenError
from daemon.server.allow import PushPolicies
from daemon.server.apps import MAX_PUSH_BYTES, PushEndpoint, Readiness, Router
from daemon.server.conns import DrainerServer
from daemon.server.descriptors import ensure_descriptors
from daemon.server.gate import FailureLimiter, Gate, in_any
from daemon.server.logbridge import route_server_logging
from daemon.server.stats import HttpMetrics
from daemon.server.strict import StrictChannel, StrictParser
from daemon.settings import DocPlannerAccount, ServerSettings

log = structlog.get_logger("daemon.server")

LOOP_TIMEOUT = 1  # seconds the I/O loop waits in poll(); stop() wakes it at once
HEADER_LIMIT = 16 * 1024  # 431 above this (a push needs well under 1 KiB of headers)


class Listener:
    """One waitress server on ``(host, port)`` serving ``router``."""

    def __init__(
        self,
        name: str,
        router: Router,
        gate: Gate,
        address: tuple[str, int],
        settings: ServerSettings,
        metrics: HttpMetrics,
    ) -> None:
        self.name = name
        parser = type("Parser", (StrictParser,), {"gate": staticmethod(gate.check)})
        channel = type("Channel", (StrictChannel,), {"parser_class": parser})
        trusted = list(settings.trusted_proxies)
        server_class = type(
            "Server",
            (DrainerServer,),
            {
                "channel_class": channel,
                "listener": name,
                "request_deadline": settings.request_deadline,
                "idle_deadline": settings.idle_timeout,
                "per_source": settings.max_connections_per_source,
                "exempt": staticmethod(lambda peer: in_any(peer, trusted)),
                "on_response": staticmethod(metrics.on_response(name)),
                "on_deadline": staticmethod(metrics.on_deadline(name)),
                "on_close": staticmethod(metrics.on_close(name)),
            },
        )
        self._map: dict[int, Any] = {}
        try:
            self.server: Any = self._bind(server_class, router, address, settings)
        except OSError as exc:
            raise ListenError(f"cannot listen on {address[0]}:{address[1]}: {exc}") from None
        self.port = int(self.server.effective_port)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        metrics.add_listener(name, self.stats)

    def _bind(
        self,
        server_class: type[DrainerServer],
        router: Router,
        address: tuple[str, int],
        settings: ServerSettings,
    ) -> Any:
        return server_class(
            router,
            map=self._map,
            host=address[0],
            port=address[1],
            threads=settings.threads,
            connection_limit=settings.connection_limit,
            channel_timeout=max(1, round(settings.idle_timeout)),
            cleanup_interval=1,  # maintenance(): the deadline sweep, once a second
            asyncore_use_poll=True,  # select() fails past fd 1023
            asyncore_loop_timeout=LOOP_TIMEOUT,
            max_request_body_size=2 * MAX_PUSH_BYTES,  # wire-byte backstop; exact in the parser
            max_request_header_size=HEADER_LIMIT,
            expose_tracebacks=False,
            ident="notification-drainer",
            clear_untrusted_proxy_headers=True,
        )

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"http-{self.name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                wasyncore.loop(timeout=LOOP_TIMEOUT, map=self._map, use_poll=True, count=1)
        except Exception:
            log.error("http.loop_crashed", listener=self.name, exc_info=True)
        finally:  # everything is closed on the loop's own thread
            self.server.task_dispatcher.shutdown(timeout=2)
            wasyncore.close_all(self._map, ignore_all=True)

    def signal_stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):  # the trigger is already closed
            self.server.pull_trigger()

    def stop(self, timeout: float = 3.0) -> None:
        self.signal_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        else:  # never started: close what the constructor opened
            self.server.task_dispatcher.shutdown(timeout=2)
            wasyncore.close_all(self._map, ignore_all=True)

    def stats(self) -> dict[str, float]:
        """Live values for the scrape-time gauges (reads of ints and lengths: no lock)."""
        dispatcher = self.server.task_dispatcher
        return {
            "open": len(self.server.active_channels),
            "workers": len(dispatcher.threads) - dispatcher.stop_count,
            "busy": max(dispatcher.active_count, 0),
            "queue": len(dispatcher.queue),
        }


class HttpFront:
    """The main listener (every route) and the optional push-only one.

    ``accounts`` are the DocPlanner accounts (their ``push_header`` and allowlists; call
    :meth:`set_accounts` after a reload). The constructor checks the descriptor limit
    (``daemon.server.descriptors``) before it binds anything.
    """

    def __init__(
        self,
        settings: ServerSettings,
        registry: CollectorRegistry,
        alive: Callable[[], bool],
        readiness: Readiness,
        push: Mapping[str, PushEndpoint],
        accounts: Sequence[DocPlannerAccount] = (),
    ) -> None:
        route_server_logging()
        push_address = settings.push_address
        listeners = 1 if push_address is None else 2
        ensure_descriptors(settings.connection_limit, listeners, len(accounts))
        if not _loopback(settings.host):
            log.warning(
                "http.listen_exposed",
                listen=settings.listen,
                detail="server.listen serves /metrics and /readyz (account names, upstream "
                "errors): keep it on loopback (or behind a firewall or a loopback port "
                "mapping) and expose push through server.push_listen",
            )
        metrics = HttpMetrics(registry)
        self.policies = PushPolicies(accounts)
        metrics.published = self.policies.published_counts
        limiter = FailureLimiter(settings.auth_failures_per_minute)
        self.listeners: list[Listener] = []
        for name, address in (("main", (settings.host, settings.port)), ("push", push_address)):
            if address is None:
                continue
            only = name == "push"
            router = Router(
                registry, alive, readiness, push, push_only=only, header_of=self.policies.header_of
            )
            gate = Gate(
                router,
                self.policies.allowed,
                settings.trusted_proxies,
                limiter,
                push_only=only,
                on_refusal=metrics.on_refusal,
            )
            try:
                self.listeners.append(Listener(name, router, gate, address, settings, metrics))
            except BaseException:
                for listener in self.listeners:
                    listener.stop()
                raise

    def set_accounts(self, accounts: Sequence[DocPlannerAccount]) -> None:
        """New push headers and allowlists (a reload); published lists already fetched stay."""
        self.policies.set_accounts(accounts)

    @property
    def port(self) -> int:
        return self.listeners[0].port

    @property
    def push_port(self) -> int | None:
        return self.listeners[1].port if len(self.listeners) > 1 else None

    def start(self) -> None:
        for listener in self.listeners:
            listener.start()
        self.policies.start()

    def stop(self) -> None:
        for listener in self.listeners:
            listener.signal_stop()
        self.policies.stop()
        for listener in self.listeners:
            listener.stop()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
