"""The pieces a reload relies on: SIGHUP counting, the push map, [runtime] keys, ExecReload."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any, cast

import pytest

from daemon.errors import ConfigError
from daemon.runtime.parts import PushMap
from daemon.runtime.signals import SignalFlag, capture_signals
from daemon.settings import load_settings
from daemon.sources.docplanner.push import PushReceiver

ROOT = Path(__file__).resolve().parents[2]


def test_sighup_is_counted_apart_from_stop_signals_and_the_old_handler_returns() -> None:
    """With reload=True a SIGHUP bumps ``reloads`` only (no stop); afterwards it is restored."""
    before = signal.getsignal(signal.SIGHUP)
    flag = SignalFlag()
    with capture_signals(flag, reload=True):
        os.kill(os.getpid(), signal.SIGHUP)
        assert not flag.sleep(0.2)  # not a stop signal
        assert flag.reloads == 1 and flag.count == 0
    assert signal.getsignal(signal.SIGHUP) is before


def test_a_retired_push_receiver_no_longer_authorises_but_finishes_a_request_in_flight() -> None:
    """After retire(): get() (authorisation) misses, [] still finds it until forget()."""
    receiver = cast(PushReceiver, object())
    push = PushMap()
    push.put("pl", receiver)
    seen = dict(push)  # a reader's view before the reload
    push.retire("pl")
    assert push.get("pl") is None and "pl" not in push and len(push) == 0
    assert push["pl"] is receiver and seen == {"pl": receiver}
    push.forget("pl")
    with pytest.raises(KeyError):
        push["pl"]
    push.put("pl", receiver)  # re-added
    assert push.get("pl") is receiver


@pytest.mark.parametrize("value", [0, 65])
def test_runtime_pool_sizes_out_of_range_are_a_config_error_naming_the_key(
    tmp_path: Path, value: int
) -> None:
    """``[runtime] workers`` outside 1..64 exits 2 with one line naming runtime.workers."""
    path = tmp_path / "drainer.toml"
    path.write_text(f"[runtime]\nworkers = {value}\n")
    with pytest.raises(ConfigError, match=r"runtime\.workers"):
        load_settings(path, {})


def test_runtime_defaults_fit_the_thread_budget() -> None:
    """Defaults: 16 intake + 8 publisher threads (36 in all with one HTTP listener)."""
    settings: Any = load_settings(ROOT / "config" / "drainer.example.toml", {}, secrets=False)
    assert (settings.runtime.workers, settings.runtime.publishers) == (16, 8)
    total = 1 + 2 + settings.runtime.workers + settings.runtime.publishers
    total += 1 + settings.server.threads
    assert total <= 64


def test_the_unit_reloads_with_sighup() -> None:
    """`systemctl reload` sends SIGHUP to the daemon (the unit's ExecReload)."""
    unit = (ROOT / "deploy" / "systemd" / "notification-drainer.service").read_text()
    assert "\nExecReload=/bin/kill -HUP $MAINPID\n" in unit


def test_runtime_pool_sizes_can_be_set_from_the_environment(tmp_path: Path) -> None:
    """DRAINER_RUNTIME__PUBLISHERS overrides the file, like every other section."""
    path = tmp_path / "drainer.toml"
    path.write_text("[runtime]\nworkers = 4\n")
    settings: Any = load_settings(path, {"DRAINER_RUNTIME__PUBLISHERS": "3"})
    assert (settings.runtime.workers, settings.runtime.publishers) == (4, 3)


def test_a_reload_that_crashes_is_counted_and_the_main_loop_carries_on() -> None:
    """An unexpected error while reloading is logged and counted, never raised into run()."""
    from prometheus_client import CollectorRegistry

    from daemon.metrics import Metrics
    from daemon.runtime.reload import Reloader

    registry = CollectorRegistry()

    class Broken:
        parts = cast(Any, type("P", (), {"metrics": Metrics(registry)})())

    def load() -> Any:
        raise RuntimeError("bug")

    reloader = Reloader(cast(Any, Broken()), load)
    reloader.poll(1)
    assert registry.get_sample_value("drainer_config_reload_failures_total") == 1
