"""drainer run in a subprocess: a port in use is one error line at priority err."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

from daemon.commands.demo.localredis import LocalRedis
from tests.helpers import ROOT, write_config


def test_port_in_use_is_one_error_line_at_priority_err(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """`drainer run` on a busy port: exit 1, one line (priority <3> for journald), no traceback."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path / "drainer.toml", redis_server.url, listen_port=port)
        log_path = tmp_path / "journal"
        with log_path.open("wb") as journal:
            info = os.fstat(journal.fileno())
            result = subprocess.run(
                [sys.executable, "-m", "daemon", "run", "--config", str(config)],
                stdout=journal,
                stderr=subprocess.STDOUT,
                env={**os.environ, "JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"},
                cwd=ROOT,
                timeout=60,
                check=False,
            )
    output = log_path.read_text()
    assert result.returncode == 1, output
    assert "Traceback" not in output
    (line,) = output.splitlines()
    assert line.startswith("<3>{")
    fatal = json.loads(line[3:])
    assert fatal["event"] == "drainer.fatal" and f"127.0.0.1:{port}" in fatal["error"]
