"""One daemon per spool directory: a second `drainer run` on the same spool exits 1 at once."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from daemon.commands.demo.localredis import LocalRedis
from daemon.sandbox.docplanner import DocPlannerClient, DocPlannerSandbox
from tests.helpers import ROOT, Daemon, dp_account, listen_port, wait_for, write_config


def second_run(config: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    """`drainer run` on ``config`` in a subprocess; its result and how long it ran."""
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    return result, time.monotonic() - started


def test_a_second_daemon_on_the_same_spool_exits_1_naming_the_first(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """The second daemon pulls nothing, binds nothing, and says which pid holds the spool."""
    clients = [DocPlannerClient("pl-id", "pl-secret-value"), DocPlannerClient("b-id", "b-secret")]
    with DocPlannerSandbox(clients=clients) as sandbox:
        sandbox.enqueue("b-id", 50)
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = write_config(
            tmp_path / "a" / "drainer.toml", redis_server.url, [dp_account("pl", sandbox)]
        )
        other = dp_account("b", sandbox, client_secret="b-secret")
        second = write_config(tmp_path / "b" / "drainer.toml", redis_server.url, [other])
        # The same spool directory as the first daemon's; its own listen port and account.
        spool = json.dumps(str(tmp_path / "a" / "spool"))
        second.write_text(
            second.read_text().replace(json.dumps(str(tmp_path / "b" / "spool")), spool)
        )
        with Daemon(first) as daemon:
            assert daemon.process is not None
            result, seconds = second_run(second)
            print(
                f"\n[spool lock] the second daemon exited {result.returncode} after {seconds:.2f}s"
            )
            assert result.returncode == 1, result.stdout + result.stderr
            (line,) = (result.stdout + result.stderr).splitlines()
            event = json.loads(line)
            assert event["event"] == "drainer.fatal"
            assert f"pid {daemon.process.pid}, listen 127.0.0.1:{daemon.port}" in event["error"]
            assert str(tmp_path / "a" / "spool") in event["error"]
            assert sandbox.queue_length("b-id") == 50  # nothing pulled
            assert Daemon(second).get("/healthz") is None  # never listened
            assert daemon.get("/healthz") == 200  # the first one carries on
            assert daemon.stop() == 0
        # Released on exit: the same config now starts, and pulls its queue.
        with Daemon(second):
            wait_for(lambda: sandbox.queue_length("b-id") == 0, 30, "the queue pulled")
        assert listen_port(second) != listen_port(first)


def test_a_killed_daemon_leaves_no_stale_lock(tmp_path: Path, redis_server: LocalRedis) -> None:
    """After SIGKILL the lock is gone with the process: a restart on the same spool starts."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    daemon = Daemon(config).start()
    daemon.kill()
    assert (tmp_path / "spool" / "drainer.lock").exists()
    with Daemon(config) as again:
        assert again.get("/healthz") == 200
        assert again.stop() == 0


def unclean_exits(daemon: Daemon) -> float:
    """The daemon's drainer_unclean_exits_total, read from /metrics."""
    (line,) = [
        x for x in daemon.metrics().splitlines() if x.startswith("drainer_unclean_exits_total")
    ]
    return float(line.split()[-1])


def test_only_unclean_exits_are_counted_across_restarts(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """SIGTERM restarts leave drainer_unclean_exits_total at 0; a SIGKILL adds one, and it stays."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    for _ in range(3):  # three deliberate restarts
        with Daemon(config) as daemon:
            assert unclean_exits(daemon) == 0
            assert daemon.stop() == 0
    daemon = Daemon(config).start()
    daemon.kill()  # an unclean exit (as a crash, the watchdog or the OOM killer)
    with Daemon(config) as daemon:
        assert unclean_exits(daemon) == 1
        assert daemon.stop() == 0
    with Daemon(config) as daemon:
        assert unclean_exits(daemon) == 1  # kept across the clean restart
        assert daemon.stop() == 0
