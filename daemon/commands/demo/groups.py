"""The downstream part of ``drainer demo``'s view: consumer groups, from the daemon's /metrics.

The demo starts the consumer kit (``python -m drainer_consumer``) as group ``demo`` on the
three streams; these rows show its lag and pending count as Prometheus would scrape them,
so the live view shows a group keeping up (lag near 0). With ``--keep`` the consumer is
left running, to stop by hand and watch its lag grow (``drainer status`` or ``XINFO
GROUPS``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.localredis import LocalRedis

if TYPE_CHECKING:  # rich is the optional ui extra: imported only where it draws
    from rich.console import Console
    from rich.table import Table


@dataclass(frozen=True)
class GroupRow:
    """One consumer group of one stream, as the daemon's metrics describe it."""

    stream: str
    group: str
    lag: int | None
    pending: int
    consumers: int

    def line(self) -> str:
        lag = "?" if self.lag is None else str(self.lag)
        return f"group {self.group} lag {lag} pending {self.pending} ({self.stream})"


def scrape_groups(metrics_url: str) -> list[GroupRow]:
    """Every exported ``drainer_consumer_group_*`` series, one row per (stream, group)."""
    try:
        text = requests.get(metrics_url, timeout=1.0).text
    except requests.RequestException:
        return []
    values: dict[tuple[str, str], dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("drainer_consumer_group_"):
            continue
        field = family.name.removeprefix("drainer_consumer_group_")
        for sample in family.samples:
            key = (sample.labels["stream"], sample.labels["group"])
            values.setdefault(key, {})[field] = sample.value
    return [
        GroupRow(
            stream,
            group,
            None if "lag" not in found else int(found["lag"]),
            int(found.get("pending", 0)),
            int(found.get("consumers", 0)),
        )
        for (stream, group), found in sorted(values.items())
    ]


def group_table(rows: Sequence[GroupRow]) -> Table:
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False, show_edge=False)
    table.add_column("stream", no_wrap=True)
    table.add_column("group", no_wrap=True)
    for name in ("consumers", "lag", "pending"):
        table.add_column(name, justify="right", no_wrap=True)
    for row in rows:
        lag = "?" if row.lag is None else f"{row.lag:,}"
        table.add_row(row.stream, row.group, str(row.consumers), lag, f"{row.pending:,}")
    return table


def print_consumer_kept(console: Console, pid: int, server: LocalRedis, stream: str) -> None:
    """How to stop the consumer left running by ``--keep`` and watch its group fall behind."""
    for line in (
        f"The consumer kit (group demo) is still running: pid {pid}",
        f"  stop it: kill {pid}   then add entries and watch the lag grow:",
        f"  redis-cli -p {server.port} XINFO GROUPS '{stream}'",
    ):
        console.print(line, markup=False, highlight=False)
