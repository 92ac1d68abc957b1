"""Issue 29's done-when figures on a live ``drainer run``: ``python -m bench.attack_intake``.

Not part of ``python -m bench`` (it takes about a minute and holds ~2,000 sockets). A real
daemon with a private redis-server, the DocPlanner sandbox, default ``[server]`` limits and
a push-only listener; the daemon's TMPDIR is a private directory.

1. 900 unauthenticated 512 KiB bodies, one byte short, to other paths on both listeners
   (from 30 loopback addresses, under the per-source cap): the daemon's RSS before, peak
   and after, its descriptors on temporary files, and good push latency meanwhile.
2. 1,000 connections sending an empty line every 13 s (``idle_timeout`` 15 s), from one
   address, then from 20 (50 each, under the cap: together they reach
   ``connection_limit``): when they were closed, push latency meanwhile.
3. ``ulimit -n 300``: the exit code and stderr of ``drainer run``.
4. A 16,000-byte token against a known and an unknown account, interleaved, 2,000 each:
   the medians and the Mann-Whitney U z-score of the response times.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, machine
from daemon.commands.demo.localredis import LocalRedis, free_port
from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.sandbox.events import NotificationFactory
from daemon.sandbox.server import json_body

TOKEN = "attack-bench-push-token"
PUSH = "/push/docplanner/pl"


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def temp_fds(pid: int, tmp: Path) -> int:
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            count += os.readlink(f"/proc/{pid}/fd/{fd}").startswith(str(tmp))
    return count


class Pusher(threading.Thread):
    """A good push every 50 ms on a fresh connection; records each POST -> answer time."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop, self.samples = port, threading.Event(), list[tuple[float, int]]()
        self.factory = NotificationFactory(seed=int(time.time()))

    def run(self) -> None:
        headers = {"X-Drainer-Token": TOKEN, "Content-Type": "application/json"}
        while not self.stop.wait(0.05):
            body = json_body(self.factory.batch(1, time.time())[0])
            began = time.perf_counter()
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                connection.request("POST", PUSH, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                connection.close()
                status = response.status
            except OSError:
                status = 0
            self.samples.append((time.perf_counter() - began, status))

    def summary(self) -> str:
        times = sorted(t for t, _ in self.samples)
        ok = sum(1 for _, s in self.samples if s == 204)
        p99 = times[min(len(times) - 1, int(0.99 * len(times)))] if times else 0.0
        return (
            f"{len(times)} pushes, {ok} answered 204, p50 {statistics.median(times) * 1e3:.1f} "
            f"ms, p99 {p99 * 1e3:.1f} ms, max {times[-1] * 1e3:.1f} ms"
        )


def bodies_attack(port: int, push_port: int, pid: int, tmp: Path) -> None:
    before = rss_mib(pid)
    pusher = Pusher(port)
    pusher.start()
    head = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 524288\r\n\r\n"
    socks, peak, fds = [], before, 0
    for n in range(900):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        sock.bind((f"127.0.0.{10 + n % 30}", 0))
        sock.settimeout(10)
        sock.connect(("127.0.0.1", port if n % 2 else push_port))
        with contextlib.suppress(OSError):
            sock.sendall(head + b"a" * (524288 - 1))
        socks.append(sock)
        if n % 100 == 0:
            peak, fds = max(peak, rss_mib(pid)), max(fds, temp_fds(pid, tmp))
    answered = 0
    for sock in socks:
        with contextlib.suppress(OSError):
            answered += sock.recv(64).startswith(b"HTTP/1.1 404")
    peak, fds = max(peak, rss_mib(pid)), max(fds, temp_fds(pid, tmp))
    for sock in socks:
        sock.close()
    time.sleep(1)
    pusher.stop.set()
    pusher.join()
    print(f"## 900 x 512 KiB unauthenticated bodies on other paths ({answered} answered 404)")
    print(f"RSS before {before:.1f} MiB, peak {peak:.1f} MiB (+{peak - before:.1f}),")
    print(f"  after {rss_mib(pid):.1f} MiB; temporary-file descriptors at most {fds},")
    print(f"  files in TMPDIR {len(os.listdir(tmp))}; good pushes: {pusher.summary()}")


def trickle_attack(port: int, pid: int, sources: int = 1) -> None:
    pusher = Pusher(port)
    pusher.start()
    socks = []
    for n in range(1000):
        sock = socket.socket()
        sock.bind((f"127.0.0.{50 + n % sources}", 0))
        sock.settimeout(5)
        sock.connect(("127.0.0.1", port))
        socks.append(sock)
    started, open_, accepted = time.monotonic(), set(range(1000)), 0
    last_close = 0.0
    for sock in socks:
        sock.setblocking(False)
    next_line = started
    while open_ and time.monotonic() - started < 40:
        if time.monotonic() >= next_line:
            for index in list(open_):
                try:
                    socks[index].send(b"\r\n")
                except OSError:
                    open_.discard(index)
            next_line += 13
        for index in list(open_):
            try:
                if socks[index].recv(64) == b"":
                    open_.discard(index)
            except BlockingIOError:
                continue
            except OSError:
                open_.discard(index)
            if time.monotonic() - started > 1:
                accepted += 1
            last_close = time.monotonic() - started
        time.sleep(0.1)
    pusher.stop.set()
    pusher.join()
    for sock in socks:
        sock.close()
    print(f"## 1,000 connections from {sources} address(es), an empty line every 13 s")
    print(f"{1000 - accepted} closed within 1 s (per-source cap, or evicted at the limit),")
    print(f"  {accepted} later; last closed after {last_close:.1f} s; still open {len(open_)}")
    print(f"  good pushes: {pusher.summary()}")


def ulimit_300(config: Path) -> None:
    def low() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (300, 300))

    result = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=low,
    )
    print("## ulimit -n 300")
    print(f"exit {result.returncode}; stderr ({len(result.stderr.splitlines())} line):")
    print(f"  {result.stderr.strip()}")


def timing(port: int, rounds: int = 2000) -> None:
    token = "t" * 16000
    times: dict[str, list[float]] = {"pl": [], "ghost": []}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    for n in range(rounds * 2):
        account = "pl" if n % 2 else "ghost"
        began = time.perf_counter()
        connection.request("GET", f"/push/docplanner/{account}", headers={"X-Drainer-Token": token})
        response = connection.getresponse()
        response.read()
        times[account].append(time.perf_counter() - began)
        if response.will_close:
            connection.close()
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.close()
    known, unknown = times["pl"], times["ghost"]
    ranked = sorted([(t, 0) for t in known] + [(t, 1) for t in unknown])
    rank_sum = sum(rank for rank, (_, group) in enumerate(ranked, 1) if group == 0)
    n1, n2 = len(known), len(unknown)
    u = rank_sum - n1 * (n1 + 1) / 2
    z = (u - n1 * n2 / 2) / ((n1 * n2 * (n1 + n2 + 1) / 12) ** 0.5)
    print("## 16,000-byte token: known vs unknown account (401 each)")
    print(f"median known {statistics.median(known) * 1e6:.0f} us, unknown")
    print(f"  {statistics.median(unknown) * 1e6:.0f} us; Mann-Whitney z = {z:+.2f}")
    print("  (|z| < 3: indistinguishable at this sample size)")


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="attack-intake-") as name:
        directory = Path(name)
        tmp = directory / "tmp"
        tmp.mkdir()
        server = LocalRedis(directory / "redis").start()
        port, push_port = free_port(), free_port()
        client = DocPlannerClient("pl-id", "pl-secret-value", None, None)
        daemon: subprocess.Popen[bytes] | None = None
        try:
            with DocPlannerSandbox(clients=[client]) as sandbox:
                account: dict[str, Any] = {
                    "name": "pl",
                    "base_url": sandbox.base_url,
                    "client_id": "pl-id",
                    "client_secret": "pl-secret-value",
                    "mode": "push",
                    "push_token": TOKEN,
                }
                lines = ["[redis]", f"url = {json.dumps(server.url)}", "[spool]"]
                lines += [f"dir = {json.dumps(str(directory / 'spool'))}", "[server]"]
                lines += [f'listen = "127.0.0.1:{port}"']
                lines += [
                    f'push_listen = "127.0.0.1:{push_port}"',
                    "auth_failures_per_minute = 100000",
                ]
                lines += ["[log]", 'level = "warning"', "[[docplanner]]"]
                lines += [f"{k} = {json.dumps(v)}" for k, v in account.items()]
                config = directory / "drainer.toml"
                config.write_text("\n".join(lines) + "\n")
                env = {**os.environ, "TMPDIR": str(tmp)}
                with (directory / "daemon.log").open("wb") as log:
                    daemon = subprocess.Popen(
                        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
                        cwd=ROOT,
                        env=env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                time.sleep(3)
                print(machine())
                bodies_attack(port, push_port, daemon.pid, tmp)
                trickle_attack(port, daemon.pid)
                trickle_attack(port, daemon.pid, sources=20)
                timing(port)
                ulimit_300(config)
                lines_logged = (directory / "daemon.log").read_text().splitlines()
                print(f"daemon log lines during the run: {len(lines_logged)}")
        finally:
            if daemon is not None:
                daemon.send_signal(signal.SIGTERM)
                daemon.wait(30)
            server.stop()


if __name__ == "__main__":
    main()
