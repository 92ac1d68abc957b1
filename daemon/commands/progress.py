"""``drainer backfill``'s progress: a rich bar with the ``ui`` extra, else plain lines.

Both print to stderr, so the final summary line is all a script piping stdout reads. The
plain form prints one line when the share of the range covered grows by a step (10 %) and
a last line at the end: enough for a log file, quiet enough for a terminal.
"""

from __future__ import annotations

import sys
from typing import Any, Protocol, Self, TextIO

FIELDS = ("requests", "notifications", "published")


class Progress(Protocol):
    """What the backfill needs from a progress display."""

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...

    def update(self, completed: float, requests: int, notifications: int, published: int) -> None:
        """The share of the range covered so far (out of ``total``) and the counters."""

    def stop(self) -> None:
        """Stop drawing (before a last message)."""

    def say(self, text: str) -> None:
        """One line of text, above the bar when there is one."""


class PlainProgress:
    """Progress as plain lines on a text stream, for installs without ``rich``."""

    def __init__(self, label: str, total: float, out: TextIO = sys.stderr, steps: int = 10):
        self.label, self.total, self.out, self.steps = label, max(total, 1e-9), out, steps
        self.shown = -1  # the last step printed
        self.line = ""
        self.stopped = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def update(self, completed: float, requests: int, notifications: int, published: int) -> None:
        share = min(1.0, max(0.0, completed / self.total))
        self.line = (
            f"backfill {self.label}: {share:.0%}, {requests} requests, "
            f"{notifications} notifications, {published} new"
        )
        step = int(share * self.steps)
        if step > self.shown and not self.stopped:
            self.shown = step
            self.say(self.line)

    def stop(self) -> None:
        if not self.stopped and self.line and self.shown < self.steps:
            self.say(self.line)  # where it ended, unless that was the 100 % line
        self.stopped = True

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)


class RichProgress:
    """A ``rich`` progress bar on stderr (the ``ui`` extra)."""

    def __init__(self, label: str, total: float) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            TaskProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as Bar

        self.console = Console(stderr=True)
        self.bar = Bar(
            TextColumn(f"backfill {label}"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.fields[requests]} requests"),
            TextColumn("{task.fields[notifications]} notifications"),
            TextColumn("{task.fields[published]} new"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        fields: dict[str, Any] = dict.fromkeys(FIELDS, 0)
        self.task = self.bar.add_task("backfill", total=total, **fields)

    def __enter__(self) -> Self:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def update(self, completed: float, requests: int, notifications: int, published: int) -> None:
        self.bar.update(
            self.task,
            completed=completed,
            requests=requests,
            notifications=notifications,
            published=published,
        )

    def stop(self) -> None:
        self.bar.stop()

    def say(self, text: str) -> None:
        self.console.print(text, highlight=False, soft_wrap=True, markup=False)


def progress(label: str, total: float) -> Progress:
    """A rich bar when ``rich`` is installed, else plain lines on stderr."""
    try:
        return RichProgress(label, total)
    except ImportError:  # the optional `ui` extra is not installed
        return PlainProgress(label, total)
