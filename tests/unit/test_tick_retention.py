"""RetentionWorker.tick through a fake client seam: what it trims, and Redis failures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis

from daemon.sink.retention import RETENTION_INTERVAL, RetentionWorker

NOW = 1_790_000_000.0


@dataclass
class FakeTrimClient:
    """Records XTRIM calls; XINFO GROUPS / XPENDING answer from ``groups``."""

    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    length: int = 0
    fail: Exception | None = None
    trims: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def xtrim(self, stream: str, **kwargs: Any) -> int:
        if self.fail is not None:
            raise self.fail
        self.trims.append((stream, kwargs))
        return 3

    def exists(self, stream: str) -> int:
        return 1

    def xinfo_groups(self, stream: str) -> list[dict[str, Any]]:
        return self.groups.get(stream, [])

    def xpending(self, stream: str, group: str) -> dict[str, Any]:
        return {"min": None}

    def xlen(self, stream: str) -> int:
        return self.length


def test_minid_trims_each_stream_by_age() -> None:
    """minid: XTRIM MINID ~ (now - age) on every stream, then wait the interval."""
    client = FakeTrimClient()
    worker = RetentionWorker(client, ["a", "b"], "minid", 3600.0, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    assert worker.tick(0.0) == RETENTION_INTERVAL
    floor = f"{int((NOW - 3600) * 1000)}-0"
    assert client.trims == [
        ("a", {"minid": floor, "approximate": True}),
        ("b", {"minid": floor, "approximate": True}),
    ]


def test_consumer_groups_trims_up_to_the_lowest_unread_entry() -> None:
    """consumer_groups: the floor is the first id after the slowest group's last delivered."""
    groups = [
        {"name": "g1", "last-delivered-id": "500-0", "pending": 0},
        {"name": "g2", "last-delivered-id": "200-4", "pending": 0},
    ]
    client = FakeTrimClient(groups={"s": groups})
    worker = RetentionWorker(client, ["s"], "consumer_groups", 3600.0, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    worker.tick(0.0)
    assert client.trims == [("s", {"minid": "200-5", "approximate": True})]


def test_a_stream_without_groups_is_never_trimmed_in_consumer_groups_mode() -> None:
    """No consumer group: nothing is known to be read, nothing is trimmed."""
    client = FakeTrimClient()
    worker = RetentionWorker(client, ["s"], "consumer_groups", 3600.0, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    worker.tick(0.0)
    assert client.trims == []


def test_a_redis_failure_backs_off_and_marks_the_worker_failing() -> None:
    """ConnectionError: failing since now, retried sooner than the interval."""
    client = FakeTrimClient(fail=redis.ConnectionError("refused"))
    worker = RetentionWorker(client, ["s"], "minid", 3600.0, wall_clock=lambda: NOW)  # type: ignore[arg-type]
    wait = worker.tick(7.0)
    assert 0 < wait < RETENTION_INTERVAL and worker.health.failing_since == 7.0
