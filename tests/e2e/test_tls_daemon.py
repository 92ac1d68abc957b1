"""The DocPlanner drain through the real CLI over TLS (tls_redis fixture: tests/integration)."""

from __future__ import annotations

from pathlib import Path

from daemon.sandbox import DocPlannerClient, DocPlannerSandbox
from daemon.sink.connect import connect
from tests.helpers import Daemon, wait_for, wait_settled, write_config
from tests.integration.test_tls import full_settings, tls_redis

__all__ = ["tls_redis"]  # fixtures shared with tests/integration/test_tls.py


def test_docplanner_drain_over_tls(tmp_path: Path, tls_redis: tuple[int, Path]) -> None:
    """The real CLI with the TLS keys in [redis] drains 500 notifications exactly once."""
    port, base = tls_redis
    client = connect(full_settings(port, base))
    client.delete("drainer:{docplanner}")
    tls = "\n".join(
        f'{key} = "{base / name}"'
        for key, name in (
            ("tls_ca_file", "ca.crt"),
            ("tls_cert_file", "client.crt"),
            ("tls_key_file", "client.key"),
        )
    )
    with DocPlannerSandbox(
        clients=[DocPlannerClient(client_id="pl-id", client_secret="pl-secret")]
    ) as sandbox:
        sandbox.enqueue("pl-id", 500)
        account = {
            "name": "pl",
            "base_url": sandbox.base_url,
            "client_id": "pl-id",
            "client_secret": "pl-secret",
            "idle_interval": "200ms",
        }
        config = write_config(
            tmp_path / "drainer.toml", f"rediss://127.0.0.1:{port}/0", docplanner=[account]
        )
        # The TLS keys belong to [redis]: put them right after its url line.
        text = config.read_text().replace("[spool]", tls + "\n[spool]", 1)
        config.write_text(text)
        with Daemon(config) as daemon:
            wait_for(lambda: client.xlen("drainer:{docplanner}") >= 500, 30, "500 entries")
            wait_settled(daemon)
            assert daemon.stop() == 0
        assert len(sandbox.handed_out("pl-id")) == 500
    assert client.xlen("drainer:{docplanner}") == 500
    client.close()
