"""Route stdlib ``logging`` (waitress's loggers, and any other) into structlog.

waitress logs through the stdlib loggers ``waitress`` and ``waitress.queue``. Without a
handler, ``logging`` prints warnings and tracebacks as plain text on stderr, past the JSON
log and its secret scrubber. Here they become ``http.server_log`` events (tracebacks in the
JSON ``exception`` field); ``waitress.queue``'s "Task queue depth" warnings are left to the
``drainer_http_queue_depth`` gauge. An uncaught exception in a thread is logged the same way.
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
    """Idempotent: install the bridge on ``waitress`` and as ``logging.lastResort``."""
    logging.raiseExceptions = False  # a failing handler must not print '--- Logging error ---'
    handler = _ToStructlog()
    for name, level in (("waitress", logging.INFO), ("waitress.queue", logging.ERROR)):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level)
        logger.propagate = False
    fallback = _ToStructlog(logging.WARNING)  # for loggers without a handler (was: stderr)
    logging.lastResort = fallback
    threading.excepthook = _thread_crashed
