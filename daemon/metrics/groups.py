"""Downstream metrics: one series per (stream, consumer group), read at scrape time.

The values come from a reader the runtime passes in (``daemon.sink.groups`` reads
``XINFO STREAM``, ``XINFO GROUPS`` and ``XPENDING``); this module only shapes them into
Prometheus families, so it never talks to Redis itself.

Group names come from Redis, not from the configuration, so the label set is capped:
at most ``limit`` groups per stream are exported (the worst first: lost entries, then
the largest lag), and ``drainer_consumer_groups_not_exported{stream}`` says how many
were left out. A value Redis cannot give (lag on Redis 6.2 while a group is part-way
through the stream; the lost-entries flag without ``entries-read``) is left out rather
than guessed. A Redis error during a scrape is logged once and the families are
skipped: ``/metrics`` itself keeps answering.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import structlog
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = structlog.get_logger("daemon.metrics.groups")

DEFAULT_GROUP_LIMIT = 20


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One consumer group of one stream, as Redis describes it at one moment."""

    group: str
    consumers: int
    pending: int  # delivered, not acknowledged
    lag: int | None  # not delivered yet; None when Redis cannot tell
    oldest_pending_age: float  # seconds; 0 when nothing is pending
    lost_entries: bool | None  # entries were trimmed before this group read them


@dataclass(frozen=True, slots=True)
class StreamGroups:
    """The exported groups of one stream, and how many more it has."""

    stream: str
    groups: tuple[GroupStats, ...]
    not_exported: int = 0


GroupReader = Callable[[], Iterable[StreamGroups]]

_FAMILIES = (
    ("lag", "drainer_consumer_group_lag", "Entries of the stream not yet delivered to the group."),
    (
        "pending",
        "drainer_consumer_group_pending",
        "Entries delivered to the group and not yet acknowledged (XPENDING).",
    ),
    (
        "oldest_pending_age",
        "drainer_consumer_group_oldest_pending_age_seconds",
        "Age of the oldest entry delivered to the group and not yet acknowledged (0: none).",
    ),
    ("consumers", "drainer_consumer_group_consumers", "Consumers the group has."),
    (
        "lost_entries",
        "drainer_consumer_group_lost_entries",
        "1 when entries were trimmed from the stream before the group read them.",
    ),
)


class ConsumerGroupCollector(Collector):
    """``drainer_consumer_group_*{stream,group}``, read when Prometheus scrapes."""

    def __init__(self, read: GroupReader) -> None:
        self._read = read
        self._failing = False

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            key: GaugeMetricFamily(name, text, labels=["stream", "group"])
            for key, name, text in _FAMILIES
        }
        skipped = GaugeMetricFamily(
            "drainer_consumer_groups_not_exported",
            "Consumer groups of the stream left out of the drainer_consumer_group_* series "
            "(the export is capped per stream).",
            labels=["stream"],
        )
        try:
            streams = list(self._read())
        except Exception as exc:  # a scrape must not fail because Redis is down
            if not self._failing:
                log.warning("metrics.consumer_groups_unreadable", error=type(exc).__name__)
            self._failing = True
            return
        if self._failing:
            log.info("metrics.consumer_groups_readable")
        self._failing = False
        for stream in streams:
            skipped.add_metric([stream.stream], float(stream.not_exported))
            for stats in stream.groups:
                labels = [stream.stream, stats.group]
                for key, _, _ in _FAMILIES:
                    value = getattr(stats, key)
                    if value is not None:
                        families[key].add_metric(labels, float(value))
        yield from families.values()
        yield skipped
