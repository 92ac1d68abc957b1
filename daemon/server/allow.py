"""Who may push for which account: ``push_header``, ``push_allow_from``, ``push_allow_published``.

:class:`PushPolicies` holds, per DocPlanner push account, the waitress key of its
``push_header`` and its allowlist: the static CIDRs of ``push_allow_from`` and, with
``push_allow_published``, the addresses DocPlanner publishes at
``https://www.{domain}/public/docs/public-ips.json`` under ``"API"`` (SPEC §1). An account
with neither accepts any source. The published lists are fetched by one background thread
(:meth:`PushPolicies.run`), never on the request path: at start, then daily; a failed
fetch keeps the last good list and is retried every :data:`RETRY_EVERY` seconds. Until a
first fetch succeeds only ``push_allow_from`` is allowed (fail closed), which the
``drainer_push_allowlist_published_addresses`` gauge (0) and a log line make visible.
An unknown account is judged against every account's allowlist at once, so the 403/401
answer never depends on whether the named account exists.
"""

from __future__ import annotations

import ipaddress
import json
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import requests
import structlog

from daemon.server.apps import DEFAULT_HEADER
from daemon.server.gate import in_any
from daemon.settings import DocPlannerAccount
from daemon.settings.network import IPNetwork, wsgi_key

log = structlog.get_logger("daemon.server")

PUBLISHED_PATH = "/public/docs/public-ips.json"  # SPEC §1: https://www.{domain}/public/docs/...
REFRESH_EVERY = 86400.0  # "refreshed daily"
RETRY_EVERY = 300.0  # after a failed fetch; the last good list stays in force meanwhile
TIMEOUT = (5.0, 20.0)  # (connect, read) seconds
MAX_BYTES = 1024 * 1024


@dataclass
class Policy:
    header: str  # waitress key, e.g. X_DRAINER_TOKEN
    static: list[IPNetwork] | None
    published_url: str | None
    published: list[IPNetwork] = field(default_factory=list)
    fetched_at: float | None = None
    due_at: float = float("-inf")
    failing: bool = False

    def allows(self, source: str) -> bool:
        if self.static is None and self.published_url is None:
            return True
        return in_any(source, [*(self.static or []), *self.published])


def parse_published(document: object) -> list[IPNetwork]:
    """The ``"API"`` list of public-ips.json as networks; ValueError when it is not one."""
    if not isinstance(document, dict) or not isinstance(document.get("API"), list):
        raise ValueError('expected {"API": [...]}')
    networks = [ipaddress.ip_network(str(item).strip(), strict=False) for item in document["API"]]
    if not networks:
        raise ValueError('"API" is empty')
    return networks


class PushPolicies:
    """The push accounts' headers and allowlists (see the module docstring)."""

    def __init__(
        self,
        accounts: Sequence[DocPlannerAccount] = (),
        clock: Callable[[], float] = time.monotonic,
        refresh_every: float = REFRESH_EVERY,
        retry_every: float = RETRY_EVERY,
    ) -> None:
        self.clock = clock
        self.refresh_every = refresh_every
        self.retry_every = retry_every
        self._lock = threading.Lock()
        self._policies: dict[str, Policy] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self.set_accounts(accounts)

    def set_accounts(self, accounts: Sequence[DocPlannerAccount]) -> None:
        """Replace the policies (e.g. after a reload); published lists already fetched stay."""
        policies: dict[str, Policy] = {}
        for account in accounts:
            if not account.pushes:
                continue
            url = account.base_url + PUBLISHED_PATH if account.push_allow_published else None
            policy = Policy(wsgi_key(account.push_header), account.push_allow_from, url)
            old = self._policies.get(account.name)
            if old is not None and old.published_url == url:
                policy.published, policy.fetched_at = old.published, old.fetched_at
                policy.due_at, policy.failing = old.due_at, old.failing
            policies[account.name] = policy
        with self._lock:
            self._policies = policies
        self._wake.set()
        if self._started and not self._stop.is_set():
            self.start()

    def header_of(self, account: str) -> str:
        policy = self._policies.get(account)
        return policy.header if policy is not None else DEFAULT_HEADER

    def allowed(self, account: str, source: str) -> bool:
        policies = self._policies
        policy = policies.get(account)
        if policy is not None:
            return policy.allows(source)
        return not policies or any(p.allows(source) for p in policies.values())

    def published_counts(self) -> dict[str, int]:
        return {n: len(p.published) for n, p in self._policies.items() if p.published_url}

    # --- the background fetch ------------------------------------------------------------

    def start(self) -> None:
        """Start the fetch thread when some account wants the published list (also later,
        when :meth:`set_accounts` adds one)."""
        self._started = True
        if self._thread is None and any(p.published_url for p in self._policies.values()):
            self._thread = threading.Thread(target=self.run, name="push-allowlist", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:  # a fetch in flight may take its timeouts: not waited for
            self._thread.join(timeout=1.0)

    def run(self) -> None:
        session = requests.Session()
        try:
            while not self._stop.is_set():
                wait = self.refresh_once(session)
                self._wake.wait(wait)
                self._wake.clear()
        finally:
            session.close()

    def refresh_once(self, session: requests.Session) -> float:
        """Fetch every list that is due; return the seconds until the next one is."""
        next_due = self.refresh_every
        for name, policy in list(self._policies.items()):
            if policy.published_url is None:
                continue
            if self.clock() >= policy.due_at:
                ok = self._fetch(session, name, policy)
                wait = self.refresh_every if ok else self.retry_every * random.uniform(1.0, 1.2)
                policy.due_at = self.clock() + wait
            next_due = min(next_due, max(policy.due_at - self.clock(), 0.5))
        return next_due

    def _fetch(self, session: requests.Session, name: str, policy: Policy) -> bool:
        assert policy.published_url is not None
        try:
            with session.get(policy.published_url, timeout=TIMEOUT, stream=True) as response:
                raw = response.raw.read(MAX_BYTES + 1, decode_content=True)
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
            if len(raw) > MAX_BYTES:
                raise ValueError(f"over {MAX_BYTES} bytes")
            networks = parse_published(json.loads(raw))
        except (requests.RequestException, ValueError, OSError) as exc:
            if not policy.failing:  # once per state change
                log.warning(
                    "push.allowlist_fetch_failed",
                    account=name,
                    error=str(exc)[:200],
                    kept=len(policy.published),
                )
            policy.failing = True
            return False
        if policy.failing or policy.fetched_at is None:
            log.info("push.allowlist_fetched", account=name, networks=len(networks))
        policy.published, policy.fetched_at, policy.failing = networks, self.clock(), False
        return True
