"""Consumer-group lag in the /metrics of the real CLI."""

from __future__ import annotations

from pathlib import Path

import redis
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from tests.helpers import Daemon, dp_account, wait_for, write_config

STREAM = "drainer:{docplanner}"
Samples = dict[tuple[str, str, str], float]  # (name, stream, group) -> value


def group_samples(text: str) -> Samples:
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("drainer_consumer_group"):
                key = (sample.name, sample.labels["stream"], sample.labels.get("group", ""))
                samples[key] = sample.value
    return samples


def test_a_group_that_stops_reading_shows_growing_lag_in_metrics(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """The daemon's /metrics: lag 0 while a group keeps up, then growing once it stops."""
    with DocPlannerSandbox(clients=[DocPlannerClient("pl-id", "pl-secret-value")]) as sandbox:
        config = write_config(
            tmp_path / "drainer.toml", redis_server.url, docplanner=[dp_account("pl", sandbox)]
        )
        with Daemon(config) as daemon:

            def lag() -> float | None:
                return group_samples(daemon.metrics()).get(
                    ("drainer_consumer_group_lag", STREAM, "billing")
                )

            sandbox.enqueue("pl-id", 100)
            wait_for(lambda: redis_client.xlen(STREAM) == 100, 30, "100 entries")
            redis_client.xgroup_create(STREAM, "billing", id="0")
            reply = redis_client.xreadgroup("billing", "w1", {STREAM: ">"}, count=1000)
            redis_client.xack(STREAM, "billing", *[i for i, _ in reply[0][1]])
            wait_for(lambda: lag() == 0, 10, "lag 0 while the group keeps up")
            sandbox.enqueue("pl-id", 200)  # billing has stopped reading
            wait_for(lambda: lag() == 200, 30, "lag 200")
            sandbox.enqueue("pl-id", 150)
            wait_for(lambda: lag() == 350, 30, "lag 350")
            samples = group_samples(daemon.metrics())
            assert samples[("drainer_consumer_group_pending", STREAM, "billing")] == 0
            assert samples[("drainer_consumer_group_consumers", STREAM, "billing")] == 1
            assert samples[("drainer_consumer_group_lost_entries", STREAM, "billing")] == 0
            assert daemon.stop() == 0
