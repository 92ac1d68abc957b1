"""Shared bits of the benchmarks: a result row and the markdown table."""

from __future__ import annotations

import platform
import resource
from dataclasses import dataclass


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
    import os

    return f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
