"""The write-ahead spool: durability, replay, torn tails, compaction, the byte budget."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.envelope.entries import StreamEntry
from daemon.errors import SpoolFullError
from daemon.spool import SpoolBudget, SpoolLog, decode_entries, encode_record, scan


def entries(prefix: str, count: int) -> list[StreamEntry]:
    return [StreamEntry("s", f"{prefix}-{i}", {"n": str(i), "p": prefix}) for i in range(count)]


def test_append_then_reopen_replays_unpublished_in_order(tmp_path: Path) -> None:
    """Records appended and not marked published come back, in order, after a reopen."""
    log = SpoolLog(tmp_path, SpoolBudget(10**9))
    first = log.append(entries("a", 3))
    log.append(entries("b", 2))
    log.mark_published(first)
    reopened = SpoolLog(tmp_path, SpoolBudget(10**9))
    records = reopened.pending()
    assert [e.event_id for r in records for e in r.entries] == ["b-0", "b-1"]
    assert reopened.pending_events == 2


def test_sequence_numbers_survive_full_compaction(tmp_path: Path) -> None:
    """After everything is published and compacted, new records are still seen as pending."""
    log = SpoolLog(tmp_path, SpoolBudget(10**9))
    log.mark_published(log.append(entries("a", 1)))
    assert not list(tmp_path.glob("*.wal"))
    log = SpoolLog(tmp_path, SpoolBudget(10**9))
    log.append(entries("b", 1))
    assert [r.entries[0].event_id for r in SpoolLog(tmp_path, SpoolBudget(10**9)).pending()] == [
        "b-0"
    ]


def test_torn_tail_is_cut_and_set_aside(tmp_path: Path) -> None:
    """A half-written last record is cut off on open; the valid records before it survive."""
    log = SpoolLog(tmp_path, SpoolBudget(10**9))
    log.append(entries("a", 2))
    log.append(entries("b", 2))
    segment = next(tmp_path.glob("*.wal"))
    data = segment.read_bytes()
    segment.write_bytes(data[:-7])
    reopened = SpoolLog(tmp_path, SpoolBudget(10**9))
    assert [e.event_id for r in reopened.pending() for e in r.entries] == ["a-0", "a-1"]
    assert list(tmp_path.glob("*.corrupt-*"))
    reopened.append(entries("c", 1))
    again = SpoolLog(tmp_path, SpoolBudget(10**9))
    assert [e.event_id for r in again.pending() for e in r.entries] == ["a-0", "a-1", "c-0"]


def test_budget_refuses_appends_past_max_bytes_and_frees_on_publish(tmp_path: Path) -> None:
    """Appends past spool.max_bytes raise SpoolFullError; publishing frees the space."""
    budget = SpoolBudget(600)
    log = SpoolLog(tmp_path, budget, segment_bytes=200)
    seqs = []
    with pytest.raises(SpoolFullError):
        for _ in range(100):
            seqs.append(log.append(entries("x", 1)))
    assert 1 < len(seqs) < 100
    log.mark_published(seqs[-1])
    assert budget.used == 0
    log.append(entries("y", 1))


def test_rotation_and_compaction_delete_published_segments(tmp_path: Path) -> None:
    """Segments rotate at segment_bytes and published ones are deleted."""
    log = SpoolLog(tmp_path, SpoolBudget(10**9), segment_bytes=300)
    seqs = [log.append(entries(str(i), 2)) for i in range(10)]
    assert len(list(tmp_path.glob("*.wal"))) > 2
    log.mark_published(seqs[7])
    assert [r.seq for r in log.pending()] == seqs[8:]
    assert len(list(tmp_path.glob("*.wal"))) <= 2


field_text = st.text(max_size=30)
entry_strategy = st.builds(
    StreamEntry,
    st.text(min_size=1, max_size=10),
    st.text(min_size=1, max_size=40),
    st.dictionaries(field_text, field_text, max_size=5),
)


@given(st.integers(min_value=1, max_value=2**40), st.lists(entry_strategy, max_size=8))
def test_record_codec_round_trips(seq: int, batch: list[StreamEntry]) -> None:
    """Any batch survives encode -> scan -> decode unchanged."""
    frame = encode_record(seq, batch)
    records, end = scan(frame + frame)
    assert end == 2 * len(frame)
    assert [r[0] for r in records] == [seq, seq]
    assert list(decode_entries(records[0][3])) == batch


@given(
    st.lists(st.lists(entry_strategy, min_size=1, max_size=3), min_size=1, max_size=6),
    st.integers(min_value=0, max_value=10**6),
)
@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_truncation_keeps_a_prefix_of_records(
    tmp_path: Path, batches: list[list[StreamEntry]], cut: int
) -> None:
    """Cutting the segment anywhere leaves exactly the records that were fully written."""
    directory = Path(tempfile.mkdtemp(dir=tmp_path))
    log = SpoolLog(directory, SpoolBudget(10**9))
    for batch in batches:
        log.append(batch)
    segment = next(directory.glob("*.wal"))
    whole = segment.read_bytes()
    cut = cut % (len(whole) + 1)
    segment.write_bytes(whole[:cut])
    survivors = SpoolLog(directory, SpoolBudget(10**9)).pending(max_events=10**6)
    boundaries = [len(encode_record(1, b)) for b in batches]
    expected, total = 0, 0
    for size in boundaries:
        if total + size > cut:
            break
        expected += 1
        total += size
    assert [list(r.entries) for r in survivors] == batches[:expected]
