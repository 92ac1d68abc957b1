"""TLS: a redis-server with --tls-port and client-cert auth, certificates made with openssl."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from daemon.commands.demo.localredis import find_redis_server, free_port
from daemon.envelope.entries import StreamEntry
from daemon.settings import RedisSettings
from daemon.sink import RedisSink
from daemon.sink.connect import connect
from tests.helpers import assert_redis_config_error, wait_for


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_certificates(directory: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it."""
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=drainer-test-ca",
        cwd=directory,
    )  # fmt: skip
    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}",
            cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-out", f"{name}.crt", "-extfile", "san.cnf",
            cwd=directory,
        )  # fmt: skip


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    """redis-server on a TLS port only (plain port 0), client certificates required."""
    base = tmp_path_factory.mktemp("tls")
    make_certificates(base)
    port = free_port()
    process = subprocess.Popen(
        [
            find_redis_server(),
            "--port", "0",
            "--tls-port", str(port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(base / "server.crt"),
            "--tls-key-file", str(base / "server.key"),
            "--tls-ca-cert-file", str(base / "ca.crt"),
            "--tls-auth-clients", "yes",
            "--dir", str(base),
            "--save", "",
            "--logfile", str(base / "redis.log"),
        ]
    )  # fmt: skip
    try:
        settings = full_settings(port, base)
        wait_for(lambda: _pings(settings), 10, "TLS redis-server")
        yield port, base
    finally:
        process.kill()
        process.wait(timeout=10)


def full_settings(port: int, base: Path, **extra: object) -> RedisSettings:
    values: dict[str, object] = {
        "url": f"rediss://127.0.0.1:{port}/0",
        "tls_ca_file": base / "ca.crt",
        "tls_cert_file": base / "client.crt",
        "tls_key_file": base / "client.key",
        **extra,
    }
    return RedisSettings(**values)  # type: ignore[arg-type]  # test-built keyword values


def _pings(settings: RedisSettings) -> bool:
    client = connect(settings, timeout=1.0)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def test_tls_with_ca_and_client_certificate_publishes(tls_redis: tuple[int, Path]) -> None:
    """rediss:// + tls_ca_file + a client certificate: ping, publish and dedupe over TLS."""
    port, base = tls_redis
    client = connect(full_settings(port, base))
    try:
        sink = RedisSink(client, dedupe_window=60, stream_maxlen=0)
        entry = StreamEntry("tls:{a}", "1", {"event_id": "1"})
        assert sink.publish([entry, entry]).published == 1
        assert client.xlen("tls:{a}") == 1
    finally:
        client.close()


def test_tls_without_the_ca_fails_verification(tls_redis: tuple[int, Path]) -> None:
    """Without tls_ca_file the server certificate (our own CA) is not trusted: no connection."""
    port, base = tls_redis
    settings = RedisSettings(
        url=f"rediss://127.0.0.1:{port}/0",
        tls_cert_file=base / "client.crt",
        tls_key_file=base / "client.key",
    )
    assert not _pings(settings)


def test_tls_insecure_skip_verify_accepts_an_unknown_ca(tls_redis: tuple[int, Path]) -> None:
    """tls_insecure_skip_verify = true connects without the CA (the client cert still counts)."""
    port, base = tls_redis
    settings = RedisSettings(
        url=f"rediss://127.0.0.1:{port}/0",
        tls_cert_file=base / "client.crt",
        tls_key_file=base / "client.key",
        tls_insecure_skip_verify=True,
    )
    assert _pings(settings)


def test_tls_without_a_client_certificate_is_refused(tls_redis: tuple[int, Path]) -> None:
    """The server requires client certificates: the CA alone is not enough."""
    port, base = tls_redis
    settings = RedisSettings(url=f"rediss://127.0.0.1:{port}/0", tls_ca_file=base / "ca.crt")
    assert not _pings(settings)


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ('url = "redis://h:1/0"\ntls_ca_file = "/ca.crt"', "redis.tls_ca_file"),
        (
            'url = "redis://h:1/0"\ntls_insecure_skip_verify = true',
            "redis.tls_insecure_skip_verify",
        ),
        ('url = "rediss://h:1/0"\ntls_key_file = "/k"', "redis.tls_key_file"),
        ('url = "rediss://h:1/0"\ntls_cert_file = "/c"', "redis"),
    ],
)
def test_inconsistent_tls_settings_are_one_line_config_errors(
    tmp_path: Path, toml: str, key: str
) -> None:
    """TLS options on a plain url, a key without a cert and a cert without a key are refused."""
    assert_redis_config_error(tmp_path, toml, key)
