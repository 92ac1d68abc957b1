"""The accounts (``[[docplanner]]``, ``[[myinvois]]``) and the one ``Settings`` object (SPEC §4).

The sections live in :mod:`.sections` and :mod:`.redis`; the file and the ``DRAINER_``
environment are read by :mod:`.load`. Built once in ``main()`` and passed down; nothing
else reads the environment. Every problem becomes a :class:`ConfigError` whose message is one line
naming the file and the key, and never the value (it may be a secret).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from daemon.settings.clients import myinvois_clients_agree, one_account_per_docplanner_client
from daemon.settings.network import MIN_PUSH_TOKEN, HeaderName, Networks
from daemon.settings.redis import RedisSettings
from daemon.settings.redis_url import redact_url, url_password
from daemon.settings.sections import (
    PULL_HEADROOM,
    LogSettings,
    RuntimeSettings,
    ServerSettings,
    SpoolSettings,
    StreamSettings,
)
from daemon.settings.sections import Section as _Section
from daemon.settings.units import Duration, Timestamp

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


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
