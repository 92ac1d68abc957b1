"""What ``drainer demo`` shows while it runs: per-account figures and the newest stream entries.

The figures come from the daemon's own ``/metrics`` (parsed with prometheus_client's
text parser, so the demo sees exactly what Prometheus would), the entries from
``XREVRANGE`` on the streams. On a terminal a rich ``Live`` table is redrawn about four
times a second; otherwise (a pipe, CI, a test) one plain line per second is printed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.check import AccountCheck, stream_page
from daemon.commands.demo.groups import GroupRow, group_table
from daemon.commands.demo.localredis import LocalRedis
from daemon.settings import StreamSettings

if TYPE_CHECKING:  # rich is the optional ui extra: imported only where it draws
    from rich.console import Console, Group
    from rich.live import Live

Labels = tuple[str, str, str]  # (sample name, source, account)
PLAIN_EVERY = 1.0  # seconds between lines when stdout is not a terminal


@dataclass(frozen=True)
class AccountRow:
    """One account as the daemon's metrics describe it."""

    source: str
    account: str
    mode: str
    received: int
    published: int
    duplicates: int
    deadletter: int
    queue: int | None
    spool: int | None
    watermark: float | None

    @property
    def label(self) -> str:
        return f"{self.source}/{self.account}"


@dataclass(frozen=True)
class RecentEntry:
    """One stream entry, reduced to what the view prints."""

    entry_id: str
    received_at: str
    source: str
    account: str
    type: str
    event_id: str


def scrape(metrics_url: str) -> dict[Labels, float]:
    """Every ``drainer_*`` sample with ``source``/``account`` labels, summed over other labels."""
    try:
        text = requests.get(metrics_url, timeout=1.0).text
    except requests.RequestException:
        return {}
    samples: dict[Labels, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            source, account = sample.labels.get("source"), sample.labels.get("account")
            if source and account:
                key = (sample.name, source, account)
                samples[key] = samples.get(key, 0.0) + sample.value
    return samples


def account_rows(
    samples: dict[Labels, float], accounts: Sequence[tuple[str, str, str]]
) -> list[AccountRow]:
    """``accounts`` is ``(source, account, mode)``; a figure the daemon did not export is None."""

    def value(name: str, source: str, account: str) -> float | None:
        return samples.get((f"drainer_{name}", source, account))

    def count(name: str, source: str, account: str) -> int:
        return int(value(name, source, account) or 0)

    rows = []
    for source, account, mode in accounts:
        queue = value("docplanner_queue_remaining", source, account)
        spool = value("spool_pending_events", source, account)
        mark = value("myinvois_watermark_timestamp_seconds", source, account)
        rows.append(
            AccountRow(
                source,
                account,
                mode,
                count("events_received_total", source, account),
                count("events_published_total", source, account),
                count("events_duplicate_total", source, account),
                count("deadletter_total", source, account),
                None if queue is None or mode == "push" else int(queue),
                None if spool is None or source == "myinvois" else int(spool),
                mark or None,
            )
        )
    return rows


def recent_entries(client: redis.Redis, streams: Sequence[str], count: int) -> list[RecentEntry]:
    """The newest ``count`` entries over all ``streams``, newest first."""
    found: list[RecentEntry] = []
    try:
        for stream in streams:
            for entry_id, text in stream_page(client, stream, count, newest_first=True):
                found.append(
                    RecentEntry(
                        entry_id,
                        text.get("received_at", ""),
                        text.get("source", ""),
                        text.get("account", ""),
                        text.get("type", text.get("reason", "")),
                        text.get("event_id", "(dead-letter)"),
                    )
                )
    except redis.RedisError:
        return []
    found.sort(key=lambda e: tuple(int(part) for part in e.entry_id.split("-")), reverse=True)
    return found[:count]


def clock_text(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%m-%d %H:%M:%S")


def _opt(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


class DemoView:
    """Live table on a terminal, one line per second elsewhere. Use as a context manager."""

    def __init__(self, console: Console, header: Sequence[str]) -> None:
        self.console = console
        self.header = list(header)
        self.live: Live | None = None
        self._last_plain = 0.0

    def __enter__(self) -> DemoView:
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        else:
            for line in self.header:
                self.console.print(line, markup=False, highlight=False)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def update(
        self,
        status: str,
        rows: list[AccountRow],
        recent: list[RecentEntry],
        groups: Sequence[GroupRow] = (),
    ) -> None:
        if self.live is not None:
            self.live.update(self._render(status, rows, recent, groups))
            return
        now = time.monotonic()
        if now - self._last_plain < PLAIN_EVERY:
            return
        self._last_plain = now
        parts = [status]
        for row in rows:
            text = (
                f"{row.label} recv {row.received} pub {row.published} dup {row.duplicates}"
                f" dl {row.deadletter}"
            )
            if row.queue is not None:
                text += f" queue {row.queue}"
            if row.spool is not None:
                text += f" spool {row.spool}"
            if row.watermark is not None:
                text += f" watermark {clock_text(row.watermark)}"
            parts.append(text)
        parts += [group.line() for group in groups]
        self.console.print(" | ".join(parts), markup=False, highlight=False)

    @property
    def entry_rows(self) -> int:
        """How many stream entries fit under the table (the whole view must fit the screen)."""
        if self.live is None:
            return 5
        return max(3, min(12, self.console.height - len(self.header) - 19))

    def _render(
        self,
        status: str,
        rows: list[AccountRow],
        recent: list[RecentEntry],
        groups: Sequence[GroupRow],
    ) -> Group:
        from rich import box
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        accounts = Table(
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            collapse_padding=True,
            pad_edge=False,
            show_edge=False,
        )
        accounts.add_column("account", no_wrap=True, min_width=13)
        accounts.add_column("mode", no_wrap=True)
        for name in ("recv", "published", "dup", "dead", "queue", "spool"):
            accounts.add_column(name, justify="right", no_wrap=True)
        accounts.add_column("watermark UTC", no_wrap=True)
        for row in rows:
            accounts.add_row(
                row.label,
                row.mode,
                f"{row.received:,}",
                f"{row.published:,}",
                f"{row.duplicates:,}",
                f"{row.deadletter:,}",
                _opt(row.queue),
                _opt(row.spool),
                clock_text(row.watermark),
            )
        entries = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
        entries.add_column("received", no_wrap=True, min_width=8)
        entries.add_column("source", no_wrap=True, min_width=10)
        entries.add_column("account", no_wrap=True, min_width=7)
        entries.add_column("type", no_wrap=True, overflow="ellipsis", max_width=24)
        entries.add_column("event_id", no_wrap=True, overflow="ellipsis")
        for entry in recent:
            entries.add_row(
                entry.received_at[11:19], entry.source, entry.account, entry.type, entry.event_id
            )
        return Group(
            *(Text(line, overflow="ellipsis", no_wrap=True) for line in self.header),
            Text(status, style="bold"),
            Text("accounts (the daemon's /metrics)", style="dim"),
            accounts,
            Text("consumer groups downstream (the daemon's /metrics)", style="dim"),
            group_table(groups),
            Text("newest stream entries (XREVRANGE)", style="dim"),
            entries,
        )


def _say(console: Console, line: str, style: str | None = None) -> None:
    console.print(line, style=style, markup=False, highlight=False)


def print_summary(
    console: Console, checks: Sequence[AccountCheck], notes: Sequence[str], result: str, ok: bool
) -> None:
    """The per-account comparison, any notes, and the RESULT line."""
    _say(console, "")
    _say(console, "Summary: what the sandboxes handed out vs. what is on the streams")
    for check in checks:
        _say(console, f"  {check.line()}")
    for note in notes:
        _say(console, f"  note: {note}")
    _say(console, result, "bold green" if ok else "bold red")


def print_keep(console: Console, server: LocalRedis, streams: StreamSettings, tmp: Path) -> None:
    """Where the still-running Redis is, and how to read and then stop it."""
    dp, mi = streams.docplanner, streams.myinvois
    for line in (
        f"Redis is still running: {server.url}  (unix socket {server.socket})",
        f"  redis-cli -p {server.port} XREAD COUNT 3 STREAMS '{dp}' '{mi}' 0 0",
        f"  python -m drainer_consumer --redis {server.url} --stream '{dp}' "
        "--group mine --consumer me --count 10",
        f"  stop it: redis-cli -p {server.port} shutdown nosave && rm -rf {tmp}",
    ):
        _say(console, line)
