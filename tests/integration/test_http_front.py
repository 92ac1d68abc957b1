"""HttpFront in-process (and in a child process): exposure warning, published list, EMFILE."""

from __future__ import annotations

import json
import logging
import resource
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from daemon.sandbox import DocPlannerSandbox
from daemon.server.allow import PushPolicies
from daemon.server.listener import HttpFront
from daemon.settings import DocPlannerAccount, ServerSettings
from tests.helpers import wait_for


def test_a_listen_address_off_loopback_is_warned_about_once() -> None:
    """server.listen on 0.0.0.0 serves /metrics and /readyz to the network: one warning."""
    for listen, warned in (("0.0.0.0:0", 1), ("127.0.0.1:0", 0)):
        with capture_logs() as logs:
            front = HttpFront(
                ServerSettings(listen=listen),
                CollectorRegistry(),
                lambda: True,
                lambda: (True, {}),
                {},
            )
            front.stop()
        assert len([e for e in logs if e["event"] == "http.listen_exposed"]) == warned


def test_building_the_front_installs_no_process_wide_hook() -> None:
    """HttpFront leaves threading.excepthook and logging.lastResort alone (runtime sets them)."""
    hook, last_resort = threading.excepthook, logging.lastResort
    front = HttpFront(
        ServerSettings(listen="127.0.0.1:0"),
        CollectorRegistry(),
        lambda: True,
        lambda: (True, {}),
        {},
    )
    front.stop()
    assert threading.excepthook is hook and logging.lastResort is last_resort


def test_the_published_list_is_refreshed_and_the_last_good_one_kept_on_failure() -> None:
    """public-ips.json is fetched; a failed refresh keeps the list; a new one replaces it."""
    now = [0.0]
    with DocPlannerSandbox(public_ips=["192.0.2.1"]) as sandbox:
        account = DocPlannerAccount.model_validate(
            {
                "name": "pl",
                "base_url": sandbox.base_url,
                "client_id": "id",
                "client_secret": "secret-value",
                "mode": "push",
                "push_token": "a-long-enough-push-token",
                "push_allow_published": True,
            }
        )
        policies = PushPolicies([account], clock=lambda: now[0])
        session = requests.Session()
        assert not policies.allowed("pl", "192.0.2.1")  # nothing fetched yet: fail closed
        policies.refresh_once(session)
        assert policies.allowed("pl", "192.0.2.1") and not policies.allowed("pl", "192.0.2.2")
        sandbox.public_ips = ["not an address"]
        now[0] += 86400
        with capture_logs() as logs:
            assert 300.0 <= policies.refresh_once(session) <= 360.0  # retried sooner (jitter)
            now[0] += 360
            policies.refresh_once(session)
        assert [e["event"] for e in logs] == ["push.allowlist_fetch_failed"]  # once
        assert policies.allowed("pl", "192.0.2.1")  # the last good list stays
        sandbox.public_ips = ["192.0.2.2"]
        now[0] += 360
        policies.refresh_once(session)
        assert policies.allowed("pl", "192.0.2.2") and not policies.allowed("pl", "192.0.2.1")
        session.close()


CHILD = """
import os, resource, sys
from prometheus_client import CollectorRegistry
from daemon.server.listener import HttpFront
from daemon.settings import ServerSettings
settings = ServerSettings(
    listen="127.0.0.1:0", connection_limit=500, max_connections_per_source=500
)
front = HttpFront(settings, CollectorRegistry(), lambda: True, lambda: (True, {}), {})
front.start()
used = len(os.listdir("/proc/self/fd"))
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (used + 20, hard))
print(json.dumps({"event": "port", "port": front.port}), flush=True)
sys.stdin.read()
front.stop()
"""


def test_out_of_descriptors_the_server_backs_off_logs_once_and_recovers(tmp_path: Path) -> None:
    """200 connections past RLIMIT_NOFILE: no spin, one line each way, /healthz after."""
    out = tmp_path / "out.log"
    with out.open("w") as sink:
        child = subprocess.Popen(
            [sys.executable, "-c", "import json\n" + CHILD],
            stdin=subprocess.PIPE,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    held: list[socket.socket] = []
    try:
        wait_for(lambda: '"port"' in out.read_text(), 30, "the child's port")
        port = json.loads(out.read_text().splitlines()[0])["port"]
        held = [socket.create_connection(("127.0.0.1", port), 10) for _ in range(200)]
        wait_for(lambda: "http.accept_backoff" in out.read_text(), 20, "the back-off line")
        time.sleep(1.5)  # the attacker holds on: a spinning loop would log thousands of lines
        for sock in held:
            sock.close()
        wait_for(lambda: _healthz(port), 30, "/healthz after the flood")
        lines = [line for line in out.read_text().splitlines() if line.strip()]
        assert len(lines) < 10, lines[:20]
        assert sum("http.accept_backoff" in line for line in lines) == 1
        assert sum("http.accept_resumed" in line for line in lines) == 1
    finally:
        for sock in held:
            sock.close()
        assert child.stdin is not None
        child.stdin.close()
        child.wait(30)


def _healthz(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    except requests.RequestException:
        return False


RAISE = """
import resource
from daemon.server.descriptors import ensure_descriptors
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (300, hard))
need = ensure_descriptors(1000, 1, 2)
print(need, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
"""


def test_the_soft_descriptor_limit_is_raised_when_the_hard_one_allows() -> None:
    """Soft 300 under a larger hard limit: raised to what the connection limits need."""
    if resource.getrlimit(resource.RLIMIT_NOFILE)[1] < 2000:
        pytest.skip("the hard RLIMIT_NOFILE here is below the need")
    result = subprocess.run(
        [sys.executable, "-c", RAISE], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["1136", "1136"]
