"""structlog, configured once: JSON lines under systemd, a console renderer on a TTY.

Events are namespaced (``docplanner.batch_published``). A last processor scrubs every
configured secret from every value, so even an exception text that quotes a secret
cannot leak it. When stdout is the journal (``$JOURNAL_STREAM`` names it), every line
starts with its syslog priority (``<3>`` for errors), which journald strips and stores,
so ``journalctl -p err`` finds the errors.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog

LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING}
LEVELS["error"] = logging.ERROR
REDACTED = "***"
SYSLOG_PRIORITY = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3}
SYSLOG_PRIORITY["critical"] = 2


def journal_stream(value: str | None, stream: TextIO) -> bool:
    """True when ``$JOURNAL_STREAM`` (``device:inode``) names ``stream``'s file (systemd)."""
    if not value:
        return False
    try:
        device, inode = (int(part) for part in value.split(":"))
        info = os.fstat(stream.fileno())
    except (ValueError, OSError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def syslog_prefix(logger: object, method: str, rendered: Any) -> Any:
    """The last processor under journald: ``<N>`` + the rendered line (N: syslog priority)."""
    return f"<{SYSLOG_PRIORITY.get(method, 6)}>{rendered}"


def is_configured() -> bool:
    """Whether :func:`configure_logging` ran in this process (``drainer run`` only)."""
    return structlog.is_configured()


class SecretScrubber:
    """A structlog processor replacing any occurrence of a known secret with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def add(self, secrets: Iterable[str]) -> None:
        """Scrub these too (a reload's new accounts); the list is replaced, never changed."""
        self._secrets = sorted(
            {*self._secrets, *(s for s in secrets if len(s) >= 4)}, key=len, reverse=True
        )

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def value(self, value: Any) -> Any:
        """``value`` scrubbed, keeping its JSON shape: lists stay arrays, dicts objects;
        anything else that is not a JSON scalar becomes its scrubbed ``str``."""
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, int | float | bool | type(None)):
            return value
        if isinstance(value, list | tuple | set | frozenset):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.scrub(str(k)): self.value(v) for k, v in value.items()}
        return self.scrub(str(value))

    def __call__(
        self, logger: object, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._secrets:
            for key, value in event.items():
                event[key] = self.value(value)
        return event


_CONFIGURED: dict[str, SecretScrubber] = {}  # the scrubber of the last configure_logging


def scrub_also(secrets: Iterable[str]) -> None:
    """Add secrets to the configured scrubber (a reload brought new accounts)."""
    scrubber = _CONFIGURED.get("scrubber")
    if scrubber is not None:
        scrubber.add(secrets)


def configure_logging(
    level: str = "info",
    fmt: str | None = None,
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
    journal: bool = False,
) -> None:
    """Configure structlog; ``fmt=None`` picks console on a TTY and JSON otherwise.

    ``journal=True`` (stdout is journald's stream) prefixes each line with its priority.
    """
    stream = stream or sys.stdout
    scrubber = _CONFIGURED["scrubber"] = SecretScrubber(secrets)
    if fmt is None:
        fmt = "console" if stream.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=stream.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            scrubber,
            renderer,
            *([syslog_prefix] if journal else []),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )
