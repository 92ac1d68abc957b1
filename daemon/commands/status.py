"""``drainer status``: per account cursor, spool backlog, stream length, last success/error,
and each stream's consumer groups (lag, pending, oldest pending age, lost entries).

Read-only and safe beside a running daemon: the spool is scanned without being opened
for writing, Redis is only read, and the running daemon (if any) is asked for its
``/metrics`` and ``/readyz`` on ``server.listen``. Needs no upstream secrets: the
configuration is loaded without reading any ``*_file`` secret.

The exit code says whether all is well (:data:`EPILOG`); every problem also gets one line
on stderr. The table uses ``rich`` when installed (the ``ui`` extra), else plain text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.status_upstream import upstream_lines, upstream_said
from daemon.envelope.docplanner import PullBatch, parse_pull_body
from daemon.settings import Settings, config_path, load_settings
from daemon.sink import connect, related_key
from daemon.sink.failures import REDIS_ERRORS
from daemon.sink.groups import read_groups
from daemon.spool import decode_payload, scan
from daemon.spool.files import read_private

EXIT_HEALTHY = 0
EXIT_DAEMON_UNREACHABLE = 3
EXIT_REDIS_DOWN = 4
EXIT_NOT_READY = 5

EPILOG = f"""exit codes (when several things are wrong, the lowest code wins;
each problem is also printed as one line on stderr):
  {EXIT_HEALTHY}  the daemon answers /readyz as ready, Redis answers, no account is failing
  2  usage or config error
  {EXIT_DAEMON_UNREACHABLE}  the daemon does not answer on server.listen (down, or wrong address)
  {EXIT_REDIS_DOWN}  Redis does not answer (to this command or to the daemon)
  {EXIT_NOT_READY}  the daemon answers but is not ready: an account is failing, or it is stopping"""

STATUS_GROUP_LIMIT = 1000  # a terminal, not a metrics label set: show (nearly) every group


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML config file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def spool_cursor(directory: Path) -> int:
    """The sequence number of the last spool record published to Redis (0: none yet)."""
    try:
        return int((directory / "cursor").read_text().strip() or 0)
    except (OSError, ValueError):
        return 0


def spool_backlog(directory: Path) -> tuple[int, int, int]:
    """(pending records, pending notifications, bytes) of one account's spool, read-only."""
    published = spool_cursor(directory)
    records = events = size = 0
    for segment in sorted(directory.glob("*.wal")) if directory.is_dir() else []:
        data = read_private(segment)
        size += len(data)
        found, _ = scan(data)
        for seq, _offset, _length, payload in found:
            if seq <= published:
                continue
            records += 1
            record = decode_payload(seq, payload)
            if record.raw is None:
                events += len(record.entries)
            else:
                parsed = parse_pull_body(record.raw.body)
                events += len(parsed.items) if isinstance(parsed, PullBatch) else 1
    return records, events, size


def daemon_view(settings: Settings) -> tuple[dict[tuple[str, str, str], float], dict[str, Any]]:
    """Metrics samples keyed by (name, source, account) and the /readyz body; empty if down."""
    base = f"http://{settings.server.host}:{settings.server.port}"
    samples: dict[tuple[str, str, str], float] = {}
    try:
        text = requests.get(f"{base}/metrics", timeout=2).text
        ready = requests.get(f"{base}/readyz", timeout=5).json()
    except (requests.RequestException, ValueError):
        return samples, {"reachable": False, "daemon": f"not answering on {base}"}
    if not isinstance(ready, dict):
        return samples, {"reachable": False, "daemon": f"{base}/readyz is not the drainer's"}
    ready["reachable"] = True
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, sample.labels.get("source", ""), sample.labels.get("account", ""))
            samples[key] = sample.value
    return samples, ready


def _iso(seconds: float | None) -> str | None:
    if not seconds:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).isoformat().replace("+00:00", "Z")


def collect(settings: Settings) -> dict[str, Any]:
    samples, ready = daemon_view(settings)
    client = connect(settings.redis, timeout=2)
    streams = settings.streams
    lengths: dict[str, int | None] = {}
    groups: dict[str, list[dict[str, Any]]] = {}
    try:
        for stream in (streams.docplanner, streams.myinvois, streams.deadletter):
            lengths[stream] = int(client.xlen(stream))
        for found in read_groups(client, list(lengths), limit=STATUS_GROUP_LIMIT):
            groups[found.stream] = [
                {
                    "group": g.group,
                    "consumers": g.consumers,
                    "lag": g.lag,
                    "pending": g.pending,
                    "oldest_pending_age_seconds": round(g.oldest_pending_age, 3),
                    "lost_entries": g.lost_entries,
                }
                for g in found.groups
            ]
    except REDIS_ERRORS as exc:  # any topology; see daemon.sink.failures
        lengths, groups = {"error": None}, {}
        redis_error: str | None = f"{type(exc).__name__}: {exc}"
    else:
        redis_error = None
    failing = ready.get("not_ready", {}) if isinstance(ready, dict) else {}
    accounts: list[dict[str, Any]] = []
    for dp in settings.docplanner:
        directory = settings.spool.account_dir("docplanner", dp.name)
        accounts.append(
            {
                "source": "docplanner",
                "account": dp.name,
                "mode": dp.mode,
                "cursor": f"spool record {spool_cursor(directory)} published",
                **_backlog(directory),
                "stream": streams.docplanner,
                "queue_remaining": samples.get(
                    ("drainer_docplanner_queue_remaining", "docplanner", dp.name)
                ),
                "last_success": _iso(
                    samples.get(("drainer_last_success_timestamp_seconds", "docplanner", dp.name))
                ),
                "last_error": _errors(failing, f"docplanner:{dp.name}:"),
            }
        )
    for mi in settings.myinvois:
        watermark: str | None = None
        if redis_error is None:
            try:
                raw = client.get(related_key(streams.myinvois, f"watermark:{mi.name}"))
            except REDIS_ERRORS as exc:  # Redis went away since the reads above
                redis_error = f"{type(exc).__name__}: {exc}"
                raw = None
            watermark = _iso(float(raw)) if raw else None
        accounts.append(
            {
                "source": "myinvois",
                "account": mi.name,
                "cursor": watermark,
                # A window read but not yet on the stream (Redis down) waits in the spool.
                **_backlog(settings.spool.account_dir("myinvois", mi.name)),
                "stream": streams.myinvois,
                "last_success": _iso(
                    samples.get(("drainer_last_success_timestamp_seconds", "myinvois", mi.name))
                ),
                "last_error": _errors(failing, f"myinvois:{mi.name}:"),
                # What MyInvois said about a request it refuses (a 400 not about pageSize).
                "upstream_error": upstream_said(failing, f"myinvois:{mi.name}:"),
            }
        )
    client.close()
    return {
        "daemon": ready,
        "redis": redis_error or "ok",
        "stream_lengths": lengths,
        "consumer_groups": groups,
        "accounts": accounts,
    }


def _backlog(directory: Path) -> dict[str, int]:
    records, events, size = spool_backlog(directory)
    return {
        "spool_pending_records": records,
        "spool_pending_notifications": events,
        "spool_bytes": size,
    }


def _errors(failing: dict[str, str], prefix: str) -> str | None:
    found = [
        f"{name.removeprefix(prefix)}: {why}"
        for name, why in failing.items()
        if name.startswith(prefix)
    ]
    return "; ".join(found) or None


def problems(report: dict[str, Any]) -> list[tuple[int, str]]:
    """(exit code, one line) for every thing that is wrong, most basic first."""
    found: list[tuple[int, str]] = []
    daemon = report["daemon"]
    if not daemon.get("reachable"):
        found.append((EXIT_DAEMON_UNREACHABLE, f"daemon unreachable: {daemon.get('daemon')}"))
    if report["redis"] != "ok":
        found.append((EXIT_REDIS_DOWN, f"redis down: {report['redis']}"))
    failing = daemon.get("not_ready", {}) if daemon.get("reachable") else {}
    if "redis" in failing and report["redis"] == "ok":
        found.append((EXIT_REDIS_DOWN, f"redis down for the daemon: {failing['redis']}"))
    for name, why in failing.items():
        if name != "redis":
            found.append((EXIT_NOT_READY, f"not ready: {name}: {why}"))
    if daemon.get("reachable") and not daemon.get("ready") and not failing:
        found.append((EXIT_NOT_READY, "not ready: the daemon gave no reason"))
    return found


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config, os.environ)
    settings = load_settings(path, os.environ, secrets=False)
    report = collect(settings)
    found = problems(report)
    code = min((c for c, _ in found), default=EXIT_HEALTHY)
    try:
        if args.json:
            print(json.dumps({**report, "exit_code": code}, indent=2))
        else:
            render(report)
        sys.stdout.flush()
    except BrokenPipeError:  # `drainer status --json | head`: the reader left early
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
    for _, line in found:
        print(f"drainer status: {line}", file=sys.stderr)
    return code


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
