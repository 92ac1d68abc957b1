"""``drainer status``: per account cursor, spool backlog, stream length, last success/error,
and each stream's consumer groups (lag, pending, oldest pending age, lost entries).

Read-only and safe beside a running daemon: the spool is scanned without being opened
for writing, Redis is only read, and the running daemon (if any) is asked for its
``/metrics`` and ``/readyz`` on ``server.listen``. Needs no upstream secrets: the
configuration is loaded without reading any ``*_file`` secret.

The exit code says whether all is well (:data:`EPILOG`); every problem also gets one line
on stderr. The table uses ``rich`` when installed (the ``ui`` extra), else plain text.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from daemon.commands.status_collect import collect
from daemon.commands.status_render import render
from daemon.settings import config_path, load_settings

EXIT_HEALTHY = 0
EXIT_DAEMON_UNREACHABLE = 3
EXIT_REDIS_DOWN = 4
EXIT_NOT_READY = 5

EPILOG = f"""exit codes (when several things are wrong, the lowest code wins;
each problem is also printed as one line on stderr):
  {EXIT_HEALTHY}  the daemon answers /readyz as ready, Redis answers, no account is failing
  2  usage or config error
  {EXIT_DAEMON_UNREACHABLE}  the daemon does not answer on server.listen (down, or wrong address)
  {EXIT_REDIS_DOWN}  Redis does not answer (to this command or to the daemon)
  {EXIT_NOT_READY}  the daemon answers but is not ready: an account is failing, or it is stopping"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="TOML config file")
    parser.add_argument("--json", action="store_true", help="machine-readable output")


def problems(report: dict[str, Any]) -> list[tuple[int, str]]:
    """(exit code, one line) for every thing that is wrong, most basic first."""
    found: list[tuple[int, str]] = []
    daemon = report["daemon"]
    if not daemon.get("reachable"):
        found.append((EXIT_DAEMON_UNREACHABLE, f"daemon unreachable: {daemon.get('daemon')}"))
    if report["redis"] != "ok":
        found.append((EXIT_REDIS_DOWN, f"redis down: {report['redis']}"))
    failing = daemon.get("not_ready", {}) if daemon.get("reachable") else {}
    if "redis" in failing and report["redis"] == "ok":
        found.append((EXIT_REDIS_DOWN, f"redis down for the daemon: {failing['redis']}"))
    for name, why in failing.items():
        if name != "redis":
            found.append((EXIT_NOT_READY, f"not ready: {name}: {why}"))
    if daemon.get("reachable") and not daemon.get("ready") and not failing:
        found.append((EXIT_NOT_READY, "not ready: the daemon gave no reason"))
    return found


def run(args: argparse.Namespace) -> int:
    path = config_path(args.config, os.environ)
    settings = load_settings(path, os.environ, secrets=False)
    report = collect(settings)
    found = problems(report)
    code = min((c for c, _ in found), default=EXIT_HEALTHY)
    try:
        if args.json:
            print(json.dumps({**report, "exit_code": code}, indent=2))
        else:
            render(report)
        sys.stdout.flush()
    except BrokenPipeError:  # `drainer status --json | head`: the reader left early
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush stays quiet
    for _, line in found:
        print(f"drainer status: {line}", file=sys.stderr)
    return code
