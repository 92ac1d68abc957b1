"""Helpers of the reliability suite: the real CLI, a real Redis, the sandbox upstreams.

Every scenario prints its figures (what the sandbox handed out, what is on the stream,
duplicates, losses) and asserts correctness, never speed.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.localredis import LocalRedis
from daemon.spool import decode_payload, scan
from tests.helpers import dp_account, stream_entries

__all__ = ["dp_account"]  # re-exported for the scenario modules

STREAM = "drainer:{docplanner}"
MYINVOIS_STREAM = "drainer:{myinvois}"
DEADLETTER = "drainer:{deadletter}"


def key(notification: Any) -> str:
    """A notification's identity for counting: its canonical JSON."""
    return json.dumps(notification, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Tally:
    """What is on a stream compared with what was expected there."""

    expected: int
    on_stream: int
    duplicates: int
    lost: int
    unexpected: int

    def line(self, scenario: str, extra: str = "") -> str:
        tail = f", {extra}" if extra else ""
        return (
            f"\n[{scenario}] expected {self.expected}, on stream {self.on_stream}, "
            f"duplicates {self.duplicates}, lost {self.lost}, unexpected {self.unexpected}{tail}"
        )


def tally(published: Iterable[Any], expected: Iterable[Any]) -> Tally:
    """Count duplicates, losses and strangers of ``published`` against ``expected``."""
    seen = Counter(key(p) for p in published)
    wanted = {key(e) for e in expected}
    return Tally(
        expected=len(wanted),
        on_stream=sum(seen.values()),
        duplicates=sum(n - 1 for n in seen.values() if n > 1),
        lost=len(wanted - set(seen)),
        unexpected=len(set(seen) - wanted),
    )


def docplanner_payloads(client: redis.Redis, account: str = "pl") -> list[Any]:
    """The payloads of one account's DocPlanner stream entries, in stream order."""
    return [
        json.loads(e["payload"]) for e in stream_entries(client, STREAM) if e["account"] == account
    ]


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a /metrics text (0 when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def wipe(server: LocalRedis) -> list[str]:
    """Delete a stopped Redis' data (AOF dir, RDB); returns what was deleted."""
    assert not server.running, "stop Redis before wiping its data"
    deleted = []
    for path in server.directory.iterdir():
        if path.name.startswith("appendonly") or path.suffix == ".rdb":
            deleted.append(path.name)
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    return deleted


def spool_segments(config_dir: Path, account: str = "pl") -> list[Path]:
    """The .wal segments of one DocPlanner account's spool, oldest first."""
    return sorted((config_dir / "spool" / f"docplanner-{account}").glob("*.wal"))


def spool_backlog(config_dir: Path, account: str = "pl") -> tuple[int, int]:
    """(records, notifications) in the spool after its cursor, read from disk."""
    directory = config_dir / "spool" / f"docplanner-{account}"
    cursor_file = directory / "cursor"
    cursor = int(cursor_file.read_text() or 0) if cursor_file.exists() else 0
    records = notifications = 0
    for segment in spool_segments(config_dir, account):
        for seq, _, _, payload in scan(segment.read_bytes())[0]:
            if seq <= cursor:
                continue
            record = decode_payload(seq, payload)
            records += 1
            if record.raw is None:
                notifications += len(record.entries)
            else:
                document = json.loads(record.raw.body)
                notifications += (
                    len(document["notifications"]) if "notifications" in document else 1
                )
    return records, notifications
