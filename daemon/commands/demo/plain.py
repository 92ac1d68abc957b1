"""A stand-in for rich's ``Console`` when the optional ``ui`` extra is not installed.

``drainer demo`` draws a live table with rich on a terminal; everywhere else (a pipe, CI,
and without rich) its view prints one plain line per second. :class:`PlainConsole` offers
the little of ``Console`` that the plain path uses: :meth:`print`, ``is_terminal`` (always
False, so the live table is never drawn) and ``height``.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


class PlainConsole:
    """Plain lines on a text stream; styles and markup are ignored."""

    is_terminal = False
    height = 24

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stdout

    def print(self, *objects: Any, **_options: Any) -> None:
        print(*(str(item) for item in objects), file=self.out, flush=True)
