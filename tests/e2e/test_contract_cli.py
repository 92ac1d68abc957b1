"""The contract commands in a subprocess: the consumer kit's check and drainer share."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from daemon.commands.share import SHARED, shared_file
from drainer_consumer.contract import FILES, published

ROOT = Path(__file__).resolve().parents[2]


def test_contract_check_command_passes_on_the_checkout() -> None:
    """`python -m drainer_consumer.contract` (the check CI can run) exits 0 on these files."""
    done = subprocess.run(
        [sys.executable, "-m", "drainer_consumer.contract"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout


def test_drainer_share_hands_out_the_contract_files() -> None:
    """`drainer share` lists the three contract files and prints each one as shipped."""
    for name in FILES:
        assert name in SHARED
        assert shared_file(name).read_text(encoding="utf-8") == published(name)
    out = subprocess.run(
        [sys.executable, "-m", "daemon", "share", "asyncapi.json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out)["asyncapi"] == "3.0.0"
