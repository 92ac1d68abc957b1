"""The one ``Settings`` object: TOML file + ``DRAINER_`` environment overrides (SPEC §4).

Built once in ``main()`` by :func:`load_settings` and passed down; nothing else reads
the environment. Every problem becomes a :class:`ConfigError` whose message is one line
naming the file and the key, and never the value (it may be a secret).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.settings.clients import myinvois_clients_agree, one_account_per_docplanner_client
from daemon.settings.network import MIN_PUSH_TOKEN, HeaderName, Networks
from daemon.settings.redis_url import parse_host, parse_url, redact_url, url_password
from daemon.settings.units import parse_duration, parse_size, parse_timestamp

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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


class StreamSettings(_Section):
    docplanner: str = "drainer:{docplanner}"
    myinvois: str = "drainer:{myinvois}"
    deadletter: str = "drainer:{deadletter}"


PULL_HEADROOM = 4 * 1024 * 1024
"""A DocPlanner puller pulls only while the spool has this much room: ``spool.max_bytes``
must be at least this when an account pulls (else it would never pull, silently)."""


class SpoolSettings(_Section):
    dir: Path = Path("/var/lib/notification-drainer")
    max_bytes: Size = 1024**3

    def account_dir(self, source: str, account: str) -> Path:
        """One account's spool: ``<dir>/<source>-<account>`` (the daemon's and ``status``')."""
        return self.dir / f"{source}-{account}"


class ServerSettings(_Section):
    listen: str = "127.0.0.1:9464"
    push_listen: str | None = None  # optional second listener serving /push alone
    threads: int = Field(default=8, ge=1, le=64)  # fixed worker pool, per listener
    connection_limit: int = Field(default=1000, ge=16, le=60000)  # per listener
    request_deadline: Duration = Field(default=10.0, gt=0, le=300)  # first byte -> whole body
    idle_timeout: Duration = Field(default=15.0, ge=1, le=3600)  # keep-alive / silent clients
    max_connections_per_source: int = Field(default=64, ge=1, le=60000)  # per listener
    auth_failures_per_minute: int = Field(default=30, ge=1, le=100000)  # per source: then 429
    trusted_proxies: Networks = []  # X-Forwarded-For decides the push source only from these

    @field_validator("listen", "push_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return None
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:9464")
        return value

    @property
    def host(self) -> str:
        return self.listen.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])

    @property
    def push_address(self) -> tuple[str, int] | None:
        """``(host, port)`` of ``push_listen``, or None when there is no push-only listener."""
        if self.push_listen is None:
            return None
        host, _, port = self.push_listen.rpartition(":")
        return host.strip("[]"), int(port)


class RuntimeSettings(_Section):
    """The fixed pools that run every worker's ticks (README "Runtime"): threads do not grow
    with the number of accounts."""

    workers: int = Field(default=16, ge=1, le=64)  # intake: pullers, pollers, release, leases
    publishers: int = Field(default=8, ge=1, le=64)  # spool -> Redis, a pool of their own


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"


class _Account(_Section):
    name: str
    base_url: str
    client_id: str
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits, '-' or '_' (max 63)")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _one_secret(self) -> _Account:
        if (self.client_secret is None) == (self.client_secret_file is None):
            raise ValueError("set exactly one of client_secret or client_secret_file")
        return self

    def secret(self) -> str:
        """The client secret; file secrets were read into ``client_secret`` at load time."""
        assert self.client_secret is not None, "secrets are resolved by load_settings"
        return self.client_secret.get_secret_value()


class DocPlannerAccount(_Account):
    mode: Literal["pull", "push", "both"] = "pull"
    batch_size: int = Field(default=100, ge=1, le=100)
    requests_per_hour: int = Field(default=8000, ge=1)
    idle_interval: Duration = 5.0
    push_token: SecretStr | None = None
    push_token_file: Path | None = None
    push_header: HeaderName = "X-Drainer-Token"  # agreed with DocPlanner
    push_allow_from: Networks | None = None  # CIDRs allowed to push; unset (and no published) = any
    push_allow_published: bool = False  # also https://www.{domain}/public/docs/public-ips.json
    release_interval: Duration = 3600.0

    @field_validator("batch_size", mode="before")
    @classmethod
    def _clamp_batch(cls, value: object) -> object:
        # The API takes 1..100; clamp rather than refuse, as the issue asks.
        if isinstance(value, int) and not isinstance(value, bool):
            return min(max(value, 1), 100)
        return value

    @model_validator(mode="after")
    def _push_needs_token(self) -> DocPlannerAccount:
        if self.push_token is not None and self.push_token_file is not None:
            raise ValueError("set only one of push_token or push_token_file")
        if self.mode in ("push", "both") and not (self.push_token or self.push_token_file):
            raise ValueError("push_token or push_token_file is required when mode is push or both")
        if self.push_token is not None and len(self.push_token.get_secret_value()) < MIN_PUSH_TOKEN:
            raise ValueError(f"push_token: shorter than {MIN_PUSH_TOKEN} characters, easy to guess")
        if self.release_interval < 3600:
            raise ValueError("release_interval: DocPlanner allows one release per hour (>= 1h)")
        return self

    @property
    def pulls(self) -> bool:
        return self.mode in ("pull", "both")

    @property
    def pushes(self) -> bool:
        return self.mode in ("push", "both")


class MyInvoisAccount(_Account):
    identity_url: str | None = None  # the identity service (token endpoint); default base_url
    on_behalf_of: str | None = None  # intermediaries: the taxpayer's TIN, sent at login
    interval: Duration = 60.0
    overlap: Duration = 600.0
    start_at: Timestamp | None = None
    page_size: int = Field(default=100, ge=1, le=100)
    # Per Client ID: every account with this client_id (and identity host) shares them.
    requests_per_minute: int = Field(default=12, ge=1)
    logins_per_minute: int = Field(default=12, ge=1)

    @field_validator("identity_url")
    @classmethod
    def _identity_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @field_validator("on_behalf_of")
    @classmethod
    def _tin(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9:]{1,40}", value):
            raise ValueError("must be a TIN such as C1234567890 (or TIN:ROB)")
        return value

    @property
    def token_base(self) -> str:
        """Where ``/connect/token`` lives: ``identity_url``, else ``base_url`` (SPEC §1)."""
        return self.identity_url or self.base_url


class Settings(BaseSettings):
    """The whole configuration; see ``config/drainer.example.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="DRAINER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    redis: RedisSettings = RedisSettings()
    streams: StreamSettings = StreamSettings()
    spool: SpoolSettings = SpoolSettings()
    server: ServerSettings = ServerSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    log: LogSettings = LogSettings()
    docplanner: list[DocPlannerAccount] = []
    myinvois: list[MyInvoisAccount] = []

    @model_validator(mode="after")
    def _unique_names(self) -> Settings:
        for kind, accounts in (("docplanner", self.docplanner), ("myinvois", self.myinvois)):
            names = [account.name for account in accounts]
            for index, name in enumerate(names):
                if name in names[:index]:
                    raise ValueError(f"{kind}[{index}].name: duplicate account name {name!r}")
        one_account_per_docplanner_client(self.docplanner)
        myinvois_clients_agree(self.myinvois)
        return self

    @model_validator(mode="after")
    def _spool_fits_a_pull(self) -> Settings:
        pulling = [a.name for a in self.docplanner if a.mode in ("pull", "both")]
        if pulling and self.spool.max_bytes < PULL_HEADROOM:
            raise ValueError(
                f"spool.max_bytes: {self.spool.max_bytes} bytes is too small for one DocPlanner"
                f" pull (account {pulling[0]!r}): at least {PULL_HEADROOM} bytes (4MiB)"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only the init kwargs: load_settings applies the DRAINER_ environment over the file
        # itself (daemon/settings/env.py), so account entries can be reached and a bad value is
        # blamed on its variable. No dotenv, no secrets dir, no implicit os.environ.
        return (init_settings,)

    def docplanner_account(self, name: str) -> DocPlannerAccount | None:
        return next((a for a in self.docplanner if a.name == name), None)

    def myinvois_account(self, name: str) -> MyInvoisAccount | None:
        return next((a for a in self.myinvois if a.name == name), None)

    def secret_values(self) -> list[str]:
        """Every secret in the configuration, for the log scrubber."""
        values = [a.secret() for a in [*self.docplanner, *self.myinvois] if a.client_secret]
        values += [d.push_token.get_secret_value() for d in self.docplanner if d.push_token]
        password = url_password(self.redis.url)
        if password:
            values.append(password)
        if self.redis.password is not None:
            values.append(self.redis.password.get_secret_value())
        return values

    def redacted(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret replaced by ``***``."""
        data = self.model_dump(mode="json")
        for kind in ("docplanner", "myinvois"):
            for account in data[kind]:
                for key in ("client_secret", "push_token"):
                    if account.get(key) is not None:
                        account[key] = "***"
        data["redis"]["url"] = redact_url(data["redis"]["url"])
        return data
