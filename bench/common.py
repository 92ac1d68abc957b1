"""Shared bits of the benchmarks: a result row and the markdown table."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Row:
    """One measured figure compared with a baseline or a physical limit of the same run."""

    benchmark: str
    measured: str
    reference: str
    ratio: float | None
    goal: str = ""


def table(rows: list[Row]) -> str:
    lines = [
        "| benchmark | measured | reference (same run) | ratio | goal |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(
            f"| {row.benchmark} | {row.measured} | {row.reference} | {ratio} | {row.goal} |"
        )
    return "\n".join(lines)


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def daemon_config(
    directory: Path,
    redis_url: str,
    port: int,
    account: dict[str, object],
    redis: dict[str, object] | None = None,
) -> Path:
    """A config with one ``[[docplanner]]`` account, quiet logs and the spool in ``directory``."""
    lines = ["[redis]", f"url = {json.dumps(redis_url)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in (redis or {}).items()]
    lines += [
        "[spool]",
        f"dir = {json.dumps(str(directory / 'spool'))}",
        "[server]",
        f'listen = "127.0.0.1:{port}"',
        "[log]",
        'level = "warning"',
        "[[docplanner]]",
    ]
    lines += [f"{key} = {json.dumps(value)}" for key, value in account.items()]
    path = directory / "drainer.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_daemon(
    config: Path, out: IO[bytes] | int = subprocess.DEVNULL
) -> subprocess.Popen[bytes]:
    """``python -m daemon run --config config`` from the checkout, output to ``out``."""
    return subprocess.Popen(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT if out is not subprocess.DEVNULL else subprocess.DEVNULL,
    )


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a live process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) / 1024
    return cpu, peak


def threads(pid: int) -> int:
    """The live process's thread count, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    return 0
