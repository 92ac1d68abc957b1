"""Fakes at the real seams: the Redis sink and the DocPlanner API (no network, no Redis)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from daemon.envelope.entries import StreamEntry
from daemon.errors import SinkError
from daemon.sink import PublishResult, WatermarkUpdate
from daemon.sources.docplanner.api import PullResponse


@dataclass
class FakeSink:
    """Keeps published entries in memory, in RedisSink's call order (pinned against the real
    sink by tests/integration/test_fake_sink_order.py).

    ``publish`` sends each run of consecutive entries for one stream (de-duplicated on
    event_id like the Lua script), in order, then the watermark; ``advance_watermark`` is a
    ``publish`` of no entries with the watermark, as in RedisSink. ``calls`` records each
    step as RedisSink sends it: ``("entries", stream, event_ids)``, then
    ``("watermark", stream, account)``.
    """

    fail: int = 0  # the next ``fail`` publish calls raise SinkError before writing anything
    fail_watermark: int = 0  # the next ``fail_watermark`` watermark writes raise (entries kept)
    streams: dict[str, list[StreamEntry]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    watermarks: dict[tuple[str, str], datetime] = field(default_factory=dict)
    calls: list[tuple[str, str, object]] = field(default_factory=list)

    def publish(
        self, entries: Sequence[StreamEntry], watermark: WatermarkUpdate | None = None
    ) -> PublishResult:
        """Runs of entries first, then the watermark, only once every run went through."""
        if self.fail:
            self.fail -= 1
            raise SinkError("redis publish failed: ConnectionError: refused")
        published: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        for stream, run in _runs(entries):
            self.calls.append(("entries", stream, tuple(entry.event_id for entry in run)))
            for entry in run:
                if entry.event_id in self.seen:
                    duplicates[stream] = duplicates.get(stream, 0) + 1
                    continue
                self.seen.add(entry.event_id)
                self.streams.setdefault(stream, []).append(entry)
                published[stream] = published.get(stream, 0) + 1
        if watermark is not None:
            self.calls.append(("watermark", watermark.stream, watermark.account))
            if self.fail_watermark:
                self.fail_watermark -= 1
                raise SinkError("redis publish failed: ConnectionError: refused")
            key = (watermark.stream, watermark.account)
            current = self.watermarks.get(key)
            if current is None or watermark.moment > current:  # never back, like the script
                self.watermarks[key] = watermark.moment
        return PublishResult(
            sum(published.values()), sum(duplicates.values()), published, duplicates
        )

    def advance_watermark(self, stream: str, account: str, moment: datetime) -> None:
        self.publish([], WatermarkUpdate(stream, account, moment))

    def get_watermark(self, stream: str, account: str) -> datetime | None:
        return self.watermarks.get((stream, account))


def _runs(entries: Sequence[StreamEntry]) -> list[tuple[str, list[StreamEntry]]]:
    """Consecutive entries grouped by stream, order kept (one script call each in RedisSink)."""
    runs: list[tuple[str, list[StreamEntry]]] = []
    for entry in entries:
        if runs and runs[-1][0] == entry.stream:
            runs[-1][1].append(entry)
        else:
            runs.append((entry.stream, [entry]))
    return runs


@dataclass
class FakeDocPlannerApi:
    """Answers pulls from a script: bytes (a body), None (404 empty) or an exception."""

    script: list[bytes | Exception | None]
    pulls: int = 0

    def pull(self, limit: int) -> PullResponse:
        self.pulls += 1
        answer = self.script.pop(0) if self.script else None
        if isinstance(answer, Exception):
            raise answer
        return PullResponse(answer)
