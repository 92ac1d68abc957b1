"""Reload in process: a changed account restarts on its spool, an untouched one never notices."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from daemon.commands.demo.localredis import LocalRedis
from daemon.runtime.run import Runtime
from daemon.runtime.systemd import Notifier
from daemon.runtime.wiring import build
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.settings import load_settings
from tests.helpers import dp_account, wait_for, write_config

STREAM = "drainer:{docplanner}"


def test_a_changed_account_restarts_on_its_spool_and_the_others_carry_on(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """es's batch_size changes: new puller, same spool and publisher; pl keeps its objects;
    a [server] change is not applied (restart needed); both keep draining."""
    clients = [DocPlannerClient(f"{n}-id", f"{n}-secret-value") for n in ("pl", "es")]
    with DocPlannerSandbox(clients=clients) as dp:
        path = tmp_path / "drainer.toml"
        accounts = [dp_account("pl", dp), dp_account("es", dp)]
        write_config(path, redis_server.url, docplanner=accounts, listen_port=0)
        port_line = next(line for line in path.read_text().splitlines() if "listen" in line)
        settings = load_settings(path, {})
        runtime = Runtime(build(settings), Notifier(None), load=lambda: load_settings(path, {}))
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(runtime.run()), daemon=True)
        thread.start()
        try:
            dp.enqueue("pl-id", 20)
            dp.enqueue("es-id", 20)
            wait_for(lambda: redis_client.xlen(STREAM) == 40, 30, "both drained")
            before = dict(runtime.parts.accounts)
            changed = [dp_account("pl", dp), dp_account("es", dp, batch_size=7)]
            text = write_config(path, redis_server.url, docplanner=changed).read_text()
            new_port = next(line for line in text.splitlines() if "listen" in line)
            path.write_text(
                text.replace(new_port, port_line).replace("[server]", "[server]\nthreads = 3")
            )
            runtime.signals.reloads += 1
            wait_for(
                lambda: (
                    runtime.parts.accounts[("docplanner", "es")] is not before[("docplanner", "es")]
                ),
                30,
                "es restarted",
            )
            after = runtime.parts.accounts
            assert after[("docplanner", "pl")] is before[("docplanner", "pl")]
            es_old, es_new = before[("docplanner", "es")], after[("docplanner", "es")]
            assert es_new.publisher is es_old.publisher and es_new.spool is es_old.spool
            assert es_new.intake[0] is not es_old.intake[0]
            assert es_new.settings.batch_size == 7
            assert all(w not in runtime.parts.intake for w in es_old.intake)
            assert runtime.parts.settings.server.threads == settings.server.threads  # not applied
            dp.enqueue("pl-id", 5)
            dp.enqueue("es-id", 15)
            wait_for(lambda: redis_client.xlen(STREAM) == 60, 30, "both drain after the reload")
        finally:
            runtime.signals.count += 1
            thread.join(30)
    assert result == [0]


def test_a_removed_account_hands_its_lease_over_and_the_others_keep_theirs(
    tmp_path: Path, redis_server: LocalRedis, redis_client: redis.Redis
) -> None:
    """leases = true: removing es by reload releases its lease key at once; pl keeps its own."""
    from daemon.sink.lease import lease_key

    clients = [DocPlannerClient(f"{n}-id", f"{n}-secret-value") for n in ("pl", "es")]
    with DocPlannerSandbox(clients=clients) as dp:
        path = tmp_path / "drainer.toml"

        def configure(names: list[str]) -> None:
            write_config(path, redis_server.url, docplanner=[dp_account(n, dp) for n in names])
            path.write_text(path.read_text().replace("[spool]", "leases = true\n[spool]", 1))

        configure(["pl", "es"])
        runtime = Runtime(
            build(load_settings(path, {})), Notifier(None), load=lambda: load_settings(path, {})
        )
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(runtime.run()), daemon=True)
        thread.start()
        keys = {n: lease_key(STREAM, "docplanner", n) for n in ("pl", "es")}
        try:
            wait_for(lambda: all(redis_client.exists(k) for k in keys.values()), 30, "leases")
            configure(["pl"])
            runtime.signals.reloads += 1
            wait_for(lambda: not redis_client.exists(keys["es"]), 30, "es's lease released")
            wait_for(lambda: ("docplanner", "es") not in runtime.parts.accounts, 30, "es gone")
            assert redis_client.exists(keys["pl"]) and "docplanner:es" not in runtime.parts.leases
            assert runtime.parts.leases["docplanner:pl"].held
        finally:
            runtime.signals.count += 1
            thread.join(30)
    assert result == [0]
