"""One ``drainer demo`` run: sandboxes, a private Redis and the real daemon, a view, a verdict.

:class:`~daemon.commands.demo.stack.Stack` starts everything on loopback in a temp dir; this
module drives it: a live view (``demo_view``) until ``--seconds`` or Ctrl-C, then the
settle phase -- arrivals stop and the daemon is given time to finish (DocPlanner queue
empty, spools published, the MyInvois watermark past the moment arrivals stopped, the
streams still) -- then SIGTERM, and the sandboxes' books are compared with the streams
(``demo_check``). Exit 0 when every handed-out notification is on a stream exactly once.

Signal handlers only set flags: the first Ctrl-C stops the run, a second one skips the
wait for the daemon to finish. A Ctrl-C typed in a terminal also reaches redis-server
(same process group), which shuts down; the stack restarts it from its append-only file.
"""

from __future__ import annotations

import argparse
import time
from contextlib import suppress
from typing import TYPE_CHECKING

import redis

from daemon.commands.demo.check import check_poll, check_pull, check_push, stream_books, verdict
from daemon.commands.demo.groups import print_consumer_kept, scrape_groups
from daemon.commands.demo.stack import AGENT_ID, AGENT_TAXPAYERS, ES_ID, MI, PL, Stack
from daemon.commands.demo.view import (
    DemoView,
    Labels,
    account_rows,
    print_keep,
    print_summary,
    recent_entries,
    scrape,
)
from daemon.errors import EXIT_FATAL, EXIT_OK
from daemon.runtime.signals import SignalFlag, capture_signals
from daemon.settings import StreamSettings

if TYPE_CHECKING:  # rich is the optional ui extra; without it a PlainConsole stands in
    from rich.console import Console

STREAMS = StreamSettings()  # the demo's daemon uses the default stream keys
SETTLE_TIMEOUT = 60.0
SLICE = 0.25


class Demo:
    """One run of the demo; :meth:`run` returns the exit code."""

    def __init__(self, args: argparse.Namespace, console: Console) -> None:
        self.args, self.console = args, console
        self.stack = Stack()
        self.signals = SignalFlag()  # 1: stop, 2: stop waiting (hurry)
        self.notes = [f"skipped: {module} is not installed yet" for module in self.stack.missing()]
        self.passed = False
        self.settled = False

    def run(self) -> int:
        try:
            with capture_signals(self.signals):
                self.stack.start(self.args.notifications)
                with DemoView(self.console, self._header()) as view:
                    self._watch(view)
                    self._settle(view)
                    self._refresh(view, "stopping the daemon (SIGTERM), then comparing")
                exit_code = self.stack.stop_daemon()
                return self._summary(exit_code)
        finally:
            self._close()

    def _header(self) -> list[str]:
        stack = self.stack
        assert stack.daemon is not None
        redis_pid = stack.client.info("server")["process_id"]
        lines = [
            f"drainer demo in {stack.tmp}",
            f"Redis {stack.redis.url}  redis-server pid {redis_pid}",
            f"daemon pid {stack.daemon.pid}  {stack.metrics_url}",
        ]
        if stack.consumer is not None:
            lines.append(
                f"consumer pid {stack.consumer.pid}  the consumer kit (python -m drainer_consumer),"
                " group demo on the three streams"
            )
        return lines + [f"{module} is not installed yet: left out" for module in stack.missing()]

    def _refresh(self, view: DemoView, status: str) -> dict[Labels, float]:
        samples = scrape(self.stack.metrics_url)
        streams = [STREAMS.docplanner, STREAMS.myinvois, STREAMS.deadletter]
        recent = recent_entries(self.stack.client, streams, view.entry_rows)
        groups = scrape_groups(self.stack.metrics_url)
        view.update(status, account_rows(samples, self.stack.accounts), recent, groups)
        return samples

    def _watch(self, view: DemoView) -> None:
        started, seconds = time.monotonic(), self.args.seconds
        while not self.signals.count:
            elapsed = time.monotonic() - started
            if seconds is not None and elapsed >= seconds:
                return
            if not self.stack.daemon_alive():
                self.notes.append(f"the daemon exited by itself; see {self.stack.log}")
                return
            left = f"stops in {seconds - elapsed:.0f}s, " if seconds is not None else ""
            self._refresh(view, f"running {elapsed:.0f}s ({left}Ctrl-C to stop)")
            self.signals.sleep(SLICE)

    def _settle(self, view: DemoView) -> None:
        """Stop arrivals, then wait (bounded) until the daemon has published everything."""
        halted_at = time.time()
        self.stack.halt_arrivals()
        self._revive_redis(self.signals.count >= 1)
        deadline = time.monotonic() + SETTLE_TIMEOUT
        lengths: tuple[int, ...] = ()
        still_since = time.monotonic()
        waiting = ["the daemon"]
        while self.signals.count < 2 and self.stack.daemon_alive():
            status = f"arrivals stopped; waiting for {', '.join(waiting) or 'quiet streams'}"
            samples = self._refresh(view, f"{status} (Ctrl-C again to skip)")
            waiting = self._waiting_for(samples, halted_at)
            with suppress(redis.RedisError):
                now = tuple(
                    self.stack.client.xlen(s) for s in (STREAMS.docplanner, STREAMS.myinvois)
                )
                if now != lengths:
                    lengths, still_since = now, time.monotonic()
            if not waiting and time.monotonic() - still_since >= 1.0:
                self.settled = True
                return
            if time.monotonic() > deadline:
                self.notes.append(f"stopped waiting after {SETTLE_TIMEOUT:.0f}s for {waiting}")
                return
            self.signals.sleep(SLICE, at_least=2)

    def _revive_redis(self, after_signal: bool) -> None:
        if self.stack.revive_redis(after_signal) and not any("redis" in n for n in self.notes):
            self.notes.append("redis-server stopped on Ctrl-C; restarted from its append-only file")

    def _waiting_for(self, samples: dict[Labels, float], halted_at: float) -> list[str]:
        """What is not finished yet: upstream queue, pushes, spools, the MyInvois window."""
        dp, waiting = self.stack.dp, []
        if dp.queue_length(PL.client_id):
            waiting.append("the DocPlanner queue")
        if self.stack.push:
            answered = len(dp.pushed(ES_ID)) + len(dp.failed_pushes(ES_ID))
            if answered < dp.queue_length(ES_ID):
                waiting.append("pushes in flight")
        for source, account, _ in self.stack.accounts:
            key = ("drainer_spool_pending_events", source, account)
            if source == "docplanner" and samples.get(key, 1):
                waiting.append(f"the {account} spool")
        for name in ("acme", *AGENT_TAXPAYERS):
            key = ("drainer_myinvois_watermark_timestamp_seconds", "myinvois", name)
            if self.stack.poll and samples.get(key, 0) < halted_at:
                waiting.append(f"the MyInvois {name} watermark")
        return waiting

    def _summary(self, exit_code: int | None) -> int:
        stack = self.stack
        self._revive_redis(self.signals.count >= 2)  # a second Ctrl-C reached it too
        books, dead = stream_books(stack.client, STREAMS)
        checks = [check_pull(stack.dp, PL.client_id, "pl", books, dead)]
        if stack.push:
            checks.append(check_push(stack.dp, ES_ID, "es", books, dead))
        if stack.poll:
            checks.append(check_poll(stack.mi, MI.client_id, "acme", books, dead))
            for name, tin in AGENT_TAXPAYERS.items():  # an intermediary's taxpayers
                checks.append(check_poll(stack.mi, AGENT_ID, name, books, dead, tin))
        self.passed, result = verdict(checks, exit_code, self.settled)
        print_summary(self.console, checks, self.notes, result, self.passed)
        return EXIT_OK if self.passed else EXIT_FATAL

    def _close(self) -> None:
        stack = self.stack
        keep = self.args.keep and stack.redis.running
        stack.close(keep_redis=keep, keep_files=not self.passed)
        if keep:
            print_keep(self.console, stack.redis, STREAMS, stack.tmp)
            if stack.consumer is not None and stack.consumer.poll() is None:
                print_consumer_kept(
                    self.console, stack.consumer.pid, stack.redis, STREAMS.docplanner
                )
        elif self.passed:
            say = f"Redis was at {stack.redis.url}; stopped (--keep leaves it running)."
            self.console.print(say, markup=False, highlight=False)
        else:
            self.console.print(f"Logs and data kept in {stack.tmp}", markup=False, highlight=False)
