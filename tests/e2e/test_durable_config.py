"""Durability settings the real CLI refuses at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from daemon.commands.demo.localredis import LocalRedis
from tests.helpers import write_config


def test_aof_durability_on_a_server_without_waitaof_is_a_config_error(
    tmp_path: Path, redis_server: LocalRedis
) -> None:
    """durability = "aof" on Redis < 7.2: ``drainer run`` exits 2 with a line naming the key."""
    config = write_config(tmp_path / "drainer.toml", redis_server.url)
    text = config.read_text().replace("[redis]\n", '[redis]\ndurability = "aof"\n', 1)
    config.write_text(text)
    done = subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert 'redis.durability = "aof" needs WAITAOF' in done.stderr
