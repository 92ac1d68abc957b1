"""Stream retention that never drops an unread entry silently (``[redis] retention``).

- ``"consumer_groups_capped"`` (default): every minute, per stream, trim entries older
  than ``retention_age`` that every consumer group has acknowledged (the floor below).
  ``stream_maxlen`` is a hard cap: a stream still longer than that loses first what every
  group has acknowledged, then (``MAXLEN ~``) entries some group has not: each of those
  is counted (``drainer_retention_trimmed_unread_total``) and logged. A stream without
  groups is trimmed to ``stream_maxlen`` (and by age) with nothing counted.
- ``"maxlen"``: the publish script trims with ``XADD ... MAXLEN ~ stream_maxlen``;
  nothing runs here, and nothing is counted (the scrape-time flag
  ``drainer_consumer_group_lost_entries`` still shows a group that lost entries).
- ``"minid"``: every minute, ``XTRIM MINID ~ <now - retention_age>`` on each stream.
- ``"consumer_groups"``: every minute, trim each stream up to the oldest entry some
  consumer group still needs: per group, the first id after its ``last-delivered-id`` or,
  if lower, the smallest id in its pending list (``XPENDING``); the floor is the lowest of
  those over all groups. A stream without consumer groups is never trimmed.

With the other modes the publish script gets ``maxlen = 0``
(``RedisSettings.publish_maxlen``). ``~`` trims whole radix-tree nodes only, so a little
more than asked is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from daemon.sink.connect import RedisClient
from daemon.sink.failures import REDIS_ERRORS, Refusals
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


def info_field(info: dict[Any, Any], name: str) -> Any:
    """A field of an ``XINFO`` reply, whether the client decodes responses or not."""
    return info.get(name, info.get(name.encode()))


def consumer_group_floor(client: RedisClient, stream: str) -> StreamId | None:
    """The lowest id any consumer group of ``stream`` has not acknowledged, or None."""
    if not client.exists(stream):
        return None
    floor: StreamId | None = None
    for group in client.xinfo_groups(stream):
        last_ms, last_seq = parse_id(info_field(group, "last-delivered-id"))
        bound: StreamId = (last_ms, last_seq + 1)
        if int(info_field(group, "pending")) > 0:
            summary = client.xpending(stream, info_field(group, "name"))
            if summary.get("min") is not None:
                bound = min(bound, parse_id(summary["min"]))
        floor = bound if floor is None else min(floor, bound)
    return floor


class RetentionWorker:
    """One ``tick`` trims every stream once (any mode but ``maxlen``)."""

    def __init__(
        self,
        client: RedisClient,
        streams: Sequence[str],
        mode: str,
        age: float,
        interval: float = RETENTION_INTERVAL,
        wall_clock: Callable[[], float] = time.time,
        approximate: bool = True,
        maxlen: int = 0,
        on_trimmed_unread: Callable[[str, int], None] = lambda stream, count: None,
    ) -> None:
        assert mode in ("minid", "consumer_groups", "consumer_groups_capped"), "maxlen is XADD's"
        self.name = f"redis:retention:{mode}"
        self.health = Health("redis", "retention", mode)
        self.client = client
        self.streams = list(streams)
        self.mode = mode
        self.age = age
        self.interval = interval
        self.wall_clock = wall_clock
        self.approximate = approximate
        self.maxlen = maxlen
        self.on_trimmed_unread = on_trimmed_unread
        self._backoff = Backoff(base=1.0, cap=60.0)
        # WRONGTYPE on a stream key, NOPERM: nothing is trimmed until an operator acts.
        self._refusals = Refusals(log, "redis.retention_refused", mode=mode)

    def _age_floor(self) -> StreamId:
        return (max(0, int((self.wall_clock() - self.age) * 1000)), 0)

    def floor(self, stream: str) -> StreamId | None:
        if self.mode == "minid":
            return self._age_floor()
        return consumer_group_floor(self.client, stream)

    def _trim_capped(self, stream: str) -> int:
        """Old acknowledged entries; then, past ``maxlen``, unread ones too (counted)."""
        floor = consumer_group_floor(self.client, stream)
        soft = self._age_floor() if floor is None else min(floor, self._age_floor())
        trimmed = int(
            self.client.xtrim(stream, minid=format_id(soft), approximate=self.approximate)
        )
        if not self.maxlen or int(self.client.xlen(stream)) <= self.maxlen:
            return trimmed
        if floor is not None:  # exact: whatever is left is unacknowledged by some group
            trimmed += int(self.client.xtrim(stream, minid=format_id(floor), approximate=False))
        unread = int(self.client.xtrim(stream, maxlen=self.maxlen, approximate=self.approximate))
        if floor is not None and unread:
            self.on_trimmed_unread(stream, unread)
            log.warning(
                "redis.retention_trimmed_unread",
                stream=stream,
                trimmed=unread,
                stream_maxlen=self.maxlen,
                oldest_needed=format_id(floor),
            )
        return trimmed + unread

    def tick(self, now: float) -> float:
        trimmed: dict[str, int] = {}
        try:
            for stream in self.streams:
                if self.mode == "consumer_groups_capped":
                    trimmed[stream] = self._trim_capped(stream)
                    continue
                floor = self.floor(stream)
                if floor is None:
                    continue
                trimmed[stream] = int(
                    self.client.xtrim(stream, minid=format_id(floor), approximate=self.approximate)
                )
        except REDIS_ERRORS as exc:
            self.health.failed(f"retention failed: {type(exc).__name__}: {exc}", now)
            self._refusals.failed(exc)
            return self._backoff.next()
        self._refusals.succeeded()
        self._backoff.reset()
        self.health.succeeded(self.wall_clock())
        if any(trimmed.values()):
            log.info("redis.retention_trimmed", mode=self.mode, trimmed=trimmed)
        return self.interval
