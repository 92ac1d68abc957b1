"""Redis at start-up: no TLS weakening in the url, passwords redacted, no evicting policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from daemon.commands.demo.localredis import LocalRedis
from daemon.settings import load_settings, redact_url
from daemon.sink import connect
from daemon.sink.memory import evicting_policy
from tests.helpers import ROOT, assert_redis_config_error, write_config


@pytest.mark.parametrize(
    "query", ["ssl_cert_reqs=none", "ssl_check_hostname=false", "ssl_ca_certs=/tmp/ca.pem"]
)
def test_tls_options_in_the_url_are_refused(tmp_path: Path, query: str) -> None:
    """rediss://...?ssl_cert_reqs=none is a config error naming redis.url, not silent."""
    assert_redis_config_error(tmp_path, f'url = "rediss://h:6380/0?{query}"', "redis.url")


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://pw-sentinel-only@h1:26379,h2:26379/mymaster/0",
        "rediss+cluster://pw-cluster-only@h1:7000,h2:7001",
        "redis://h:6379/0?password=pw-in-the-query",
        "redis://user:pw-userinfo@h:6379/0",
    ],
)
def test_every_printed_form_of_a_url_hides_its_password(tmp_path: Path, url: str) -> None:
    """redact_url and check-config hide password-only, query and userinfo passwords."""
    secret = url.split("pw-")[1].split("@", maxsplit=1)[0].split("&", maxsplit=1)[0]
    assert secret not in redact_url(url)
    path = tmp_path / "drainer.toml"
    path.write_text(f'[redis]\nurl = "{url}"\n')
    settings = load_settings(path, {})
    assert f"pw-{secret}" in settings.secret_values()
    result = subprocess.run(
        [sys.executable, "-m", "daemon", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert secret not in result.stdout + result.stderr


def run_once(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "daemon", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


def test_evicting_policy_refuses_to_start(tmp_path: Path, own_redis: LocalRedis) -> None:
    """maxmemory-policy allkeys-lru: exit 2 and one line naming redis.allow_eviction."""
    client = connect(load_settings(write_config(tmp_path / "a.toml", own_redis.url), {}).redis)
    assert evicting_policy(client) is None  # the default noeviction
    client.config_set("maxmemory", "512mb")
    for policy in ("allkeys-lru", "volatile-ttl"):  # seen keys carry a TTL: volatile-* too
        client.config_set("maxmemory-policy", policy)
        assert evicting_policy(client) == policy
    client.config_set("maxmemory-policy", "allkeys-lru")
    client.close()
    result = run_once(write_config(tmp_path / "drainer.toml", own_redis.url))
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "redis.allow_eviction" in line and "allkeys-lru" in line
    assert "Traceback" not in result.stdout
