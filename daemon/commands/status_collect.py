"""``drainer status``, collecting: the daemon's ``/metrics`` and ``/readyz``, Redis (stream
lengths, consumer groups, watermarks) and each account's spool (read through
:mod:`daemon.spool.read`). Read-only: safe beside a running daemon.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.status_upstream import upstream_said
from daemon.envelope.docplanner import PullBatch, parse_pull_body
from daemon.settings import Settings
from daemon.sink import connect, watermark_key
from daemon.sink.failures import REDIS_ERRORS
from daemon.sink.groups import read_groups
from daemon.spool.read import published_seq, read_backlog

STATUS_GROUP_LIMIT = 1000  # a terminal, not a metrics label set: show (nearly) every group


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
                "cursor": f"spool record {published_seq(directory)} published",
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
                raw = client.get(watermark_key(streams.myinvois, mi.name))
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
    """Pending records, notifications (a raw pull body counted by parsing it) and bytes."""
    backlog = read_backlog(directory)
    events = 0
    for record in backlog.pending:
        if record.raw is None:
            events += len(record.entries)
        else:
            parsed = parse_pull_body(record.raw.body)
            events += len(parsed.items) if isinstance(parsed, PullBatch) else 1
    return {
        "spool_pending_records": len(backlog.pending),
        "spool_pending_notifications": events,
        "spool_bytes": backlog.bytes,
    }


def _errors(failing: dict[str, str], prefix: str) -> str | None:
    found = [
        f"{name.removeprefix(prefix)}: {why}"
        for name, why in failing.items()
        if name.startswith(prefix)
    ]
    return "; ".join(found) or None
