"""Operator signals: process metrics and Redis reachability at scrape time."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from daemon import __version__
from daemon.errors import SinkError
from daemon.metrics import Metrics
from daemon.metrics.collectors import StreamLengthCollector
from daemon.metrics.process import register_process_metrics
from daemon.revision import revision
from daemon.server.stats import HttpMetrics

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.fixture
def fresh_revision() -> Iterator[None]:
    """revision() is computed once per process: forget it before and after the test."""
    revision.cache_clear()
    yield
    revision.cache_clear()


def test_build_info_carries_the_version_and_the_revision(
    fresh_revision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """drainer_build_info{version,revision} names the package version and the revision given
    by $DRAINER_REVISION (so this holds where git cannot run in the checkout)."""
    monkeypatch.setenv("DRAINER_REVISION", "0123456789ab-dirty")
    registry = CollectorRegistry()
    Metrics(registry)
    labels = {"version": __version__, "revision": "0123456789ab-dirty"}
    assert registry.get_sample_value("drainer_build_info", labels) == 1


def test_a_checkout_without_the_override_asks_git(
    fresh_revision: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without $DRAINER_REVISION a checkout's revision is git's HEAD (skipped without git)."""
    monkeypatch.delenv("DRAINER_REVISION", raising=False)
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pytest.skip("git cannot run in this checkout")
    assert revision() in {head, f"{head}-dirty"}


def test_no_created_series_are_exported() -> None:
    """Counters and histograms export no `_created` samples (a fifth of a scrape, unused)."""
    registry = CollectorRegistry()
    metrics = Metrics(registry, [("docplanner", "pl"), ("myinvois", "acme")])
    metrics.upstream_requests.labels(
        source="docplanner", account="pl", endpoint="notifications", code="200"
    ).inc()
    HttpMetrics(registry).add_listener("main", dict)
    text = generate_latest(registry).decode()
    assert "drainer_events_received_total{" in text
    assert "drainer_upstream_request_duration_seconds_bucket{" in text
    assert [line for line in text.splitlines() if "_created" in line] == []
