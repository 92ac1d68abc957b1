"""Test helpers: write a config, run the real CLI in a subprocess, read the streams."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
import requests
from prometheus_client.parser import text_string_to_metric_families

from daemon.commands.demo.localredis import free_port

ROOT = Path(__file__).resolve().parent.parent


def write_config(
    path: Path,
    redis_url: str,
    docplanner: list[dict[str, Any]] = (),  # type: ignore[assignment]
    myinvois: list[dict[str, Any]] = (),  # type: ignore[assignment]
    listen_port: int | None = None,
    spool_max: str = "1GiB",
    extra: str = "",
) -> Path:
    """A TOML config for the daemon; returns its path."""
    lines = [
        "[redis]",
        f"url = {json.dumps(redis_url)}",
        "[spool]",
        f"dir = {json.dumps(str(path.parent / 'spool'))}",
        f"max_bytes = {json.dumps(spool_max)}",
        "[server]",
        f'listen = "127.0.0.1:{listen_port or free_port()}"',
        "[log]",
        'level = "info"',
        'format = "json"',
        extra,
    ]
    for kind, accounts in (("docplanner", docplanner), ("myinvois", myinvois)):
        for account in accounts:
            lines.append(f"[[{kind}]]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in account.items())
    path.write_text("\n".join(lines) + "\n")
    return path


def dp_account(name: str, sandbox: Any, **extra: object) -> dict[str, object]:
    """A DocPlanner account of the sandbox (client ``<name>-id``), polling fast when idle."""
    return {
        "name": name,
        "base_url": sandbox.base_url,
        "client_id": f"{name}-id",
        "client_secret": f"{name}-secret-value",
        "idle_interval": "200ms",
        **extra,
    }


def assert_redis_config_error(tmp_path: Path, redis_toml: str, key: str) -> None:
    """A ``[redis]`` table made of ``redis_toml`` is refused with one line naming ``key``."""
    from daemon.errors import ConfigError
    from daemon.settings import load_settings

    path = tmp_path / "drainer.toml"
    path.write_text("[redis]\n" + redis_toml + "\n")
    try:
        load_settings(path, {})
    except ConfigError as exc:
        message = str(exc)
    else:
        raise AssertionError(f"{redis_toml!r} was accepted")
    assert "\n" not in message and f"{path}: {key}:" in message, message


def listen_port(config: Path) -> int:
    for line in config.read_text().splitlines():
        if line.startswith("listen"):
            return int(line.split(":")[-1].strip('" '))
    raise AssertionError("no listen line")


class Daemon:
    """``python -m daemon run`` in a subprocess, output captured to a file."""

    def __init__(self, config: Path, env: dict[str, str] | None = None) -> None:
        self.config = config
        self.port = listen_port(config)
        self.log_path = config.parent / "daemon.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready: bool = True) -> Daemon:
        handle = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "daemon", "run", "--config", str(self.config)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=ROOT,
        )
        handle.close()
        if wait_ready:
            wait_for(lambda: self.get("/healthz") == 200, 20, "daemon /healthz")
        return self

    def get(self, path: str) -> int | None:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code
        except requests.RequestException:
            return None

    def metrics(self) -> str:
        return requests.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def stop(self, timeout: float = 25.0) -> int:
        """SIGTERM and wait; returns the exit code."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)  # poll interval: the condition is checked again
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def stream_entries(client: redis.Redis, stream: str) -> list[dict[str, str]]:
    """All entries of a stream as dicts of str, in stream order."""
    out = []
    for _, fields in client.xrange(stream):
        out.append({_text(k): _text(v) for k, v in fields.items()})
    return out


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def payloads(entries: list[dict[str, str]], account: str | None = None) -> list[Any]:
    return [json.loads(e["payload"]) for e in entries if account is None or e["account"] == account]


def online_replicas(port: int) -> int:
    """Replicas the master on ``port`` reports online (0 while it does not answer)."""
    client = redis.Redis(port=port, socket_timeout=2)
    try:
        info = client.info("replication")
    except redis.RedisError:
        return 0
    finally:
        client.close()
    return sum(
        1
        for key, value in info.items()
        if key.startswith("slave") and isinstance(value, dict) and value.get("state") == "online"
    )


def wait_settled(daemon: Daemon, timeout: float = 30.0) -> None:
    """Wait until every spool of ``daemon`` is empty (all it pulled or was pushed is in
    Redis), read from its /metrics: the condition a pause before ``stop()`` stood for."""

    def settled() -> bool:
        try:
            text = daemon.metrics()
        except requests.RequestException:
            return False
        values = [
            sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if sample.name == "drainer_spool_pending_events"
        ]
        return bool(values) and not any(values)

    wait_for(settled, timeout, "the daemon's spools published")
