"""Stream retention that never drops an unread entry (``[redis] retention``).

- ``"maxlen"`` (default): the publish script trims with ``XADD ... MAXLEN ~ stream_maxlen``;
  nothing runs here.
- ``"minid"``: every minute, ``XTRIM MINID ~ <now - retention_age>`` on each stream.
- ``"consumer_groups"``: every minute, trim each stream up to the oldest entry some
  consumer group still needs: per group, the first id after its ``last-delivered-id`` or,
  if lower, the smallest id in its pending list (``XPENDING``); the floor is the lowest of
  those over all groups. A stream without consumer groups is never trimmed.

With these modes the publish script gets ``maxlen = 0`` (settings force ``stream_maxlen``
to 0). ``~`` trims whole radix-tree nodes only, so a little more than asked is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from daemon.sink import TRANSIENT_REDIS_ERRORS
from daemon.sink.connect import RedisClient
from daemon.worker import Backoff, Health

log = structlog.get_logger("daemon.sink.retention")

RETENTION_INTERVAL = 60.0
StreamId = tuple[int, int]


def parse_id(raw: bytes | str) -> StreamId:
    text = raw.decode() if isinstance(raw, bytes) else raw
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def format_id(stream_id: StreamId) -> str:
    return f"{stream_id[0]}-{stream_id[1]}"


def _field(info: dict[Any, Any], name: str) -> Any:
    return info.get(name, info.get(name.encode()))


def consumer_group_floor(client: RedisClient, stream: str) -> StreamId | None:
    """The lowest id any consumer group of ``stream`` has not acknowledged, or None."""
    if not client.exists(stream):
        return None
    floor: StreamId | None = None
    for group in client.xinfo_groups(stream):
        last_ms, last_seq = parse_id(_field(group, "last-delivered-id"))
        bound: StreamId = (last_ms, last_seq + 1)
        if int(_field(group, "pending")) > 0:
            summary = client.xpending(stream, _field(group, "name"))
            if summary.get("min") is not None:
                bound = min(bound, parse_id(summary["min"]))
        floor = bound if floor is None else min(floor, bound)
    return floor


class RetentionWorker:
    """One ``tick`` trims every stream once (``minid`` or ``consumer_groups`` mode)."""

    def __init__(
        self,
        client: RedisClient,
        streams: Sequence[str],
        mode: str,
        age: float,
        interval: float = RETENTION_INTERVAL,
        wall_clock: Callable[[], float] = time.time,
        approximate: bool = True,
    ) -> None:
        assert mode in ("minid", "consumer_groups"), "maxlen retention is done by XADD"
        self.name = f"redis:retention:{mode}"
        self.health = Health("redis", "retention", mode)
        self.client = client
        self.streams = list(streams)
        self.mode = mode
        self.age = age
        self.interval = interval
        self.wall_clock = wall_clock
        self.approximate = approximate
        self._backoff = Backoff(base=1.0, cap=60.0)

    def floor(self, stream: str) -> StreamId | None:
        if self.mode == "minid":
            return (max(0, int((self.wall_clock() - self.age) * 1000)), 0)
        return consumer_group_floor(self.client, stream)

    def tick(self, now: float) -> float:
        trimmed: dict[str, int] = {}
        try:
            for stream in self.streams:
                floor = self.floor(stream)
                if floor is None:
                    continue
                trimmed[stream] = int(
                    self.client.xtrim(stream, minid=format_id(floor), approximate=self.approximate)
                )
        except TRANSIENT_REDIS_ERRORS as exc:
            self.health.failed(f"retention failed: {type(exc).__name__}: {exc}", now)
            return self._backoff.next()
        self._backoff.reset()
        self.health.succeeded(self.wall_clock())
        if any(trimmed.values()):
            log.info("redis.retention_trimmed", mode=self.mode, trimmed=trimmed)
        return self.interval
