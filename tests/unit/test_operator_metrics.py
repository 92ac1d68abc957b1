"""Operator signals: process metrics, Redis reachability at scrape time, push rejections."""

from __future__ import annotations

import json
import threading
from pathlib import Path

from prometheus_client import CollectorRegistry

from daemon.errors import SinkError
from daemon.metrics import PUSH_REJECTED_CODES, Metrics, StreamLengthCollector
from daemon.metrics_process import register_process_metrics
from daemon.sources.docplanner.push import PushReceiver
from daemon.spool import SpoolBudget, SpoolLog

TOKEN = "pl-push-token-value"
PL = {"source": "docplanner", "account": "pl"}


def test_process_metrics_are_on_the_injected_registry() -> None:
    """RSS, start time and python_info are exported by the daemon's own registry."""
    registry = CollectorRegistry()
    register_process_metrics(registry)
    assert (registry.get_sample_value("process_resident_memory_bytes") or 0) > 1 << 20
    assert (registry.get_sample_value("process_start_time_seconds") or 0) > 1.6e9
    assert registry.get_sample_value("python_info", _python_labels(registry)) == 1


def _python_labels(registry: CollectorRegistry) -> dict[str, str]:
    (family,) = [f for f in registry.collect() if f.name == "python_info"]
    return family.samples[0].labels


def test_redis_up_is_1_when_xlen_answers_and_0_when_it_does_not() -> None:
    """drainer_redis_up follows the scrape-time XLEN; the scrape never fails on a Redis error."""
    answering = [True]

    def lengths() -> list[tuple[str, int]]:
        if not answering[0]:
            raise SinkError("redis is not answering")
        return [("drainer:{docplanner}", 3)]

    registry = CollectorRegistry()
    registry.register(StreamLengthCollector(lengths))
    assert registry.get_sample_value("drainer_redis_up") == 1
    answering[0] = False
    assert registry.get_sample_value("drainer_redis_up") == 0
    assert (
        registry.get_sample_value("drainer_stream_length", {"stream": "drainer:{docplanner}"})
        is None
    )


def test_push_rejections_are_counted_by_code(tmp_path: Path) -> None:
    """A wrong token (401), a body that is not JSON (400), a closed intake (503): one each."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, [("docplanner", "pl")])
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 20))
    accepting = threading.Event()
    accepting.set()
    receiver = PushReceiver("pl", TOKEN, spool, metrics, "s", "d", accepting)

    def rejected(code: str) -> float | None:
        return registry.get_sample_value("drainer_push_rejected_total", {**PL, "code": code})

    assert [rejected(code) for code in PUSH_REJECTED_CODES] == [0, 0, 0]  # pre-initialised
    good = json.dumps({"name": "slot-booked", "created_at": "2026-11-01T10:00:00+01:00",
                       "data": {"facility": {}, "doctor": {}, "address": {}}}).encode()  # fmt: skip
    assert receiver.handle("wrong", good)[0] == 401
    assert receiver.handle(TOKEN, b"{not json")[0] == 400
    assert receiver.handle(TOKEN, good)[0] == 204
    accepting.clear()
    assert receiver.handle(TOKEN, good)[0] == 503
    assert [rejected(code) for code in PUSH_REJECTED_CODES] == [1, 1, 1]
