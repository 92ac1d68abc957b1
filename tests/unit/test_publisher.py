"""Publisher.tick with a real spool in a temp dir and a fake sink: order, retries, watermark."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from daemon.envelope.entries import StreamEntry
from daemon.errors import InvariantError
from daemon.metrics import Metrics
from daemon.publisher import IDLE_WAIT, Publisher
from daemon.spool import RawBatch, SpoolBudget, SpoolLog
from tests.unit.fakes import FakeSink

STREAM = "s:{myinvois}"
DEAD = "s:{dl}"


def entries(*ids: str, stream: str = STREAM) -> list[StreamEntry]:
    return [StreamEntry(stream, i, {"event_id": i}) for i in ids]


def make(tmp_path: Path, sink: FakeSink, **options: object) -> Publisher:
    metrics = Metrics(CollectorRegistry(), [("myinvois", "acme")])
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    return Publisher("myinvois", "acme", spool, sink, metrics, DEAD, **options)  # type: ignore[arg-type]


def sample(publisher: Publisher, name: str) -> float:
    labels = {"source": "myinvois", "account": "acme"}
    value = publisher.metrics.registry.get_sample_value(name, labels)
    return value or 0.0


def test_pending_records_are_published_in_spool_order_then_marked(tmp_path: Path) -> None:
    """Two records go out in one call, in order; the spool is empty afterwards."""
    sink = FakeSink()
    publisher = make(tmp_path, sink)
    publisher.spool.append(entries("a", "b"))
    publisher.spool.append(entries("c"))
    assert publisher.tick(0.0) == IDLE_WAIT
    assert [e.event_id for e in sink.streams[STREAM]] == ["a", "b", "c"]
    assert publisher.spool.pending_records == 0
    assert sample(publisher, "drainer_events_published_total") == 3


def test_a_sink_failure_keeps_the_record_and_backs_off(tmp_path: Path) -> None:
    """SinkError: nothing is marked published, the wait grows, the next tick publishes it."""
    sink = FakeSink(fail=2)
    publisher = make(tmp_path, sink)
    publisher.spool.append(entries("a"))
    first = publisher.tick(0.0)
    assert first > 0 and publisher.spool.pending_records == 1
    assert publisher.health.failing_since == 0.0 and "refused" in str(publisher.health.last_error)
    assert publisher.tick(1.0) > 0 and publisher.spool.pending_records == 1
    publisher.tick(2.0)
    assert publisher.spool.pending_records == 0 and publisher.health.failing_since is None
    assert [e.event_id for e in sink.streams[STREAM]] == ["a"]


def test_republishing_after_a_failure_counts_duplicates_not_new_events(tmp_path: Path) -> None:
    """A record seen before (a replay) is counted as duplicates, never published twice."""
    sink = FakeSink()
    sink.seen.add("a")
    publisher = make(tmp_path, sink)
    publisher.spool.append(entries("a", "b"))
    publisher.tick(0.0)
    assert publisher.published == 1 and publisher.duplicates == 1
    assert sample(publisher, "drainer_events_duplicate_total") == 1


def test_the_watermark_advances_only_after_its_window_is_published(tmp_path: Path) -> None:
    """A window record's watermark is written after its entries, and not when publishing fails."""
    sink = FakeSink(fail=1)
    publisher = make(tmp_path, sink, watermark_stream=STREAM)
    moment = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
    publisher.spool.append(entries("a"), watermark=moment.timestamp())
    publisher.tick(0.0)
    assert sink.watermarks == {} and publisher.spool.pending_records == 1
    publisher.tick(1.0)
    assert sink.watermarks == {(STREAM, "acme"): moment}
    assert publisher.read_watermark() == moment
    assert sample(publisher, "drainer_myinvois_watermark_timestamp_seconds") == moment.timestamp()


def test_a_failed_watermark_write_keeps_the_window_spooled(tmp_path: Path) -> None:
    """Entries published but the watermark write failed: the record stays and is sent again."""
    sink = FakeSink(fail_watermark=1)
    publisher = make(tmp_path, sink, watermark_stream=STREAM)
    publisher.spool.append(entries("a"), watermark=1_790_000_000.0)
    publisher.tick(0.0)
    assert publisher.spool.pending_records == 1 and sink.watermarks == {}
    assert [e.event_id for e in sink.streams[STREAM]] == ["a"]
    publisher.tick(1.0)
    assert publisher.spool.pending_records == 0 and len(sink.watermarks) == 1
    assert publisher.duplicates == 1, "the entry went out once; the retry was de-duplicated"


def test_the_fake_sink_sends_runs_in_order_then_the_watermark(tmp_path: Path) -> None:
    """One tick: each run of one stream in spool order, then the watermark, last."""
    sink = FakeSink()
    publisher = make(tmp_path, sink, watermark_stream=STREAM)
    publisher.spool.append([*entries("a", "b"), *entries("x", stream=DEAD), *entries("c")])
    publisher.spool.append(entries("d"), watermark=1_790_000_000.0)
    publisher.tick(0.0)
    assert sink.calls == [
        ("entries", STREAM, ("a", "b")),
        ("entries", DEAD, ("x",)),
        ("entries", STREAM, ("c", "d")),
        ("watermark", STREAM, "acme"),
    ]


def test_a_raw_record_without_an_expander_is_a_broken_invariant(tmp_path: Path) -> None:
    """A raw body in a spool whose publisher cannot expand it stops the run (InvariantError)."""
    publisher = make(tmp_path, FakeSink())
    publisher.spool.append_raw(RawBatch(0.0, "pull", b"{}"))
    with pytest.raises(InvariantError):
        publisher.tick(0.0)


def test_drain_publishes_everything_before_the_deadline(tmp_path: Path) -> None:
    """drain() at shutdown empties the spool and says so."""
    publisher = make(tmp_path, FakeSink())
    for k in range(5):
        publisher.spool.append(entries(f"e{k}"))
    assert publisher.drain(deadline=float("inf"))
    assert publisher.spool.pending_records == 0


def test_a_body_that_keeps_raising_in_expand_is_set_aside_whole_and_the_spool_moves_on(
    tmp_path: Path,
) -> None:
    """An expander that raises for one record: after 3 attempts its raw body is dead-lettered
    (expand_failed), the next record is published, and the tick never raises."""
    from daemon.publisher import SET_ASIDE_AFTER

    def expand(raw: RawBatch) -> list[StreamEntry]:
        if raw.body == b"poison":
            raise ZeroDivisionError("a bug in the expander")
        return entries(raw.body.decode())

    sink = FakeSink()
    publisher = make(tmp_path, sink, expand=expand)
    publisher.spool.append_raw(RawBatch(1.0, "pull", b"poison"))
    publisher.spool.append_raw(RawBatch(2.0, "pull", b"good"))
    for attempt in range(SET_ASIDE_AFTER + 1):
        publisher.tick(float(attempt))
    assert publisher.spool.pending_records == 0
    [letter] = sink.streams[DEAD]
    assert letter.fields["reason"] == "expand_failed" and letter.fields["raw"] == "poison"
    assert "ZeroDivisionError" in letter.fields["detail"]
    assert [e.event_id for e in sink.streams[STREAM]] == ["good"]
    assert sample(publisher, "drainer_spool_records_set_aside_total") == 1
