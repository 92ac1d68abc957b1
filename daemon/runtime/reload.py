"""SIGHUP: re-read the config and start, restart or retire accounts (SPEC §4).

The signal handler only counts; the main loop calls :meth:`Reloader.poll`, which re-reads
the same file with the same environment as at start and compares accounts by
``(source, name)``:

- added: its spool, publisher and intake are built and scheduled;
- removed: its intake is unscheduled (an in-flight tick finishes; a pulled batch is
  spooled), its lease released and HTTP client closed; its publisher drains the spool, then
  the account is dropped (the spool directory stays on disk);
- changed (any setting differs): its intake is stopped the same way and rebuilt with the
  new settings on the same spool and publisher;
- untouched: nothing happens to it.

``[redis]``, ``[streams]``, ``[spool]``, ``[server]``, ``[runtime]`` and ``[log]`` are read at
start only: a change is logged in one line (``config.reload_needs_restart``) and the
running values stay. A config that fails validation changes nothing: one log line and
``drainer_config_reload_failures_total``. Every step that waits (an in-flight tick, a
spool to drain) is polled from the main loop, which never blocks on it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from daemon.errors import DrainerError
from daemon.logs import scrub_also
from daemon.runtime import leased
from daemon.runtime.parts import Account, Parts
from daemon.runtime.scheduler import Scheduler
from daemon.runtime.wiring import open_account
from daemon.server.listener import HttpFront
from daemon.settings import DocPlannerAccount, MyInvoisAccount, Settings

log = structlog.get_logger("daemon.runtime.reload")

RESTART_SECTIONS = ("redis", "streams", "spool", "server", "runtime", "log")

Key = tuple[str, str]
AccountSettings = DocPlannerAccount | MyInvoisAccount


@dataclass(eq=False)
class Retiring:
    """An account whose intake is stopping: then dropped, or restarted with ``then``."""

    account: Account
    stopped: list[threading.Event]
    then: AccountSettings | None = None
    phase: str = "intake"  # intake -> drain -> publisher
    published: threading.Event | None = None


def configured(settings: Settings) -> dict[Key, AccountSettings]:
    accounts: dict[Key, AccountSettings] = {("docplanner", a.name): a for a in settings.docplanner}
    accounts.update({("myinvois", a.name): a for a in settings.myinvois})
    return accounts


class Running(Protocol):
    """What the reloader needs of the running ``daemon.runtime.run.Runtime``."""

    parts: Parts
    server: HttpFront
    intake: Scheduler
    publishing: Scheduler

    def start_account(self, account: Account) -> None: ...


class Reloader:
    """Applies a re-read config to a running :class:`Running` (see the module docstring)."""

    def __init__(self, runtime: Running, load: Callable[[], Settings] | None) -> None:
        self.runtime = runtime
        self.parts = runtime.parts
        self.load = load
        self.retiring: dict[Key, Retiring] = {}
        self._seen = 0

    def started(self) -> None:
        self.parts.metrics.config_last_reload_success.set(self.parts.wall_clock())

    def poll(self, reloads: int) -> None:
        """From the main loop: reload once per new SIGHUP, then advance retiring accounts."""
        try:
            if reloads != self._seen:
                self._seen = reloads
                self.reload()
            self.step()
        except Exception:  # a bug here must not take the running accounts down
            log.exception("config.reload_crashed")
            self.parts.metrics.config_reload_failures.inc()

    def reload(self) -> bool:
        """Re-read the config and apply its accounts; False (and counted) when it is refused."""
        metrics = self.parts.metrics
        if self.load is None:
            log.warning("config.reload_unavailable")
            return False
        try:
            new = self.load()
        except DrainerError as exc:
            metrics.config_reload_failures.inc()
            log.error("config.reload_failed", error=str(exc))
            return False
        old = self.parts.settings
        sections = [name for name in RESTART_SECTIONS if getattr(new, name) != getattr(old, name)]
        if sections:
            log.warning("config.reload_needs_restart", sections=sections)
        scrub_also(new.secret_values())
        added, removed, changed, failed = self._apply(configured(new))
        self.parts.settings = old.model_copy(
            update={"docplanner": new.docplanner, "myinvois": new.myinvois}
        )
        self.runtime.server.set_accounts(new.docplanner)  # push headers and allowlists
        if failed:
            metrics.config_reload_failures.inc()
            return False
        metrics.config_last_reload_success.set(self.parts.wall_clock())
        log.info("config.reloaded", added=added, removed=removed, restarted=changed)
        return True

    def _current(self) -> dict[Key, AccountSettings]:
        """What runs, or will once the accounts being restarted are back."""
        current = {key: a.settings for key, a in self.parts.accounts.items()}
        for key, retiring in self.retiring.items():
            if retiring.then is None:
                current.pop(key, None)
            else:
                current[key] = retiring.then
        return current

    def _apply(
        self, wanted: dict[Key, AccountSettings]
    ) -> tuple[list[str], list[str], list[str], list[str]]:
        current = self._current()
        removed = sorted(current.keys() - wanted.keys())
        changed = sorted(k for k in current.keys() & wanted.keys() if current[k] != wanted[k])
        added = sorted(wanted.keys() - current.keys())
        for key in removed:
            self._retire(key, None)
        for key in changed:
            self._retire(key, wanted[key])
        failed: list[str] = []
        for key in added:
            if key in self.retiring:  # re-added while its removal is still under way
                self.retiring[key].then = wanted[key]
            elif not self._open(wanted[key]):
                failed.append(":".join(key))
        return ([":".join(k) for k in added], [":".join(k) for k in removed],
                [":".join(k) for k in changed], failed)  # fmt: skip

    def _open(self, settings: AccountSettings, keep: Account | None = None) -> bool:
        try:
            account = open_account(self.parts, settings, keep)
        except (DrainerError, OSError) as exc:
            log.error("account.start_failed", account=settings.name, error=str(exc))
            return False
        self.runtime.start_account(account)
        log.info("account.started", source=account.source, account=settings.name)
        return True

    def _retire(self, key: Key, then: AccountSettings | None) -> None:
        retiring = self.retiring.get(key)
        if retiring is not None:
            retiring.then = then
            return
        account = self.parts.accounts[key]
        self.parts.detach_intake(account)
        stopped = [self.runtime.intake.remove(worker) for worker in account.intake]
        self.retiring[key] = Retiring(account, stopped, then)
        log.info("account.stopping", source=key[0], account=key[1], restart=then is not None)

    def step(self) -> None:
        """Advance every retiring account as far as it can go without waiting."""
        for key, retiring in list(self.retiring.items()):
            account = retiring.account
            if retiring.phase == "intake":
                if not all(event.is_set() for event in retiring.stopped):
                    continue
                self._close(account)
                retiring.phase = "drain"
            if retiring.phase == "drain":
                if retiring.then is not None:  # a restart: same spool and publisher
                    del self.retiring[key]
                    self._open(retiring.then, keep=account)
                    continue
                if account.spool.pending_records:
                    continue
                retiring.published = self.runtime.publishing.remove(account.publisher)
                retiring.phase = "publisher"
            if retiring.published is not None and retiring.published.is_set():
                del self.retiring[key]
                self.parts.detach(account)
                log.info("account.removed", source=key[0], account=key[1])
                if retiring.then is not None:  # re-added meanwhile: a fresh start
                    self._open(retiring.then)

    def _close(self, account: Account) -> None:
        leased.release_all(account.leases)  # the other node takes over at once
        for client in account.clients:
            client.close()
        for hook in account.on_close:
            hook()

    def close(self) -> None:
        """On shutdown (intake stopped): close what retiring accounts still hold."""
        for retiring in self.retiring.values():
            if retiring.phase == "intake":
                self._close(retiring.account)
