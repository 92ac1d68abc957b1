"""Lifecycle of `drainer run`: systemd notify, health endpoints, signals, exit codes."""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import requests

from daemon.commands.demo.localredis import LocalRedis
from tests.helpers import Daemon, wait_for, write_config


def test_sd_notify_ready_watchdog_stopping(tmp_path: Path, redis_server: LocalRedis) -> None:
    """Under systemd the daemon sends READY=1, then WATCHDOG=1 pings, then STOPPING=1."""
    address = str(tmp_path / "notify.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(10)
        config = write_config(tmp_path / "drainer.toml", redis_server.url)
        with Daemon(config, env={"NOTIFY_SOCKET": address}) as daemon:
            messages = [sock.recv(256).decode()]
            while messages.count("WATCHDOG=1") < 2:
                messages.append(sock.recv(256).decode())
            assert daemon.stop() == 0
        messages.append(sock.recv(256).decode())
    assert messages[0] == "READY=1"
    assert "STOPPING=1" in messages


def test_endpoints_and_sigint(tmp_path: Path, redis_server: LocalRedis) -> None:
    """/healthz, /readyz and /metrics answer; SIGINT stops with exit 0."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    with Daemon(config) as daemon:
        base = f"http://127.0.0.1:{daemon.port}"
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        wait_for(lambda: daemon.get("/readyz") == 200, 10, "ready")
        metrics = requests.get(f"{base}/metrics", timeout=5).text
        assert "drainer_up 1.0" in metrics and "drainer_build_info" in metrics
        assert 'drainer_stream_length{stream="drainer:{docplanner}"}' in metrics
        assert requests.get(f"{base}/nope", timeout=5).status_code == 404
        daemon.signal(signal.SIGINT)
        assert daemon.process is not None
        assert daemon.process.wait(timeout=25) == 0
        daemon.process = None


def test_readyz_names_redis_when_it_is_unreachable(tmp_path: Path) -> None:
    """With Redis unreachable the daemon still runs; /readyz is 503 and names redis."""
    config = write_config(tmp_path / "drainer.toml", "redis://127.0.0.1:1/0")
    with Daemon(config) as daemon:
        response = requests.get(f"http://127.0.0.1:{daemon.port}/readyz", timeout=10)
        assert response.status_code == 503
        assert "redis" in json.loads(response.text)["not_ready"]
        started = time.monotonic()
        assert daemon.stop() == 0
        assert time.monotonic() - started < 20


def test_bad_config_at_start_exits_2(tmp_path: Path) -> None:
    """`drainer run` with a broken config exits 2 with one line naming the key."""
    import subprocess
    import sys

    path = tmp_path / "bad.toml"
    path.write_text("[spool]\nmax_bytes = 'lots'\n")
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "spool.max_bytes" in result.stderr


def test_capture_signals_counts_and_restores() -> None:
    """A signal only bumps the counter (no lock taken); the old handler comes back."""
    import os

    from daemon.runtime.signals import SignalFlag, capture_signals

    before = signal.getsignal(signal.SIGTERM)
    flag = SignalFlag()
    with capture_signals(flag):
        assert not flag.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)
        assert flag.sleep(2.0)
        assert flag.count == 1
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_sigterm_at_any_point_of_the_main_loop_stops_the_daemon(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """A SIGTERM landing at different offsets of the main loop's wait always stops with exit 0."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    for started, offset in enumerate((0.0, 0.05, 0.11, 0.17), start=1):  # over the 0.2 s slice
        with Daemon(config) as daemon:  # the log file is appended to by each run
            wait_for(
                lambda d=daemon, n=started: d.log.count("runtime.started") == n, 20, "main loop"
            )
            time.sleep(offset)  # where in the slice the signal lands, not a wait for a condition
            assert daemon.stop() == 0


def test_a_burst_of_sigterms_never_hangs_the_daemon(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """Many SIGTERMs in a row: the first starts the clean stop, the second forces exit 1."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    with Daemon(config) as daemon:
        wait_for(lambda: "runtime.started" in daemon.log, 20, "daemon started")
        process = daemon.process
        assert process is not None
        for _ in range(10):
            process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=25)
        daemon.process = None
    assert code in (0, 1), "a clean stop, or the forced exit of the second signal"
    assert code == 1 or "runtime.stopped" in daemon.log


def test_a_broken_invariant_stops_the_daemon_with_exit_1(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """A worker raising InvariantError ends the run with exit code 1 (systemd restarts it)."""
    import threading

    from daemon.errors import InvariantError
    from daemon.runtime.run import Runtime
    from daemon.runtime.systemd import Notifier
    from daemon.runtime.wiring import build
    from daemon.settings import load_settings
    from daemon.worker import Health

    class Broken:
        name = "test:broken"
        health = Health("docplanner", "x", "test")

        def tick(self, now: float) -> float:
            raise InvariantError("spool sequence went backwards")

    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    ctx = build(load_settings(config, {}))
    ctx.intake.append(Broken())
    runtime = Runtime(ctx, Notifier(None))
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(runtime.run()))
    thread.start()
    thread.join(timeout=25)
    assert not thread.is_alive()
    assert result == [1]
    assert str(runtime.fatal) == "spool sequence went backwards"
