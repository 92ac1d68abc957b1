"""``drainer status``, rendering: the report as a ``rich`` table when the ``ui`` extra is
installed, else as aligned plain text."""

from __future__ import annotations

import sys
from typing import Any

from daemon.commands.status_upstream import upstream_lines


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for account in report["accounts"]:
        backlog = f"{account['spool_pending_notifications']} ({account['spool_bytes']} B)"
        queue = account.get("queue_remaining")
        rows.append(
            [
                account["source"],
                account["account"],
                account["cursor"] or "-",
                backlog,
                "-" if queue is None else f"{queue:.0f}",
                f"{account['stream']} ({report['stream_lengths'].get(account['stream'], '?')})",
                account["last_success"] or "never",
                account["last_error"] or "",
            ]
        )
    return rows


HEADERS = (
    "source",
    "account",
    "cursor / watermark",
    "spool backlog",
    "queue",
    "stream",
    "last success",
    "last error",
)


def render(report: dict[str, Any]) -> None:
    """The human view: a rich table when ``rich`` is installed, else aligned plain text."""
    daemon = report["daemon"]
    if daemon.get("ready"):
        state = "ready"
    elif daemon.get("reachable"):
        state = "not ready"
    else:
        state = str(daemon.get("daemon"))
    heading = f"daemon: {state}   redis: {report['redis']}" + upstream_lines(report)
    tables = [(HEADERS, _rows(report)), (GROUP_HEADERS, _group_rows(report["consumer_groups"]))]
    try:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table
    except ImportError:  # the optional `ui` extra is not installed
        print(heading)
        for headers, rows in tables:
            # An empty table (no consumer group read while Redis is down) has its headers.
            widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
            for line in (list(headers), *rows):
                cells = zip(line, widths, strict=True)
                print("  ".join(cell.ljust(width) for cell, width in cells))
        return
    console = Console(file=sys.stdout)
    console.print(heading, markup=False)  # upstream text is shown as it is, never as markup
    for headers, body in tables:
        table = Table(*headers)
        for row in body:
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)


GROUP_HEADERS = ("stream", "group", "consumers", "lag", "pending", "oldest pending", "lost")


def _group_rows(groups: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """Each stream's consumer groups; a stream without groups says so."""
    rows = []
    for stream, found in groups.items():
        if not found:
            rows.append([stream, "(no consumer group)", "", "", "", "", ""])
        for g in found:
            rows.append(
                [
                    stream,
                    g["group"],
                    str(g["consumers"]),
                    "?" if g["lag"] is None else str(g["lag"]),
                    str(g["pending"]),
                    f"{g['oldest_pending_age_seconds']:.0f}s" if g["pending"] else "-",
                    {True: "YES", False: "no", None: "?"}[g["lost_entries"]],
                ]
            )
    return rows
