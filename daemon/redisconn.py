"""Build the Redis client the configuration asks for: one node, Sentinel or Cluster, TLS.

``[redis] url`` decides the topology:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one node (``redis.Redis``);
- ``redis+sentinel://h:p,h:p/<master>/<db>`` (``rediss+sentinel://`` for TLS), or a plain
  ``redis://``/``rediss://`` url plus a ``[redis.sentinel]`` table (``hosts``, ``master``):
  the current master, found through Sentinel (``Sentinel(...).master_for``); the url's
  credentials, database and TLS apply to the master, its host is not used;
- ``redis+cluster://h:p,h:p`` (``rediss+cluster://``), or ``cluster = true``: Redis Cluster
  (``redis.cluster.RedisCluster``), the url's hosts are the startup nodes.

Every client has explicit connect and read timeouts and ``decode_responses=False``.
Keys the daemon writes together share a hash slot (``daemon.sink.related_key``), so Lua
scripts and the lease commands route to one node on a cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import redis
from redis.cluster import ClusterNode, RedisCluster
from redis.sentinel import Sentinel

if TYPE_CHECKING:
    from daemon.settings import RedisSettings

RedisClient = redis.Redis | RedisCluster

DEFAULT_TIMEOUT = 5.0
HEALTH_CHECK_INTERVAL = 30
SINGLE_SCHEMES = ("redis", "rediss", "unix")
SENTINEL_SCHEMES = ("redis+sentinel", "rediss+sentinel")
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


@dataclass(frozen=True, slots=True)
class Target:
    """What a url names, before any setting is applied."""

    kind: str  # "single" | "sentinel" | "cluster"
    tls: bool
    hosts: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    db: int = 0
    username: str | None = None
    password: str | None = None


def scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def parse_url(url: str) -> Target:
    """Parse a ``[redis] url``; a ValueError message is one line and never shows a secret."""
    kind = scheme(url)
    if kind in SINGLE_SCHEMES:
        return Target("single", tls=kind == "rediss")
    if kind not in SENTINEL_SCHEMES + CLUSTER_SCHEMES:
        raise ValueError(
            "must start with redis://, rediss://, unix://, redis+sentinel://, "
            "rediss+sentinel://, redis+cluster:// or rediss+cluster://"
        )
    # urlsplit cannot read "h1:p1,h2:p2" as a netloc port: split the host list ourselves.
    rest = url.partition("://")[2]
    netloc, _, path = rest.partition("/")
    path = path.partition("?")[0]
    credentials, _, hostlist = netloc.rpartition("@")
    username, password = _credentials(credentials)
    hosts = tuple(parse_host(item) for item in hostlist.split(",") if item.strip())
    if not hosts:
        raise ValueError("needs at least one host:port")
    parts = [part for part in path.split("/") if part]
    tls = kind.startswith("rediss")
    if kind in SENTINEL_SCHEMES:
        if not parts or len(parts) > 2:
            raise ValueError("a sentinel url is redis+sentinel://host:port,.../<master>/<db>")
        return Target("sentinel", tls, hosts, unquote(parts[0]), _db(parts[1:]), username, password)
    if _db(parts) != 0:
        raise ValueError("Redis Cluster has only database 0")
    return Target("cluster", tls, hosts, None, 0, username, password)


def parse_host(item: str) -> tuple[str, int]:
    host, sep, port = item.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError("hosts must be host:port")
    return host.strip("[]"), int(port)


def _credentials(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    user, sep, password = text.partition(":")
    if not sep:
        return None, unquote(user) or None  # "redis+cluster://secret@h:p" = password only
    return unquote(user) or None, unquote(password) or None


def _db(parts: list[str]) -> int:
    if not parts:
        return 0
    if not parts[0].isdigit():
        raise ValueError("the database must be a number")
    return int(parts[0])


def tls_kwargs(settings: RedisSettings) -> dict[str, Any]:
    """redis-py ``ssl_*`` connection arguments from the ``tls_*`` settings."""
    verify = not settings.tls_insecure_skip_verify
    kwargs: dict[str, Any] = {
        "ssl_cert_reqs": "required" if verify else "none",
        "ssl_check_hostname": verify,
    }
    if settings.tls_ca_file is not None:
        kwargs["ssl_ca_certs"] = str(settings.tls_ca_file)
    if settings.tls_cert_file is not None:
        kwargs["ssl_certfile"] = str(settings.tls_cert_file)
    if settings.tls_key_file is not None:
        kwargs["ssl_keyfile"] = str(settings.tls_key_file)
    return kwargs


def connect(settings: RedisSettings, timeout: float = DEFAULT_TIMEOUT) -> RedisClient:
    """The client for ``settings``; no I/O happens here except for Cluster discovery."""
    target = parse_url(settings.url)
    if settings.sentinel is not None:
        single = urlsplit(settings.url)
        target = Target(
            "sentinel",
            target.tls,
            tuple(parse_host(host) for host in settings.sentinel.hosts),
            settings.sentinel.master,
            _db([p for p in single.path.split("/") if p]),
            unquote(single.username) if single.username else None,
            unquote(single.password) if single.password else None,
        )
    elif settings.cluster and target.kind == "single":
        single = urlsplit(settings.url)
        target = Target(
            "cluster",
            target.tls,
            ((single.hostname or "127.0.0.1", single.port or 6379),),
            username=unquote(single.username) if single.username else None,
            password=unquote(single.password) if single.password else None,
        )
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "decode_responses": False,
    }
    tls = tls_kwargs(settings) if target.tls else {}
    if target.kind == "single":
        if target.tls:
            common.update(tls)
        return redis.Redis.from_url(
            settings.url, health_check_interval=HEALTH_CHECK_INTERVAL, **common
        )
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "sentinel":
        assert target.master is not None, "parse_url always names the master"
        sentinel_kwargs = {**common, **({"ssl": True, **tls} if target.tls else {})}
        sentinel_kwargs.pop("decode_responses")
        # redis-py leaves Sentinel, master_for and ClusterNode unannotated.
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(target.hosts),
            sentinel_kwargs=sentinel_kwargs,
            **common,
            **({"ssl": True, **tls} if target.tls else {}),
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call]
            target.master,
            db=target.db,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            **auth,
        )
        return master
    nodes = [ClusterNode(h, p) for h, p in target.hosts]  # type: ignore[no-untyped-call]
    return RedisCluster(
        startup_nodes=nodes,
        require_full_coverage=True,
        health_check_interval=HEALTH_CHECK_INTERVAL,
        **common,
        **auth,
        **({"ssl": True, **tls} if target.tls else {}),
    )


def describe(client: RedisClient) -> str:
    """``cluster``, ``sentinel`` or ``single``: for logs."""
    if isinstance(client, RedisCluster):
        return "cluster"
    pool = client.connection_pool
    return "sentinel" if type(pool).__name__ == "SentinelConnectionPool" else "single"
