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
    """Keeps published entries in memory; de-duplicates on event_id like the Lua script."""

    fail: int = 0  # the next ``fail`` publish calls raise SinkError
    streams: dict[str, list[StreamEntry]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    watermarks: dict[tuple[str, str], datetime] = field(default_factory=dict)
    calls: int = 0

    def publish(
        self, entries: Sequence[StreamEntry], watermark: WatermarkUpdate | None = None
    ) -> PublishResult:
        """Entries, then the watermark (the real sink sends both in one pipeline, then WAIT)."""
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise SinkError("redis publish failed: ConnectionError: refused")
        published: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        for entry in entries:
            if entry.event_id in self.seen:
                duplicates[entry.stream] = duplicates.get(entry.stream, 0) + 1
                continue
            self.seen.add(entry.event_id)
            self.streams.setdefault(entry.stream, []).append(entry)
            published[entry.stream] = published.get(entry.stream, 0) + 1
        if watermark is not None:
            self.advance_watermark(watermark.stream, watermark.account, watermark.moment)
        return PublishResult(
            sum(published.values()), sum(duplicates.values()), published, duplicates
        )

    def advance_watermark(self, stream: str, account: str, moment: datetime) -> None:
        if self.fail:
            self.fail -= 1
            raise SinkError("redis write failed: ConnectionError: refused")
        self.watermarks[(stream, account)] = moment

    def get_watermark(self, stream: str, account: str) -> datetime | None:
        return self.watermarks.get((stream, account))


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
