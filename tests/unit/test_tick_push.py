"""PushReceiver.handle (the push worker's one step) with a real spool in a temp dir."""

from __future__ import annotations

import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.metrics import Metrics
from daemon.sources.docplanner.push import PushReceiver
from daemon.spool import SpoolBudget, SpoolLog

TOKEN = "t" * 32
GOOD = b'{"name":"slot-booked","data":{"id":1},"created_at":"2026-11-02T10:18:34Z"}'


def make(tmp_path: Path, accepting: bool = True) -> tuple[PushReceiver, list[int]]:
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    woken: list[int] = []
    gate = threading.Event()
    if accepting:
        gate.set()
    receiver = PushReceiver(
        "pl", TOKEN, spool, Metrics(CollectorRegistry(), [("docplanner", "pl")]), "s", "dl",
        gate, on_spooled=lambda: woken.append(spool.pending_records),
        wall_clock=lambda: 1_790_000_000.0,
    )  # fmt: skip
    return receiver, woken


def test_a_good_body_is_spooled_and_the_publisher_woken(tmp_path: Path) -> None:
    """204 only once the entry is in the spool; on_spooled rings after the append."""
    receiver, woken = make(tmp_path)
    assert receiver.handle(TOKEN, GOOD) == (204, None)
    assert woken == [1]
    [record] = receiver.spool.pending()
    [entry] = record.entries
    assert entry.stream == "s" and entry.fields["delivery"] == "push"


def test_a_bad_body_is_dead_lettered_with_its_bytes_and_answered_400(tmp_path: Path) -> None:
    """Invalid JSON: 400, the raw body spooled to the dead-letter stream, publisher woken."""
    receiver, woken = make(tmp_path)
    status, answer = receiver.handle(TOKEN, b"{not json")
    assert status == 400 and answer is not None and answer["error"] == "invalid_json"
    [record] = receiver.spool.pending()
    [entry] = record.entries
    assert entry.stream == "dl" and "{not json" in entry.fields["raw"]
    assert woken == [1]


def test_a_wrong_token_spools_nothing(tmp_path: Path) -> None:
    """401 before anything is parsed or spooled."""
    receiver, woken = make(tmp_path)
    assert receiver.handle("wrong", GOOD)[0] == 401
    assert receiver.spool.pending_records == 0 and woken == []


def test_shutting_down_answers_503_and_spools_nothing(tmp_path: Path) -> None:
    """Not accepting (draining): 503 so DocPlanner re-dispatches it on the next release."""
    receiver, woken = make(tmp_path, accepting=False)
    assert receiver.handle(TOKEN, GOOD)[0] == 503
    assert receiver.spool.pending_records == 0 and woken == []
