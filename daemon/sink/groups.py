"""Read what downstream consumer groups have done with our streams (scrape time, status).

Per stream: ``XINFO STREAM`` (length, first entry, last id, ``entries-added`` on Redis 7)
and ``XINFO GROUPS`` (per group: consumers, pending, ``last-delivered-id`` and, on Redis 7,
``entries-read`` and ``lag``); ``XPENDING`` (summary form) for the oldest pending id of
each exported group. Read-only; a stream that does not exist has no groups.

Lag is what Redis 7 reports. Where it reports none (Redis 6.2, or deleted entries inside
the group's range) it is derived only where it is certain: 0 when the group has been
given the newest entry, the stream length when its position is older than the first
entry; otherwise unknown (None).

Lost entries: a group lost entries to trimming when the stream no longer holds entries
added after its position. Redis 7 counts ``lag`` from ``entries-added - entries-read``,
so ``lag > length`` proves it; without those figures (6.2) the flag is unknown (None).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

from daemon.metrics.groups import DEFAULT_GROUP_LIMIT, GroupStats, StreamGroups
from daemon.sink.connect import RedisClient
from daemon.sink.retention import StreamId, parse_id
from daemon.sink.retention import info_field as _get


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_id(info: dict[Any, Any]) -> StreamId | None:
    first = _get(info, "first-entry")
    if not first:
        return None
    return parse_id(first[0])


def group_stats(group: dict[Any, Any], stream: dict[Any, Any]) -> GroupStats:
    """One ``XINFO GROUPS`` entry judged against its stream's ``XINFO STREAM`` (no I/O)."""
    length = int(_get(stream, "length"))
    first = _first_id(stream)
    last = parse_id(_get(stream, "last-generated-id") or "0-0")
    position = parse_id(_get(group, "last-delivered-id"))
    raw_lag = _get(group, "lag")
    lag: int | None = None if raw_lag is None else int(raw_lag)
    if lag is None:
        if position >= last or length == 0:
            lag = 0
        elif first is not None and position < first:
            lag = length
    lost: bool | None = None
    redis7 = _get(stream, "entries-added") is not None
    if redis7 and raw_lag is not None:
        lost = first is not None and position < first and int(raw_lag) > length
    return GroupStats(
        group=_text(_get(group, "name")),
        consumers=int(_get(group, "consumers")),
        pending=int(_get(group, "pending")),
        lag=lag,
        oldest_pending_age=0.0,
        lost_entries=lost,
    )


def _worst_first(stats: GroupStats) -> tuple[int, int, str]:
    return (-int(bool(stats.lost_entries)), -(stats.lag or 0), stats.group)


def read_stream_groups(
    client: RedisClient,
    stream: str,
    limit: int = DEFAULT_GROUP_LIMIT,
    wall_clock: Callable[[], float] = time.time,
) -> StreamGroups:
    """The ``limit`` worst groups of ``stream`` (lost entries, then lag), with their ages."""
    if not client.exists(stream):
        return StreamGroups(stream, ())
    info = client.xinfo_stream(stream)
    everyone = sorted(
        (group_stats(group, info) for group in client.xinfo_groups(stream)), key=_worst_first
    )
    shown = []
    now_ms = wall_clock() * 1000
    for stats in everyone[:limit]:
        oldest = client.xpending(stream, stats.group).get("min") if stats.pending else None
        if oldest is None:
            shown.append(stats)
        else:
            age = max(0.0, (now_ms - parse_id(oldest)[0]) / 1000)
            shown.append(replace(stats, oldest_pending_age=age))
    return StreamGroups(stream, tuple(shown), max(0, len(everyone) - limit))


def read_groups(
    client: RedisClient,
    streams: Sequence[str],
    limit: int = DEFAULT_GROUP_LIMIT,
    wall_clock: Callable[[], float] = time.time,
) -> Iterable[StreamGroups]:
    """:func:`read_stream_groups` for each stream; a Redis error propagates to the caller."""
    return [read_stream_groups(client, stream, limit, wall_clock) for stream in streams]
