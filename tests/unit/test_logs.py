"""Logging: JSON lines when not a TTY, namespaced events, secrets scrubbed everywhere."""

from __future__ import annotations

import io
import json

import structlog

from daemon.logs import SecretScrubber, configure_logging


def test_json_lines_and_secret_scrubbing() -> None:
    """Every configured secret is replaced by *** in every value, even inside exception text."""
    out = io.StringIO()
    configure_logging("info", "json", secrets=["hunter2-secret", "tok-123456"], stream=out)
    log = structlog.get_logger("test")
    log.info("docplanner.failing", error="401 for client_secret=hunter2-secret", n=3)
    try:
        raise ValueError("token tok-123456 refused")
    except ValueError:
        log.exception("docplanner.crashed")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "docplanner.failing" and lines[0]["n"] == 3
    assert lines[0]["level"] == "info" and "timestamp" in lines[0]
    assert "hunter2-secret" not in out.getvalue() and "tok-123456" not in out.getvalue()
    assert "***" in lines[0]["error"] and "***" in lines[1]["exception"]


def test_level_filters_debug() -> None:
    """log.level = info drops debug events."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out)
    structlog.get_logger("t").debug("noise")
    assert out.getvalue() == ""


def test_console_renderer_is_plain_text() -> None:
    """format = console renders human text, not JSON."""
    out = io.StringIO()
    configure_logging("debug", "console", stream=out)
    structlog.get_logger("t").info("runtime.started", listen="127.0.0.1:9464")
    text = out.getvalue()
    assert "runtime.started" in text and not text.lstrip().startswith("{")


def test_scrubber_ignores_short_strings() -> None:
    """Secrets shorter than 4 characters are not scrubbed (they would mangle every line)."""
    assert SecretScrubber(["ab"]).scrub("abc") == "abc"
