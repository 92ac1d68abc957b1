"""``drainer demo``: sandboxes, a private Redis and the real daemon, a live view and a verdict.

The run itself is :class:`~daemon.commands.demo.session.Demo`. On a terminal it draws a
live table with ``rich``, the optional ``ui`` extra, so this module (imported by
``daemon.cli`` for every command, ``run`` included) imports neither. Without the extra the
demo runs all the same and prints plain lines (:class:`~.plain.PlainConsole`).
"""

from __future__ import annotations

import argparse
import sys
from contextlib import suppress
from typing import TYPE_CHECKING, cast

from daemon.commands import UI_EXTRA_MISSING
from daemon.errors import EXIT_FATAL, EXIT_USAGE

if TYPE_CHECKING:
    from rich.console import Console


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
    from daemon.commands.demo.session import Demo

    console: Console
    try:
        from rich.console import Console
    except ImportError:  # the optional `ui` extra is not installed: plain lines
        from daemon.commands.demo.plain import PlainConsole

        print(f"drainer demo: plain output ({UI_EXTRA_MISSING})", file=sys.stderr)
        console = cast("Console", PlainConsole())
    else:
        console = Console(soft_wrap=True, highlight=False)
    with suppress(BrokenPipeError):
        return Demo(args, console).run()
    return EXIT_FATAL
