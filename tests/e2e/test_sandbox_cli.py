"""``drainer sandbox`` (here ``python -m daemon.sandbox``) prints how to use it and serves."""

from __future__ import annotations

import argparse
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from daemon.sandbox import cli

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def sandbox_process(*flags: str) -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """Run the CLI on free ports; yield the process and its banner lines."""
    command = [sys.executable, "-W", "error", "-m", "daemon.sandbox"]
    command += ["--docplanner-port", "0", "--myinvois-port", "0", *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        timer = threading.Timer(20, process.kill)
        timer.start()
        try:
            for line in process.stdout:
                lines.append(line.rstrip("\n"))
                if line.startswith("Serving until"):
                    break
        finally:
            timer.cancel()
        yield process, lines
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def urls(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.match(r'base_url = "(.+)"', line))]


def test_cli_prints_urls_serves_and_exits_0_on_sigint() -> None:
    """The banner names both URLs and the credentials, curl-style calls work, SIGINT exits 0."""
    with (
        sandbox_process("--notifications", "5", "--myinvois-notifications", "7") as (proc, lines),
        requests.Session() as http,
    ):
        text = "\n".join(lines)
        assert "sandbox-dp-secret" in text and "sandbox-mi-secret" in text
        assert "curl -s -H" in text and "[[docplanner]]" in text and "[[myinvois]]" in text
        dp_url, mi_url = urls(lines)
        token = http.post(
            f"{dp_url}/oauth/v2/token",
            auth=("sandbox-dp", "sandbox-dp-secret"),
            data={"grant_type": "client_credentials", "scope": "integration"},
        ).json()["access_token"]
        pulled = http.get(
            f"{dp_url}/api/v3/integration/notifications/multiple",
            params={"limit": 2},
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.docplanner+json",
            },
        )
        assert pulled.status_code == 200 and pulled.json()["remaining"] == 3
        mi_token = http.post(
            f"{mi_url}/connect/token",
            data={
                "client_id": "sandbox-mi",
                "client_secret": "sandbox-mi-secret",
                "grant_type": "client_credentials",
                "scope": "InvoicingAPI",
            },
        ).json()["access_token"]
        page = http.get(
            f"{mi_url}/api/v1.0/notifications/taxpayer",
            headers={"Authorization": f"Bearer {mi_token}"},
        )
        assert len(page.json()["result"]) == 7
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        assert "sandbox stopped" in out


def test_cli_sigterm_exits_0() -> None:
    """SIGTERM stops the sandbox cleanly too."""
    with sandbox_process("--notifications", "1") as (proc, _):
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err


def test_cli_push_url_pushes_seeded_notifications(receiver: Any) -> None:
    """--push-url adds a push client whose queued notifications are POSTed with the token."""
    flags = ("--notifications", "3", "--push-url", receiver.url, "--push-token", "tok-9")
    with sandbox_process(*flags) as (proc, lines):
        assert any("sandbox-dp-push" in line for line in lines)
        done = threading.Event()
        for _ in range(100):
            if len(receiver.received) >= 3:
                break
            done.wait(0.05)
        assert len(receiver.received) == 3
        assert all(headers["X-Drainer-Token"] == "tok-9" for headers, _ in receiver.received)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        assert proc.returncode == 0


def test_cli_rejects_bad_fault_rate() -> None:
    """A fault rate outside 0..1 is a usage error (exit 2) before anything binds."""
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["--fault-rate", "2"])) == 2


def test_cli_serves_the_identity_service_on_its_own_port() -> None:
    """--identity-port: the banner's identity_url differs from base_url and issues tokens."""
    with sandbox_process("--identity-port", "0") as (proc, lines), requests.Session() as http:
        identity = [m.group(1) for line in lines if (m := re.match(r'identity_url = "(.+)"', line))]
        mi_url = urls(lines)[1]
        assert len(identity) == 1 and identity[0] != mi_url
        data = {"client_id": "sandbox-mi", "client_secret": "sandbox-mi-secret"}
        data["grant_type"] = "client_credentials"
        assert http.post(f"{identity[0]}/connect/token", data=data).status_code == 200
        assert http.post(f"{mi_url}/connect/token", data=data).status_code == 404
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=15) == 0
