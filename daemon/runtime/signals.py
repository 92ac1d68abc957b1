"""SIGTERM/SIGINT (and, for ``drainer run``, SIGHUP) handling shared by ``drainer run``,
``demo`` and ``sandbox``.

The handler only increments an integer. It must not touch a lock: a handler that calls
``threading.Event.set()`` runs in the main thread, and if that thread was inside
``Event.wait()`` holding the Event's (non-reentrant) lock at that instant, the process
deadlocks. Loops poll :attr:`SignalFlag.count` (and :attr:`SignalFlag.reloads`) between
short sleeps instead.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from daemon.errors import EXIT_FATAL


class SignalFlag:
    """How many SIGTERM/SIGINT (``count``) and SIGHUP (``reloads``) have arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.reloads = 0

    def sleep(self, seconds: float, at_least: int = 1) -> bool:
        """Sleep up to ``seconds`` in short slices; True once ``at_least`` signals arrived."""
        deadline = time.monotonic() + seconds
        while self.count < at_least:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.05))
        return True


@contextmanager
def capture_signals(
    flag: SignalFlag, exit_on_second: bool = False, reload: bool = False
) -> Iterator[SignalFlag]:
    """Count SIGTERM/SIGINT into ``flag`` (optionally exit at once on the second one), and
    with ``reload`` SIGHUP into ``flag.reloads``.

    The previous handlers come back afterwards. Off the main thread nothing is installed.
    """
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        flag.count += 1
        if exit_on_second and flag.count > 1:
            os._exit(EXIT_FATAL)

    def hangup(signum: int, frame: FrameType | None) -> None:
        flag.reloads += 1

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    if reload:
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hangup)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
