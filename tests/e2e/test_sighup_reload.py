"""SIGHUP: accounts added, removed and refused without a restart; threads stay bounded."""

from __future__ import annotations

import re
import signal
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox, MyInvoisClient, MyInvoisSandbox
from tests.helpers import Daemon, dp_account, stream_entries, wait_for, write_config

DP_STREAM = "drainer:{docplanner}"
MI_STREAM = "drainer:{myinvois}"
THREAD_BUDGET = 64  # issue 23: ≤ 64 threads however many accounts


def mi_account(name: str, sandbox: MyInvoisSandbox, start: datetime) -> dict[str, object]:
    """A MyInvois taxpayer of the sandbox (client ``<name>-id``), polling fast."""
    return {
        "name": name,
        "base_url": sandbox.base_url,
        "client_id": f"{name}-id",
        "client_secret": f"{name}-secret-value",
        "interval": "300ms",
        "overlap": "1m",
        "requests_per_minute": 600,
        "start_at": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` whose labels include ``labels`` (0 when none)."""
    total = 0.0
    for line in daemon.metrics().splitlines():
        if not line.startswith(name):
            continue
        match = re.match(rf"{re.escape(name)}(?:\{{(.*)\}})? (\S+)$", line)
        if match is None:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def per_account(client: redis.Redis, stream: str) -> tuple[Counter[str], Counter[str]]:
    """Entries per account, and how often each event id appears."""
    entries = stream_entries(client, stream)
    return Counter(e["account"] for e in entries), Counter(e["event_id"] for e in entries)


def polls(daemon: Daemon, account: str) -> float:
    return metric(
        daemon, "drainer_upstream_requests_total", account=account, endpoint="notifications"
    )


def threads_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads line")


def test_sighup_adds_and_removes_accounts_and_a_broken_file_changes_nothing(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """Added accounts drain within seconds, a removed one is no longer polled, the pid and the
    untouched account carry on, nothing is duplicated; a broken file keeps the running config."""
    now = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()), UTC)
    start = now - timedelta(hours=2)
    dp_clients = [DocPlannerClient(f"{n}-id", f"{n}-secret-value") for n in ("pl", "es")]
    mi_clients = [MyInvoisClient(f"{n}-id", f"{n}-secret-value") for n in ("acme", "beta")]
    with (
        DocPlannerSandbox(clients=dp_clients) as dp,
        MyInvoisSandbox(clients=mi_clients, requests_per_minute=6000) as mi,
    ):
        dp.enqueue("pl-id", 40)
        dp.enqueue("es-id", 30)
        acme = mi.add_notifications("acme-id", 20, start=start + timedelta(minutes=5), end=now)
        beta = mi.add_notifications("beta-id", 25, start=start + timedelta(minutes=5), end=now)
        path = tmp_path / "drainer.toml"

        def configure(docplanner: list[str], myinvois: list[str]) -> None:
            write_config(
                path,
                redis_server.url,
                docplanner=[dp_account(n, dp) for n in docplanner],
                myinvois=[mi_account(n, mi, start) for n in myinvois],
                listen_port=port,
            )

        port = 0
        configure(["pl"], ["acme"])
        port = int(re.findall(r"127\.0\.0\.1:(\d+)", path.read_text())[0])
        with Daemon(path) as daemon:
            assert daemon.process is not None
            pid = daemon.process.pid
            wait_for(
                lambda: (
                    per_account(redis_client, DP_STREAM)[0]["pl"] == 40
                    and per_account(redis_client, MI_STREAM)[0]["acme"] == len(acme)
                ),
                60,
                "pl and acme drained",
            )
            assert metric(daemon, "drainer_config_last_reload_success_timestamp_seconds") > 0
            assert per_account(redis_client, DP_STREAM)[0]["es"] == 0  # not configured yet

            configure(["pl", "es"], ["beta"])  # es and beta added, acme removed
            daemon.signal(signal.SIGHUP)
            wait_for(
                lambda: (
                    per_account(redis_client, DP_STREAM)[0]["es"] == 30
                    and per_account(redis_client, MI_STREAM)[0]["beta"] == len(beta)
                ),
                30,
                "es and beta drained after SIGHUP",
            )
            wait_for(lambda: "account.removed" in daemon.log, 30, "acme removed")
            acme_polls = polls(daemon, "acme")
            beta_polls = polls(daemon, "beta")
            wait_for(lambda: polls(daemon, "beta") >= beta_polls + 5, 30, "beta polled on")
            assert polls(daemon, "acme") == acme_polls, "a removed account is not polled"
            dp.enqueue("pl-id", 10)  # the untouched account carries on
            wait_for(lambda: per_account(redis_client, DP_STREAM)[0]["pl"] == 50, 30, "pl again")
            good_reload = metric(daemon, "drainer_config_last_reload_success_timestamp_seconds")

            path.write_text(path.read_text() + "\n[[docplanner]]\nname = 'broken'\n")
            daemon.signal(signal.SIGHUP)
            wait_for(
                lambda: metric(daemon, "drainer_config_reload_failures_total") == 1,
                30,
                "the refused reload counted",
            )
            dp.enqueue("es-id", 5)  # still running on the last good config
            wait_for(lambda: per_account(redis_client, DP_STREAM)[0]["es"] == 35, 30, "es again")
            last = metric(daemon, "drainer_config_last_reload_success_timestamp_seconds")
            assert last == good_reload
            assert daemon.process.pid == pid and daemon.process.poll() is None
            assert daemon.stop() == 0
    log = daemon.log
    assert log.count("runtime.started") == 1
    assert "config.reload_failed" in log
    stopped = [line for line in log.splitlines() if "account.stopping" in line]
    assert any('"account": "acme"' in line for line in stopped)
    assert not any('"account": "pl"' in line for line in stopped), "pl was left alone"
    dp_counts, dp_ids = per_account(redis_client, DP_STREAM)
    mi_counts, mi_ids = per_account(redis_client, MI_STREAM)
    assert dp_counts == Counter({"pl": 50, "es": 35})
    assert mi_counts == Counter({"acme": len(acme), "beta": len(beta)})
    assert max([*dp_ids.values(), *mi_ids.values()]) == 1, "nothing duplicated"


def test_three_hundred_taxpayers_run_on_a_bounded_number_of_threads(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """300 MyInvois accounts and 3 DocPlanner accounts: every one polls, within 64 threads."""
    now = datetime.fromtimestamp(int(datetime.now(UTC).timestamp()), UTC)
    start = now - timedelta(hours=1)
    names = [f"t{n:03d}" for n in range(300)]
    mi_clients = [MyInvoisClient(f"{n}-id", f"{n}-secret-value") for n in names]
    dp_names = ["pl", "es", "cz"]
    dp_clients = [DocPlannerClient(f"{n}-id", f"{n}-secret-value") for n in dp_names]
    with (
        MyInvoisSandbox(clients=mi_clients, requests_per_minute=6000) as mi,
        DocPlannerSandbox(clients=dp_clients) as dp,
    ):
        for name in dp_names:
            dp.enqueue(f"{name}-id", 20)
        accounts: list[dict[str, Any]] = [mi_account(n, mi, start) for n in names]
        for account in accounts:
            account["interval"] = "5s"
        config = write_config(
            tmp_path / "drainer.toml",
            redis_server.url,
            docplanner=[dp_account(n, dp) for n in dp_names],
            myinvois=accounts,
        )
        with Daemon(config) as daemon:
            assert daemon.process is not None
            pid, most = daemon.process.pid, 0

            def every_account_polled() -> bool:
                nonlocal most
                most = max(most, threads_of(pid))
                text = daemon.metrics()
                done = sum(
                    1
                    for line in text.splitlines()
                    if line.startswith("drainer_last_success_timestamp_seconds{")
                    and 'source="myinvois"' in line
                    and not line.endswith(" 0.0")
                )
                return done == len(names)

            wait_for(every_account_polled, 120, "every taxpayer polled once")
            wait_for(lambda: redis_client.xlen(DP_STREAM) == 60, 60, "DocPlanner drained")
            most = max(most, threads_of(pid))
            assert daemon.stop() == 0
    print(f"threads: at most {most} for 303 accounts")
    assert most <= THREAD_BUDGET, f"{most} threads for 303 accounts"
