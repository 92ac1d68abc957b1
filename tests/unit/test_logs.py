"""Logging: JSON lines when not a TTY, namespaced events, secrets scrubbed everywhere."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import structlog

from daemon.logs import SecretScrubber, configure_logging, journal_stream


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


def test_lists_and_mappings_stay_json_arrays_and_objects() -> None:
    """A list in a log field is a JSON array (not Python's repr), scrubbed item by item."""
    out = io.StringIO()
    configure_logging("info", "json", secrets=["hunter2-secret"], stream=out)
    structlog.get_logger("test").info(
        "runtime.started",
        docplanner=["pl", "es"],
        myinvois=("acme",),
        detail={"hunter2-secret": ["x hunter2-secret", 3, None]},
    )
    (line,) = [json.loads(text) for text in out.getvalue().splitlines()]
    assert line["docplanner"] == ["pl", "es"]
    assert line["myinvois"] == ["acme"]
    assert line["detail"] == {"***": ["x ***", 3, None]}


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


def test_journal_lines_carry_their_syslog_priority() -> None:
    """Under journald each line starts with <N>: errors <3>, warnings <4>, info <6>."""
    out = io.StringIO()
    configure_logging("info", "json", stream=out, journal=True)
    log = structlog.get_logger("t")
    log.error("sink.failed")
    log.warning("docplanner.failing")
    log.info("runtime.started")
    lines = out.getvalue().splitlines()
    assert [line[:3] for line in lines] == ["<3>", "<4>", "<6>"]
    assert json.loads(lines[0][3:])["event"] == "sink.failed"


def test_journal_stream_must_name_stdout(tmp_path: Path) -> None:
    """$JOURNAL_STREAM counts only when its device:inode is the stream's own file."""
    with (tmp_path / "out").open("w") as stream, (tmp_path / "other").open("w") as other:
        info, foreign = os.fstat(stream.fileno()), os.fstat(other.fileno())
        assert journal_stream(f"{info.st_dev}:{info.st_ino}", stream)
        assert not journal_stream(f"{foreign.st_dev}:{foreign.st_ino}", stream)
        assert not journal_stream("garbage", stream) and not journal_stream(None, stream)
