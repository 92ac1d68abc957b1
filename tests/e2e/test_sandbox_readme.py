"""The README's `drainer sandbox` section is what the command prints, and it runs as printed."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from daemon.commands.demo.localredis import LocalRedis
from tests.helpers import ROOT

README_COMMAND = "$ .venv/bin/drainer sandbox --notifications 1000\n"
START_AT = re.compile(r'start_at = "[^"]+"')


@contextmanager
def sandbox(*flags: str) -> Iterator[str]:
    """`drainer sandbox` on free ports with ``flags``; yields its banner once it serves."""
    command = [sys.executable, "-m", "daemon", "sandbox", "--docplanner-port", "0"]
    command += ["--myinvois-port", "0", *flags]
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    timer = threading.Timer(30, process.kill)
    timer.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Serving until"):
                break
        timer.cancel()
        yield "".join(lines)
    finally:
        timer.cancel()
        process.kill()
        process.communicate(timeout=10)


def section(banner: str, title: str) -> str:
    """The lines after the ``# <title>`` line, up to the next blank line before a ``#`` title."""
    text = banner.split(f"\n# {title}", 1)[1].split("\n", 1)[1]
    return re.split(r"\n\n(?=# |Serving)", text)[0] + "\n"


def readme_block() -> str:
    """What the README shows `drainer sandbox --notifications 1000` printing."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return text.split(README_COMMAND, 1)[1].split("```", 1)[0]


def test_the_readme_shows_what_the_command_prints() -> None:
    """The README block equals the banner (its ports 8301/8302; start_at moves with the day)."""
    with sandbox("--notifications", "1000") as banner:
        ports = re.findall(r"sandbox: +http://127\.0\.0\.1:(\d+)", banner)
    dp_port, mi_port = ports
    expected = banner.replace(f":{dp_port}", ":8301").replace(f":{mi_port}", ":8302")
    assert START_AT.sub("start_at", readme_block()) == START_AT.sub("start_at", expected)


def test_the_printed_calls_run_and_the_printed_config_connects(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """The `# try it` lines run in bash as printed; the printed config passes --connect."""
    with sandbox("--notifications", "1000", "--myinvois-notifications", "5") as banner:
        calls = section(banner, "try it")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", calls],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        decoder = json.JSONDecoder()  # curl prints no newline after a body
        pulled, end = decoder.raw_decode(result.stdout)
        page, _ = decoder.raw_decode(result.stdout, end)
        assert len(pulled["notifications"]) == 2 and pulled["remaining"] == 998
        assert len(page["result"]) == 2 and page["metadata"]["hasNext"] is True
        config = section(banner, "drainer.toml: a complete config")
        assert 'url = "redis://127.0.0.1:6380/0"' in config  # never the system Redis
        assert '[spool]\ndir = "/' in config and "/var/lib" not in config
        assert 'listen = "127.0.0.1:9465"' in config
        path = tmp_path / "sandbox.toml"
        path.write_text(config.replace("redis://127.0.0.1:6380/0", redis_server.url))
        checked = subprocess.run(
            [sys.executable, "-m", "daemon", "check-config", "--connect", "--config", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            check=False,
        )
    assert checked.returncode == 0, checked.stderr
    lines = [line for line in checked.stderr.splitlines() if line[:4] in {"ok  ", "FAIL"}]
    assert [line.split(":")[0] for line in lines] == [
        "ok    redis",
        "ok    redis server",
        "ok    redis eviction",
        "ok    redis durability",
        "ok    docplanner sandbox",
        "ok    myinvois sandbox",
    ]
