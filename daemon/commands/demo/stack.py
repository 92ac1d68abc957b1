"""What ``drainer demo`` starts, all on loopback in one temp dir, and how it is stopped.

A private ``redis-server`` (append-only, never 6379), the DocPlanner sandbox (pull
account ``pl`` with a seeded queue plus arrivals; push account ``es`` whose
notifications the sandbox POSTs to the daemon's ``/push/docplanner/es``), the MyInvois
sandbox (``acme``: a few days of history plus arrivals, some dated minutes in the past)
and ``drainer run`` as a subprocess in its own session, with a generated config and a
JSON log file. The push account and the MyInvois account are left out while their
daemon modules (``daemon/push.py``, ``daemon/myinvois.py``) are not installed.
Downstream, the consumer kit (``python -m drainer_consumer``, run as a process: the
daemon never imports it) reads the three streams as consumer group ``demo``, so the view
shows a group keeping up on each.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from importlib.util import find_spec
from pathlib import Path

import redis
import requests

from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.errors import DrainerError
from daemon.sandbox import (
    DocPlannerClient,
    DocPlannerSandbox,
    MyInvoisClient,
    MyInvoisSandbox,
    SandboxClock,
)

PL = DocPlannerClient("demo-pl", "demo-pl-secret")
MI = MyInvoisClient("demo-acme", "demo-acme-secret")
# An intermediary (one Client ID) acting for a few taxpayers: one shared budget, a token each.
AGENT_ID, AGENT_SECRET = "demo-agent", "demo-agent-secret"
AGENT_TAXPAYERS = {"globex": "C2000000001", "initech": "C2000000002", "umbrella": "C2000000003"}
AGENT = [MyInvoisClient(AGENT_ID, AGENT_SECRET, on_behalf_of=t) for t in AGENT_TAXPAYERS.values()]
AGENT_SEED, AGENT_RATE = 40, 0.5  # per taxpayer; arrivals per second per taxpayer
ES_ID = "demo-es"
PL_RATE, ES_RATE, MI_RATE = 20.0, 4.0, 1.0  # arrivals per second
ES_SEED, MI_SEED, MI_DAYS = 200, 300, 3
MI_RPM = 60  # the demo's MyInvois budget (the sandbox allows twice that)
READY_TIMEOUT, DAEMON_STOP = 20.0, 25.0
GROUP = "demo"
KIT_STREAMS = ("drainer:{docplanner}", "drainer:{myinvois}", "drainer:{deadletter}")


class Stack:
    """Redis, both sandboxes and the daemon process; :meth:`close` leaves nothing running."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="drainer-demo-"))
        self.log = self.tmp / "daemon.log"
        self.redis = LocalRedis(self.tmp / "redis", appendonly=True)
        self.client = redis.Redis.from_url(self.redis.url, socket_timeout=5)
        self.port = free_port()
        self.push = find_spec("daemon.sources.docplanner.push") is not None
        self.poll = find_spec("daemon.sources.myinvois.poll") is not None
        es_url = f"http://127.0.0.1:{self.port}/push/docplanner/es"
        self.es = DocPlannerClient(
            ES_ID, "demo-es-secret", es_url, f"demo-push-token-{os.getpid()}"
        )
        clock = SandboxClock()
        self.dp = DocPlannerSandbox([PL, *([self.es] if self.push else [])], clock=clock)
        self.mi = MyInvoisSandbox([MI, *AGENT], clock=clock, requests_per_minute=2 * MI_RPM)
        self.accounts = [("docplanner", "pl", "pull")]
        self.accounts += [("docplanner", "es", "push")] if self.push else []
        self.accounts += [("myinvois", "acme", "poll")] if self.poll else []
        self.accounts += [("myinvois", n, "poll") for n in AGENT_TAXPAYERS] if self.poll else []
        self.daemon: subprocess.Popen[bytes] | None = None
        self.consumer: subprocess.Popen[bytes] | None = None
        self._arrivals: list[threading.Event] = []
        self._halted = threading.Event()
        self._seeding: threading.Thread | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def missing(self) -> list[str]:
        """The daemon modules not installed yet (their accounts are left out)."""
        pairs = (("daemon/push.py", self.push), ("daemon/myinvois.py", self.poll))
        return [module for module, present in pairs if not present]

    def start(self, notifications: int) -> None:
        """Seed upstream, start the daemon, wait for /healthz, then start the arrivals."""
        self.redis.start()
        self.dp.start()
        self.mi.start()
        self.dp.enqueue(PL.client_id, notifications)
        self.mi.add_notifications(MI.client_id, MI_SEED)
        for tin in AGENT_TAXPAYERS.values():
            self.mi.add_notifications(AGENT_ID, AGENT_SEED, tin=tin)
        env = {k: v for k, v in os.environ.items() if not k.startswith("DRAINER_")}
        env.pop("NOTIFY_SOCKET", None)
        root = str(Path(__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with self.log.open("ab") as log:
            self.daemon = subprocess.Popen(
                [sys.executable, "-m", "daemon", "run", "--config", str(self._write_config())],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.tmp,
                start_new_session=True,  # a terminal Ctrl-C is for the demo, which stops it
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while not self._healthy():
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise DrainerError(f"the daemon did not start; see {self.log}")
            time.sleep(0.1)
        self._start_consumer()
        self._arrivals.append(self.dp.start_arrivals(PL_RATE, PL.client_id))
        if self.poll:
            self._arrivals.append(self.mi.start_arrivals(MI_RATE, client_id=MI.client_id))
            self._arrivals.append(self.mi.start_arrivals(AGENT_RATE, client_id=AGENT_ID))
        if self.push:  # pushes start once the daemon listens
            self._seeding = threading.Thread(target=self._seed_pushes, daemon=True)
            self._seeding.start()

    def _start_consumer(self) -> None:
        """The consumer kit as group ``demo`` (own session: a Ctrl-C is for the demo)."""
        args = ["--redis", self.redis.url, "--group", GROUP, "--consumer", "demo-1"]
        for stream in KIT_STREAMS:
            args += ["--stream", stream]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[3])  # the checkout (or site-packages)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        with (self.tmp / "consumer.log").open("ab") as log:
            self.consumer = subprocess.Popen(
                [sys.executable, "-m", "drainer_consumer", *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmp,
                start_new_session=True,
            )

    def stop_consumer(self) -> None:
        if self.consumer is not None and self.consumer.poll() is None:
            self.consumer.terminate()
            try:
                self.consumer.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.consumer.kill()
                self.consumer.wait()

    def _seed_pushes(self) -> None:
        self.dp.push(ES_ID, self.dp.enqueue(ES_ID, ES_SEED))
        if not self._halted.is_set():
            self._arrivals.append(self.dp.start_arrivals(ES_RATE, ES_ID))

    def _healthy(self) -> bool:
        try:
            return requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).ok
        except requests.RequestException:
            return False

    def _write_config(self) -> Path:
        """The daemon's TOML: this Redis, a spool in the temp dir, the sandboxes' accounts."""
        pull = {"name": "pl", "client_id": PL.client_id, "client_secret": PL.client_secret}
        tables: list[tuple[str, dict[str, object]]] = [
            ("redis", {"url": self.redis.url}),
            ("spool", {"dir": str(self.tmp / "spool")}),
            ("server", {"listen": f"127.0.0.1:{self.port}"}),
            ("log", {"level": "info", "format": "json"}),
            ("[docplanner]", {**pull, "base_url": self.dp.base_url, "idle_interval": "1s"}),
        ]
        if self.push:
            push: dict[str, object] = {"name": "es", "client_id": ES_ID, "mode": "push"}
            push.update(client_secret=self.es.client_secret, push_token=self.es.push_token)
            tables.append(("[docplanner]", {**push, "base_url": self.dp.base_url}))
        if self.poll:
            start_at = datetime.now(UTC) - timedelta(days=MI_DAYS, hours=1)
            poll: dict[str, object] = {"name": "acme", "client_id": MI.client_id}
            poll.update(client_secret=MI.client_secret, base_url=self.mi.base_url)
            poll.update(interval="3s", overlap="10m", requests_per_minute=MI_RPM)
            tables.append(
                ("[myinvois]", {**poll, "start_at": start_at.isoformat(timespec="seconds")})
            )
            for name, tin in AGENT_TAXPAYERS.items():  # one Client ID: budgets shared
                agent = {**poll, "name": name, "client_id": AGENT_ID, "on_behalf_of": tin}
                agent.update(
                    client_secret=AGENT_SECRET, start_at=start_at.isoformat(timespec="seconds")
                )
                tables.append(("[myinvois]", agent))
        lines = []
        for name, values in tables:
            lines.append(f"[{name}]")
            lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
        path = self.tmp / "drainer.toml"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def daemon_alive(self) -> bool:
        return self.daemon is not None and self.daemon.poll() is None

    def halt_arrivals(self) -> None:
        """No new upstream notifications from now on (waits for the seed pushes)."""
        self._halted.set()
        for halt in self._arrivals:
            halt.set()
        if self._seeding is not None:
            self._seeding.join(timeout=30)
        for halt in self._arrivals:  # the seeding thread may have added one
            halt.set()

    def revive_redis(self, after_signal: bool) -> bool:
        """A terminal Ctrl-C also stops redis-server (same process group): restart it.

        Its append-only file brings every entry back; returns True when it was restarted.
        """
        deadline = time.monotonic() + (1.0 if after_signal else 0.0)
        while self.redis.running and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.redis.running:
            return False
        self.redis.start()
        return True

    def stop_daemon(self) -> int | None:
        """SIGTERM and wait for the exit code (None when it had to be killed)."""
        if self.daemon is None:
            return None
        if self.daemon.poll() is None:
            self.daemon.send_signal(signal.SIGTERM)
        try:
            return self.daemon.wait(timeout=DAEMON_STOP)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            self.daemon.wait()
            return None

    def close(self, keep_redis: bool, keep_files: bool) -> None:
        """Stop everything (Redis and the consumer too unless ``keep_redis``); clean up."""
        self.halt_arrivals()
        if not keep_redis:
            self.stop_consumer()
        if self.daemon is not None and self.daemon.poll() is None:
            self.daemon.kill()
            self.daemon.wait()
        self.dp.stop()
        self.mi.stop()
        self.client.close()
        if not keep_redis:
            self.redis.stop()
        if not keep_redis and not keep_files:
            shutil.rmtree(self.tmp, ignore_errors=True)
