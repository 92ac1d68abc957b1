"""DocPlanner push mode in process: the receiver on a real spool, release against the sandbox."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from daemon.commands.demo.localredis import free_port
from daemon.errors import SpoolError
from daemon.metrics import Metrics
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, SandboxClock
from daemon.settings import DocPlannerAccount
from daemon.sources.docplanner.api import DocPlannerApi
from daemon.sources.docplanner.push import PushReceiver
from daemon.sources.docplanner.release import ReleaseScheduler
from daemon.sources.http import UpstreamClient
from daemon.spool import SpoolBudget, SpoolLog
from daemon.worker import REFUSED_CAP

STREAM = "drainer:{docplanner}"
DEADLETTER = "drainer:{deadletter}"
TOKEN = "pl-push-token-value"
LABELS = {"source": "docplanner", "account": "pl"}


# --- helpers ------------------------------------------------------------------------------


def push_client(port: int | None, name: str = "pl") -> DocPlannerClient:
    """A sandbox client that DocPlanner pushes to the daemon on ``port`` (None: pull-only)."""
    url = None if port is None else f"http://127.0.0.1:{port}/push/docplanner/{name}"
    return DocPlannerClient(
        f"{name}-id", f"{name}-secret-value", push_url=url, push_token=TOKEN if url else None
    )


def notification(name: str = "slot-booked", **data: Any) -> dict[str, Any]:
    base = {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": "3"}}
    return {"name": name, "data": {**base, **data}, "created_at": "2026-11-02T10:18:34+01:00"}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- the receiver in process ----------------------------------------------------------------


@pytest.fixture
def receiver(tmp_path: Path) -> PushReceiver:
    """A receiver on a real spool, accepting, with a fresh metrics registry."""
    metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
    spool = SpoolLog(tmp_path / "spool", SpoolBudget(1 << 30))
    accepting = threading.Event()
    accepting.set()
    return PushReceiver("pl", TOKEN, spool, metrics, STREAM, DEADLETTER, accepting)


def test_gate_events_are_spooled_with_delivery_push_and_answered_204(
    receiver: PushReceiver,
) -> None:
    """slot-booking and booking-moving are approved (204) and spooled like any event."""
    woken: list[bool] = []
    receiver.on_spooled = lambda: woken.append(True)
    for name in ("slot-booking", "booking-moving"):
        assert receiver.handle(TOKEN, body(notification(name))) == (204, None)
    (record_a, record_b) = receiver.spool.pending()
    entries = [*record_a.entries, *record_b.entries]
    assert [e.fields["type"] for e in entries] == ["slot-booking", "booking-moving"]
    assert {e.fields["delivery"] for e in entries} == {"push"}
    assert woken == [True, True]


def test_hostile_nesting_is_400_and_dead_lettered_not_a_crash(receiver: PushReceiver) -> None:
    """A body nested 100,000 levels deep is answered 400 and dead-lettered whole."""
    raw = b'{"name":"slot-booked","data":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    status, document = receiver.handle(TOKEN, raw)
    assert status == 400
    assert document is not None and document["error"] in ("invalid_json", "invalid_notification")
    (record,) = receiver.spool.pending()
    (dead,) = record.entries
    assert (dead.stream, dead.fields["raw"]) == (DEADLETTER, raw.decode())


def test_shutting_down_answers_503_and_spools_nothing(receiver: PushReceiver) -> None:
    """Once shutdown starts (accepting cleared) a push gets 503 and is not spooled."""
    receiver.accepting.clear()
    status, _ = receiver.handle(TOKEN, body(notification()))
    assert status == 503
    assert receiver.spool.pending_records == 0


def test_full_or_unwritable_spool_answers_503_and_counts_nothing(
    tmp_path: Path, receiver: PushReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SpoolFullError or SpoolError -> 503 (DocPlanner will re-dispatch); recovery -> 204."""
    full = SpoolLog(tmp_path / "full", SpoolBudget(10))
    receiver.spool = full
    assert receiver.handle(TOKEN, body(notification()))[0] == 503
    assert receiver.handle(TOKEN, b"not json")[0] == 503  # a dead letter needs the spool too
    assert full.pending_records == 0

    def broken(entries: object) -> int:
        raise SpoolError("cannot write spool: No space left on device")

    receiver.spool = SpoolLog(tmp_path / "broken", SpoolBudget(1 << 30))
    monkeypatch.setattr(receiver.spool, "append", broken)
    assert receiver.handle(TOKEN, body(notification()))[0] == 503
    monkeypatch.undo()
    assert receiver.handle(TOKEN, body(notification()))[0] == 204
    received = receiver.metrics.events_received.labels(**LABELS)._value.get()
    assert received == 1


# --- release: tick with a fake clock against the sandbox -------------------------------------


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Release:
    scheduler: ReleaseScheduler
    clock: FakeClock
    metrics: Metrics
    http: UpstreamClient


@pytest.fixture
def make_release() -> Iterator[Any]:
    """Build ReleaseSchedulers on a fake clock; their HTTP sessions are closed afterwards."""
    made: list[UpstreamClient] = []

    def make(base_url: str) -> Release:
        settings = DocPlannerAccount(
            name="pl",
            base_url=base_url,
            client_id="pl-id",
            client_secret="pl-secret-value",  # type: ignore[arg-type]
            mode="push",
            push_token=TOKEN,  # type: ignore[arg-type]
        )
        clock = FakeClock()
        metrics = Metrics(CollectorRegistry(), [("docplanner", "pl")])
        http = UpstreamClient("docplanner", "pl", metrics, None, clock)
        made.append(http)
        scheduler = ReleaseScheduler(settings, DocPlannerApi(settings, http), metrics)
        return Release(scheduler, clock, metrics, http)

    yield make
    for http in made:
        http.close()


def test_release_calls_on_the_first_tick_then_not_before_the_interval(make_release: Any) -> None:
    """First tick releases (204); the next call waits release_interval (1 h)."""
    clock = SandboxClock()
    with DocPlannerSandbox(clients=[push_client(free_port())], clock=clock) as sandbox:
        release: Release = make_release(sandbox.base_url)
        fake, scheduler = release.clock, release.scheduler
        assert scheduler.tick(fake.now) == 3600.0
        assert sandbox.release_calls == [("pl-id", 204)]
        assert scheduler.health.last_success is not None
        for later in (1.0, 1800.0, 3599.0):
            fake.now = 1000.0 + later
            assert scheduler.tick(fake.now) == pytest.approx(3600.0 - later)
        assert len(sandbox.release_calls) == 1
        clock.advance(3600)
        fake.now = 1000.0 + 3600.0
        scheduler.tick(fake.now)
        assert sandbox.release_calls == [("pl-id", 204), ("pl-id", 204)]


def test_release_429_waits_until_retry_at(make_release: Any) -> None:
    """A 429 (a release inside the hour, e.g. after a restart): no call before Retry-After."""
    clock = SandboxClock()
    with DocPlannerSandbox(clients=[push_client(free_port())], clock=clock) as sandbox:
        first: Release = make_release(sandbox.base_url)
        first.scheduler.tick(first.clock.now)
        clock.advance(600)
        release: Release = make_release(sandbox.base_url)  # a restarted daemon
        fake, scheduler = release.clock, release.scheduler
        wait = scheduler.tick(fake.now)
        assert sandbox.release_calls == [("pl-id", 204), ("pl-id", 429)]
        assert wait == pytest.approx(3000.0, abs=2)
        assert release.metrics.rate_limited.labels(**LABELS)._value.get() == 1
        assert scheduler.health.failing_since is None  # expected, not a failure
        fake.now += wait - 1
        scheduler.tick(fake.now)
        assert len(sandbox.release_calls) == 2
        clock.advance(3000)
        fake.now += 1
        assert scheduler.tick(fake.now) == 3600.0
        assert sandbox.release_calls[-1] == ("pl-id", 204)


def test_release_403_backs_off_capped_names_it_and_recovers_once_enabled(
    make_release: Any,
) -> None:
    """A client not enabled gets 403: named, retried every 2.5 to 5 min (never seconds
    apart: DocPlanner allows one release an hour); once enabled: 204."""
    port = free_port()
    client = replace(push_client(port), enabled=False)
    with DocPlannerSandbox(clients=[client]) as sandbox:
        release: Release = make_release(sandbox.base_url)
        fake, scheduler, registry = release.clock, release.scheduler, release.metrics.registry
        refused = {**LABELS, "reason": "release_forbidden"}
        waits = []
        for _ in range(8):
            waits.append(scheduler.tick(fake.now))
            fake.now += waits[-1]
        assert sandbox.release_calls == [("pl-id", 403)] * 8, "kept trying"
        start = min(scheduler.account.release_interval, REFUSED_CAP)
        assert all(start / 2 <= wait <= REFUSED_CAP for wait in waits), waits
        assert str(scheduler.health.detail["not_ready"]).startswith("release forbidden")
        assert registry.get_sample_value("drainer_upstream_refused", refused) == 1
        assert registry.get_sample_value("drainer_upstream_refusals_total", refused) == 8
        sandbox.set_enabled("pl-id")
        assert scheduler.tick(fake.now) == 3600.0
        assert sandbox.release_calls[-1] == ("pl-id", 204)
        assert "not_ready" not in scheduler.health.detail
        assert scheduler.health.failing_since is None
        assert registry.get_sample_value("drainer_upstream_refused", refused) == 0


def test_release_transient_error_backs_off(make_release: Any) -> None:
    """Upstream unreachable: health failing, no new request until the backoff has passed."""
    release: Release = make_release(f"http://127.0.0.1:{free_port()}")
    fake, scheduler, metrics = release.clock, release.scheduler, release.metrics

    def attempts() -> float:
        return float(
            metrics.upstream_requests.labels(**LABELS, endpoint="token", code="error")._value.get()
        )

    wait = scheduler.tick(fake.now)
    assert 2.5 <= wait <= 10.0
    assert attempts() == 1
    assert scheduler.health.failing_since == fake.now
    fake.now += wait / 2
    scheduler.tick(fake.now)
    assert attempts() == 1
    fake.now += wait
    second = scheduler.tick(fake.now)
    assert attempts() == 2
    assert second >= 10.0  # grows
