"""``drainer demo``: sandboxes, a private Redis and the real daemon, a live view and a verdict.

The run itself is :class:`~daemon.commands.demo.session.Demo`. It draws with ``rich``, the
optional ``ui`` extra, so this module (imported by ``daemon.cli`` for every command, ``run``
included) imports neither: without the extra, ``drainer demo`` says how to install it and
exits 2.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress

from daemon.commands import UI_EXTRA_MISSING
from daemon.errors import EXIT_FATAL, EXIT_USAGE


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``drainer demo`` flags."""
    add = parser.add_argument
    add("--seconds", type=float, metavar="N", help="stop after N seconds (default: at Ctrl-C)")
    add("--notifications", type=int, default=2000, metavar="N", help="DocPlanner queue seed")
    add(
        "--keep",
        action="store_true",
        help="leave Redis and the example consumer running afterwards (stop it by hand)",
    )


def run(args: argparse.Namespace) -> int:
    """Run the demo; 0 when every handed-out notification was published exactly once."""
    if args.notifications < 0 or (args.seconds is not None and args.seconds < 0):
        print("drainer demo: --seconds and --notifications cannot be negative", file=sys.stderr)
        return EXIT_USAGE
    try:
        from rich.console import Console
    except ImportError:  # the optional `ui` extra is not installed
        print(f"drainer demo: {UI_EXTRA_MISSING}", file=sys.stderr)
        return EXIT_USAGE
    from daemon.commands.demo.session import Demo

    with suppress(BrokenPipeError):
        return Demo(args, Console(soft_wrap=True, highlight=False)).run()
    return EXIT_FATAL
