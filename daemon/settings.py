"""The one ``Settings`` object: TOML file + ``DRAINER_`` environment overrides (SPEC §4).

Built once in ``main()`` by :func:`load_settings` and passed down; nothing else reads
the environment. Every problem becomes a :class:`ConfigError` whose message is one line
naming the file and the key, and never the value (it may be a secret).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/notification-drainer/drainer.toml")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|KiB|MiB|GiB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 1000,
    "MB": 1000**2,
    "GB": 1000**3,
    "KiB": 1024,
    "MiB": 1024**2,
    "GiB": 1024**3,
    "TiB": 1024**4,
}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def parse_duration(value: object) -> float:
    """``"250ms"``, ``"5s"``, ``"10m"``, ``"1h"`` or a number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as '5s', '10m' or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    else:
        raise ValueError("expected a duration such as '250ms', '5s', '10m', '1h' or seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_size(value: object) -> int:
    """``"512MiB"``, ``"1GiB"`` or a number of bytes -> bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as '512MiB' or a number of bytes")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _SIZE.match(value)):
        size = int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])
    else:
        raise ValueError("expected a size such as '512MiB', '1GiB' or a number of bytes")
    if size <= 0:
        raise ValueError("a size must be positive")
    return size


def parse_timestamp(value: object) -> datetime:
    """An RFC 3339 timestamp; a naive one is taken as UTC."""
    if isinstance(value, datetime):
        stamp = value
    elif isinstance(value, str):
        try:
            stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("expected an RFC 3339 time such as 2026-11-01T00:00:00Z") from None
    else:
        raise ValueError("expected an RFC 3339 time such as 2026-11-01T00:00:00Z")
    return stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)


Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Timestamp = Annotated[datetime, BeforeValidator(parse_timestamp)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RedisSentinelSettings(_Section):
    """``[redis.sentinel]``: find the master through these Sentinels."""

    hosts: list[str] = Field(min_length=1)
    master: str = "mymaster"

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        from daemon.redisconn import parse_host

        for host in value:
            parse_host(host)
        return value


class RedisSettings(_Section):
    url: str = "redis://127.0.0.1:6379/0"
    dedupe_window: Duration = 86400.0
    stream_maxlen: int = Field(default=1_000_000, ge=0)
    tls_ca_file: Path | None = None
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_insecure_skip_verify: bool = False
    cluster: bool = False
    sentinel: RedisSentinelSettings | None = None
    leases: bool = False
    lease_ttl: Duration = 15.0
    retention: Literal["maxlen", "minid", "consumer_groups"] = "maxlen"
    retention_age: Duration = 7 * 86400.0

    # Validators run in field order and only on keys that were set, so each one below
    # checks its key against the keys declared above it and the error names that key.

    @model_validator(mode="before")
    @classmethod
    def _no_maxlen_unless_maxlen(cls, data: Any) -> Any:
        # With minid/consumer_groups retention, the publish script must not MAXLEN-trim.
        if isinstance(data, dict) and data.get("retention", "maxlen") != "maxlen":
            data = {"stream_maxlen": 0, **data}
        return data

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str) -> str:
        from daemon.redisconn import parse_url

        parse_url(value)
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
        if value != "maxlen" and info.data.get("stream_maxlen"):
            raise ValueError('stream_maxlen must be 0 or unset unless retention = "maxlen"')
        return value

    @field_validator("retention_age")
    @classmethod
    def _retention_age(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
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


class SpoolSettings(_Section):
    dir: Path = Path("/var/lib/notification-drainer")
    max_bytes: Size = 1024**3


class ServerSettings(_Section):
    listen: str = "127.0.0.1:9464"

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
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
        if self.mode in ("push", "both") and not self.push_token:
            raise ValueError("push_token is required when mode is push or both")
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
    on_behalf_of: str | None = None
    interval: Duration = 60.0
    overlap: Duration = 600.0
    start_at: Timestamp | None = None
    page_size: int = Field(default=100, ge=1, le=100)
    requests_per_minute: int = Field(default=12, ge=1)


class Settings(BaseSettings):
    """The whole configuration; see ``config/drainer.example.toml``."""

    model_config = SettingsConfigDict(
        env_prefix="DRAINER_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    redis: RedisSettings = RedisSettings()
    streams: StreamSettings = StreamSettings()
    spool: SpoolSettings = SpoolSettings()
    server: ServerSettings = ServerSettings()
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
        # Environment overrides the file (passed as init kwargs); no dotenv, no secrets dir.
        return (env_settings, init_settings)

    def docplanner_account(self, name: str) -> DocPlannerAccount | None:
        return next((a for a in self.docplanner if a.name == name), None)

    def myinvois_account(self, name: str) -> MyInvoisAccount | None:
        return next((a for a in self.myinvois if a.name == name), None)

    def secret_values(self) -> list[str]:
        """Every secret in the configuration, for the log scrubber."""
        values = [a.secret() for a in [*self.docplanner, *self.myinvois] if a.client_secret]
        values += [d.push_token.get_secret_value() for d in self.docplanner if d.push_token]
        password = urlsplit(self.redis.url).password
        if password:
            values.append(password)
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


def redact_url(url: str) -> str:
    """``redis://user:pw@host`` -> ``redis://user:***@host``."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)


def config_path(cli_path: str | None, environ: Mapping[str, str]) -> Path:
    """``--config``, else ``$DRAINER_CONFIG``, else the default path."""
    if cli_path:
        return Path(cli_path)
    if environ.get("DRAINER_CONFIG"):
        return Path(environ["DRAINER_CONFIG"])
    return DEFAULT_CONFIG_PATH


def load_settings(path: Path, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and resolve the configuration, or raise a one-line ConfigError."""
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    try:
        settings = Settings(**raw)
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_first_error(exc)}") from None
    return _resolve_secret_files(settings, path, environ)


def _first_error(exc: ValidationError) -> str:
    error = exc.errors(include_input=False, include_url=False)[0]
    key = ""
    for part in error["loc"]:
        key += f"[{part}]" if isinstance(part, int) else (f".{part}" if key else str(part))
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    extra = len(exc.errors()) - 1
    more = f" (and {extra} more problem{'s' if extra > 1 else ''})" if extra else ""
    return f"{key}: {message}{more}" if key else f"{message}{more}"


def _resolve_secret_files(settings: Settings, path: Path, environ: Mapping[str, str]) -> Settings:
    """Read ``client_secret_file`` (relative names live in ``$CREDENTIALS_DIRECTORY``)."""
    credentials = environ.get("CREDENTIALS_DIRECTORY")
    resolved: dict[str, list[Any]] = {"docplanner": [], "myinvois": []}
    kinds: dict[str, list[Any]] = {"docplanner": settings.docplanner, "myinvois": settings.myinvois}
    for kind, accounts in kinds.items():
        for index, original in enumerate(accounts):
            account = original
            secret_file = account.client_secret_file
            if secret_file is not None:
                if not secret_file.is_absolute() and credentials:
                    secret_file = Path(credentials) / secret_file
                try:
                    secret = secret_file.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    raise ConfigError(
                        f"{path}: {kind}[{index}].client_secret_file: cannot read "
                        f"{secret_file}: {exc.strerror}"
                    ) from None
                if not secret:
                    raise ConfigError(f"{path}: {kind}[{index}].client_secret_file: file is empty")
                account = account.model_copy(update={"client_secret": SecretStr(secret)})
            resolved[kind].append(account)
    return settings.model_copy(update=resolved)
