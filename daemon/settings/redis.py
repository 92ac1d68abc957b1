"""``[redis]`` and ``[redis.sentinel]``: where the streams live and how they are written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from daemon.settings.redis_url import parse_host, parse_url, url_password
from daemon.settings.sections import Section as _Section
from daemon.settings.units import Duration


class RedisSentinelSettings(_Section):
    """``[redis.sentinel]``: find the master through these Sentinels."""

    hosts: list[str] = Field(min_length=1)
    master: str = "mymaster"

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        for host in value:
            parse_host(host)
        return value


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    dedupe_window: Duration = 86400.0
    # MyInvois seen-keys live longer: its volumes are tiny, and a backfill over the last
    # month must never republish what is already on the stream (README "De-duplication").
    dedupe_window_myinvois: Duration = 35 * 86400.0
    stream_maxlen: int = Field(default=1_000_000, ge=0)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure_skip_verify: bool = False
    cluster: bool = False
    sentinel: RedisSentinelSettings | None = None
    leases: bool = False
    lease_ttl: Duration = 15.0
    retention: Literal["consumer_groups_capped", "maxlen", "minid", "consumer_groups"] = (
        "consumer_groups_capped"
    )
    retention_age: Duration = 7 * 86400.0
    # Durable publish (daemon.sink.durability): WAIT/WAITAOF before a record is released.
    durability: Literal["auto", "none", "replicas", "aof"] = "auto"
    wait_replicas: int | str = "auto"  # "auto" or 0..16
    wait_timeout: Duration = 1.0
    # Fewer replicas connected than this: nothing is released (Kafka's min.insync.replicas).
    min_replicas: int = Field(default=0, ge=0, le=16)
    # Bounded Redis I/O (daemon.sink.connect): every command answers or fails within
    # connect_timeout + socket_timeout; a dropped connection is retried `retries` times.
    socket_timeout: Duration = 5.0
    connect_timeout: Duration = 2.0
    retries: int = Field(default=1, ge=0, le=5)
    group_metrics_limit: int = Field(default=20, ge=0)  # groups exported per stream
    # The Redis password kept out of the config: a relative name is read from
    # $CREDENTIALS_DIRECTORY. ``password`` holds what load_settings read; it is not a key.
    password_file: Path | None = None
    password: SecretStr | None = Field(default=None, exclude=True)
    allow_eviction: bool = False  # start even if maxmemory-policy can evict dedupe keys

    # Validators run in field order and only on keys that were set, so each one below
    # checks its key against the keys declared above it and the error names that key.

    @model_validator(mode="before")
    @classmethod
    def _no_inline_password(cls, data: Any) -> Any:
        if isinstance(data, dict) and "password" in data:
            raise ValueError("password: unknown key (use password_file, or the url)")
        return data

    @model_validator(mode="before")
    @classmethod
    def _no_maxlen_unless_maxlen(cls, data: Any) -> Any:
        # With minid/consumer_groups retention, stream_maxlen has no meaning: it is 0.
        if isinstance(data, dict) and data.get("retention") in ("minid", "consumer_groups"):
            data = {"stream_maxlen": 0, **data}
        return data

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        parse_url(value)
        tls_options = sorted({key for key, _ in parse_qsl(urlsplit(value).query) if "ssl" in key})
        if tls_options:
            # e.g. ?ssl_cert_reqs=none would silently turn certificate checks off.
            raise ValueError(
                f"TLS options in the url query are refused ({', '.join(tls_options)}): "
                "use tls_ca_file, tls_cert_file, tls_key_file or tls_insecure_skip_verify"
            )
        return value

    @field_validator("tls_ca_file", "tls_cert_file", "tls_key_file", "tls_insecure_skip_verify")
    @classmethod
    def _tls_needs_rediss(cls, value: Any, info: ValidationInfo) -> Any:
        if value and not str(info.data.get("url", "rediss")).startswith("rediss"):
            raise ValueError("needs a rediss:// (TLS) url")
        return value

    @field_validator("tls_key_file")
    @classmethod
    def _key_needs_cert(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and info.data.get("tls_cert_file") is None:
            raise ValueError("needs tls_cert_file (a client certificate and its key)")
        return value

    @field_validator("cluster")
    @classmethod
    def _cluster(cls, value: bool, info: ValidationInfo) -> bool:
        url = str(info.data.get("url", ""))
        if value and url.startswith(("unix:", "redis+sentinel:", "rediss+sentinel:")):
            raise ValueError("cannot be combined with a unix:// or redis+sentinel:// url")
        return value

    @field_validator("sentinel")
    @classmethod
    def _sentinel(
        cls, value: RedisSentinelSettings | None, info: ValidationInfo
    ) -> RedisSentinelSettings | None:
        url = str(info.data.get("url", ""))
        if value is not None and info.data.get("cluster"):
            raise ValueError("cannot be combined with cluster = true")
        if value is not None and not url.startswith(("redis://", "rediss://")):
            raise ValueError("needs a redis:// or rediss:// url (credentials, db and TLS)")
        return value

    @field_validator("lease_ttl")
    @classmethod
    def _lease_ttl(cls, value: float) -> float:
        if value < 1.0:
            raise ValueError("must be at least 1s")
        return value

    @field_validator("retention")
    @classmethod
    def _retention(cls, value: str, info: ValidationInfo) -> str:
        if value in ("minid", "consumer_groups") and info.data.get("stream_maxlen"):
            raise ValueError(
                'stream_maxlen must be 0 or unset unless retention = "maxlen" or'
                ' "consumer_groups_capped"'
            )
        return value

    @field_validator("wait_replicas")
    @classmethod
    def _wait_replicas(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value.isdigit():  # DRAINER_REDIS__WAIT_REPLICAS=2
            value = int(value)
        if value != "auto" and (isinstance(value, str) or not 0 <= value <= 16):
            raise ValueError('must be "auto" or a number of replicas from 0 to 16')
        return value

    @field_validator("wait_timeout")
    @classmethod
    def _wait_timeout(cls, value: float) -> float:
        # WAIT 0 blocks forever; past the 5 s socket timeout the client gives up first.
        if not 0.01 <= value <= 4.0:
            raise ValueError("must be between 10ms and 4s (below the 5s Redis socket timeout)")
        return value

    @field_validator("socket_timeout")
    @classmethod
    def _socket_timeout(cls, value: float, info: ValidationInfo) -> float:
        wait = float(info.data.get("wait_timeout") or 1.0)
        if not 0.5 <= value <= 60.0:
            raise ValueError("must be between 500ms and 60s")
        if value <= wait:
            raise ValueError(f"must be longer than wait_timeout ({wait:g}s)")
        return value

    @field_validator("connect_timeout")
    @classmethod
    def _connect_timeout(cls, value: float) -> float:
        if not 0.1 <= value <= 30.0:
            raise ValueError("must be between 100ms and 30s")
        return value

    @field_validator("retention_age")
    @classmethod
    def _retention_age(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @property
    def publish_maxlen(self) -> int:
        """The publish script's inline ``MAXLEN ~`` (only ``retention = "maxlen"`` trims there)."""
        return self.stream_maxlen if self.retention == "maxlen" else 0

    @field_validator("password_file")
    @classmethod
    def _one_password(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        if value is not None and url_password(str(info.data.get("url", ""))):
            raise ValueError("the url has a password already: keep it in one place")
        return value

    @model_validator(mode="after")
    def _cert_needs_key(self) -> RedisSettings:
        if self.tls_cert_file is not None and self.tls_key_file is None:
            raise ValueError("tls_cert_file needs tls_key_file")
        return self
