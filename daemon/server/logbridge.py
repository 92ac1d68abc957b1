"""Route stdlib ``logging`` (waitress's loggers, and any other) into structlog.

waitress logs through the stdlib loggers ``waitress`` and ``waitress.queue``. Without a
handler, ``logging`` prints warnings and tracebacks as plain text on stderr, past the JSON
log and its secret scrubber. Here they become ``http.server_log`` events (tracebacks in the
JSON ``exception`` field); ``waitress.queue``'s "Task queue depth" warnings are left to the
``drainer_http_queue_depth`` gauge. :func:`install_process_logging` (process-wide: the
runtime calls it once at start, never a side effect of building the HTTP front) does the
same for every other logger without a handler and for an uncaught exception in a thread.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import structlog

log = structlog.get_logger("daemon.server")


class _ToStructlog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            fields: dict[str, Any] = {"logger": record.name, "detail": record.getMessage()}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            event = "http.server_log" if record.name.startswith("waitress") else "stdlib.log"
            log.log(record.levelno, event, **fields)
        except Exception:  # a log line must never break the server
            self.handleError(record)


def _thread_crashed(args: threading.ExceptHookArgs) -> None:
    log.error(
        "thread.crashed",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def route_server_logging() -> None:
    """Idempotent: install the bridge on the ``waitress`` loggers (the server's own)."""
    handler = _ToStructlog()
    for name, level in (("waitress", logging.INFO), ("waitress.queue", logging.ERROR)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False


def install_process_logging() -> None:
    """Process-wide and idempotent: the bridge as ``logging.lastResort`` and the thread
    exception hook. The runtime calls it once at start."""
    logging.raiseExceptions = False  # a failing handler must not print '--- Logging error ---'
    logging.lastResort = _ToStructlog(logging.WARNING)  # loggers without a handler (was: stderr)
    threading.excepthook = _thread_crashed
