"""``drainer status``: per account cursor, spool backlog, stream length, last success/error,
and each stream's consumer groups (lag, pending, oldest pending age, lost entries).

Read-only and safe beside a running daemon: the spool is scanned without being opened
for writing, Redis is only read, and the running daemon (if any) is asked for its
``/metrics`` and ``/readyz`` on ``server.listen``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.envelope import PullBatch, parse_pull_body
from daemon.settings import Settings, config_path, load_settings
from daemon.sink import connect, related_key
from daemon.sink.groups import read_groups
from daemon.spool import decode_payload, scan

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
        data = segment.read_bytes()
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
        return samples, {"daemon": "not running (or server.listen unreachable)"}
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
    except redis.RedisError as exc:
        lengths, groups = {"error": None}, {}
        redis_error: str | None = f"{type(exc).__name__}: {exc}"
    else:
        redis_error = None
    failing = ready.get("not_ready", {}) if isinstance(ready, dict) else {}
    accounts: list[dict[str, Any]] = []
    for dp in settings.docplanner:
        directory = settings.spool.dir / f"docplanner-{dp.name}"
        records, events, size = spool_backlog(directory)
        accounts.append(
            {
                "source": "docplanner",
                "account": dp.name,
                "mode": dp.mode,
                "cursor": f"spool record {spool_cursor(directory)} published",
                "spool_pending_records": records,
                "spool_pending_notifications": events,
                "spool_bytes": size,
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
            raw = client.get(related_key(streams.myinvois, f"watermark:{mi.name}"))
            watermark = _iso(float(raw)) if raw else None
        accounts.append(
            {
                "source": "myinvois",
                "account": mi.name,
                "cursor": watermark,
                "stream": streams.myinvois,
                "last_success": _iso(
                    samples.get(("drainer_last_success_timestamp_seconds", "myinvois", mi.name))
                ),
                "last_error": _errors(failing, f"myinvois:{mi.name}:"),
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


def _errors(failing: dict[str, str], prefix: str) -> str | None:
    found = [
        f"{name.removeprefix(prefix)}: {why}"
        for name, why in failing.items()
        if name.startswith(prefix)
    ]
    return "; ".join(found) or None


def run(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args.config, os.environ), os.environ)
    report = collect(settings)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout)
    daemon = report["daemon"]
    state = "ready" if daemon.get("ready") else json.dumps(daemon)
    console.print(f"daemon: {state}   redis: {report['redis']}")
    table = Table(
        "source",
        "account",
        "cursor / watermark",
        "spool backlog",
        "queue",
        "stream",
        "last success",
        "last error",
    )
    for account in report["accounts"]:
        backlog = (
            f"{account['spool_pending_notifications']} ({account['spool_bytes']} B)"
            if account["source"] == "docplanner"
            else "—"
        )
        queue = account.get("queue_remaining")
        table.add_row(
            account["source"],
            account["account"],
            account["cursor"] or "—",
            backlog,
            "—" if queue is None else f"{queue:.0f}",
            f"{account['stream']} ({report['stream_lengths'].get(account['stream'], '?')})",
            account["last_success"] or "never",
            account["last_error"] or "",
        )
    console.print(table)
    console.print(group_table(report["consumer_groups"]))
    return 0


def group_table(groups: dict[str, list[dict[str, Any]]]) -> Any:
    """Each stream's consumer groups; a stream without groups says so."""
    from rich.table import Table

    table = Table("stream", "group", "consumers", "lag", "pending", "oldest pending", "lost")
    for stream, found in groups.items():
        if not found:
            table.add_row(stream, "(no consumer group)", "", "", "", "", "")
        for g in found:
            lost = {True: "YES", False: "no", None: "?"}[g["lost_entries"]]
            table.add_row(
                stream,
                g["group"],
                str(g["consumers"]),
                "?" if g["lag"] is None else str(g["lag"]),
                str(g["pending"]),
                f"{g['oldest_pending_age_seconds']:.0f}s" if g["pending"] else "—",
                lost,
            )
    return table
