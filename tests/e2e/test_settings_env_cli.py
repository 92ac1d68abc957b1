"""drainer check-config in a subprocess: an error from the environment exits 2 with one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.unit.test_settings_env import write


def test_cli_config_error_from_the_environment_exits_2_with_one_line(tmp_path: Path) -> None:
    """`drainer check-config` with a bad DRAINER_ value: exit 2, one stderr line naming it."""
    path = write(tmp_path)
    env = {**os.environ, "DRAINER_MYINVOIS__ACME__PAGE_SIZE": "-5"}
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(
        "drainer: config error: environment DRAINER_MYINVOIS__ACME__PAGE_SIZE: "
        "myinvois[0].page_size: "
    ), line
