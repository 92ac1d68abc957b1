"""Run every benchmark and print one markdown table: `python -m bench [NAME ...]`."""

from __future__ import annotations

import importlib
import sys
import time

from bench.common import Row, machine, table

BENCHMARKS = (
    "bench_docplanner",
    "bench_many_accounts",
    "bench_myinvois",
    "bench_push",
    "bench_rss",
    "bench_durable",
    "bench_intermediary",
)


def main(names: list[str]) -> int:
    rows: list[Row] = []
    for name in names or BENCHMARKS:
        try:
            module = importlib.import_module(f"bench.{name}")
        except ModuleNotFoundError:
            print(f"(skipping {name}: not present)", file=sys.stderr)
            continue
        started = time.monotonic()
        print(f"running {name} ...", file=sys.stderr)
        rows.extend(module.run())
        print(f"  {name} took {time.monotonic() - started:.0f} s", file=sys.stderr)
    print(f"Machine: {machine()}\n")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
