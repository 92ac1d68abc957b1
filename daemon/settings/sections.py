"""The small sections: ``[streams]``, ``[spool]``, ``[server]``, ``[runtime]``, ``[log]``.

:class:`Section` is every section's base: unknown keys refused, values frozen.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from daemon.settings.network import Networks
from daemon.settings.units import Duration, Size


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamSettings(Section):
    docplanner: str = "drainer:{docplanner}"
    myinvois: str = "drainer:{myinvois}"
    deadletter: str = "drainer:{deadletter}"


PULL_HEADROOM = 4 * 1024 * 1024
"""A DocPlanner puller pulls only while the spool has this much room: ``spool.max_bytes``
must be at least this when an account pulls (else it would never pull, silently)."""


class SpoolSettings(Section):
    dir: Path = Path("/var/lib/notification-drainer")
    max_bytes: Size = 1024**3

    def account_dir(self, source: str, account: str) -> Path:
        """One account's spool: ``<dir>/<source>-<account>`` (the daemon's and ``status``')."""
        return self.dir / f"{source}-{account}"


class ServerSettings(Section):
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


class RuntimeSettings(Section):
    """The fixed pools that run every worker's ticks (README "Runtime"): threads do not grow
    with the number of accounts."""

    workers: int = Field(default=16, ge=1, le=64)  # intake: pullers, pollers, release, leases
    publishers: int = Field(default=8, ge=1, le=64)  # spool -> Redis, a pool of their own


class LogSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["json", "console"] = "json"
