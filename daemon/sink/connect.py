"""Build the Redis client the configuration asks for: one node, Sentinel or Cluster, TLS.

``[redis] url`` decides the topology:

- ``redis://``, ``rediss://`` (TLS), ``unix://``: one node (``redis.Redis``);
- ``redis+sentinel://h:p,h:p/<master>/<db>`` (``rediss+sentinel://`` for TLS), or a plain
  ``redis://``/``rediss://`` url plus a ``[redis.sentinel]`` table (``hosts``, ``master``):
  the current master, found through Sentinel (``Sentinel(...).master_for``); the url's
  credentials, database and TLS apply to the master, its host is not used;
- ``redis+cluster://h:p,h:p`` (``rediss+cluster://``), or ``cluster = true``: Redis Cluster
  (``redis.cluster.RedisCluster``), the url's hosts are the startup nodes.

Bounded I/O (SPEC §6, STYLE "Every socket has a deadline"): every client has the
``[redis]`` ``connect_timeout`` (2 s) and ``socket_timeout`` (5 s), and one explicit retry
policy instead of redis-py's default (3 retries, timeouts included): a dropped connection
(reset, refused, a failover) is retried ``retries`` times (1) with a short jittered backoff;
a timeout is not retried, because a Redis that hangs would only hang again. So a command
answers or fails within ``connect_timeout + socket_timeout`` (a connection error at most
``1 + retries`` times that); the caller's own loop is the retry after that. On a cluster the
same count bounds the cluster client's retries (it refreshes the slot map in between).
Sentinel queries keep redis-py's policy for them: no retry, the next sentinel is asked.

Building a client never fails because Redis is away, whatever the topology: one node and
Sentinel connect at the first command; a Cluster client asks for the slot map at once and,
when no node answers, is built at its first command instead (:class:`DeferredCluster`). So
the daemon starts, serves ``/healthz`` and pulls into the spool while Redis is unreachable.

Every client has ``decode_responses=False``.
Keys the daemon writes together share a hash slot (``daemon.sink.related_key``), so Lua
scripts and the lease commands route to one node on a cluster.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import hiredis
import redis
from redis._parsers import Encoder
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import PythonRespSerializer
from redis.retry import Retry
from redis.sentinel import Sentinel

from daemon.settings.redis_url import (
    Target,
    parse_host,
    parse_url,
)
from daemon.settings.redis_url import db_number as _db
from daemon.sink.deferred import DeferredCluster

if TYPE_CHECKING:
    from daemon.settings import RedisSettings

RedisClient = redis.Redis | RedisCluster

HEALTH_CHECK_INTERVAL = 30
RETRY_BACKOFF_BASE = 0.05  # seconds; doubles per attempt, with full jitter
RETRY_BACKOFF_CAP = 0.5


def retry_policy(retries: int) -> Retry:
    """Retry a dropped connection ``retries`` times; never a timeout (see the module doc)."""
    backoff = ExponentialWithJitterBackoff(base=RETRY_BACKOFF_BASE, cap=RETRY_BACKOFF_CAP)
    return Retry(backoff, retries, supported_errors=(redis.ConnectionError,))


class HiredisPacker:
    """redis-py's command packer without its per-argument Python pass.

    redis-py runs every argument through ``Encoder.encode`` and two generator expressions
    before it hands the tuple to ``hiredis.pack_command``, which encodes str (UTF-8, strict),
    bytes, int and float (``repr``) itself, byte for byte the same. With 20 arguments per
    stream entry that pass was the largest item of the publish profile (README, Benchmarks).
    Anything hiredis refuses (bytearray, bool, None, ...) and multi-word command names
    (``"CLIENT SETNAME"``) go through redis-py's own packer, so results and errors are
    unchanged. Passed as ``command_packer`` to single-node and Sentinel clients; redis-py's
    Cluster client does not accept one and keeps its default.
    """

    def __init__(self) -> None:
        encoder: Any = Encoder  # redis-py leaves these unannotated
        serializer: Any = PythonRespSerializer
        self._fallback: Any = serializer(6000, encoder("utf-8", "strict", False).encode)

    def pack(self, *args: Any) -> list[bytes]:
        first = args[0]
        if (" " if isinstance(first, str) else b" ") in first:
            return self._slow(args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError:
            return self._slow(args)

    def _slow(self, args: tuple[Any, ...]) -> list[bytes]:
        packed: list[bytes] = self._fallback.pack(*args)
        return packed


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


def connect(settings: RedisSettings, timeout: float | None = None) -> RedisClient:
    """The client for ``settings``; never fails because Redis is away (see the module doc).

    ``timeout`` overrides both ``socket_timeout`` and ``connect_timeout`` (short-lived
    commands such as ``drainer status``).
    """
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
    if settings.password is not None:  # [redis] password_file, read at load time
        target = replace(target, password=settings.password.get_secret_value())
    common: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout if timeout is None else timeout,
        "socket_connect_timeout": settings.connect_timeout if timeout is None else timeout,
        "decode_responses": False,
    }
    retry = retry_policy(settings.retries)
    packer: dict[str, Any] = {"command_packer": HiredisPacker()}
    tls = tls_kwargs(settings) if target.tls else {}
    if target.kind == "single":
        if target.tls:
            common.update(tls)
        if target.password is not None:
            common["password"] = target.password  # a password in the url would win
        return redis.Redis.from_url(
            settings.url,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=retry,
            **common,
            **packer,
        )
    auth: dict[str, Any] = {"username": target.username, "password": target.password}
    if target.kind == "sentinel":
        assert target.master is not None, "parse_url always names the master"
        sentinel_kwargs = {**common, **({"ssl": True, **tls} if target.tls else {})}
        sentinel_kwargs.pop("decode_responses")
        # redis-py leaves Sentinel, master_for and ClusterNode unannotated.
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]
            list(target.hosts),
            sentinel_kwargs=sentinel_kwargs,
            **common,
            **({"ssl": True, **tls} if target.tls else {}),
        )
        master: redis.Redis = sentinel.master_for(  # type: ignore[no-untyped-call,unused-ignore]
            target.master,
            db=target.db,
            health_check_interval=HEALTH_CHECK_INTERVAL,
            retry=retry,
            **auth,
            **packer,
        )
        return master
    nodes = [ClusterNode(h, p) for h, p in target.hosts]  # type: ignore[no-untyped-call,unused-ignore]
    cluster_kwargs: dict[str, Any] = {
        "startup_nodes": nodes,
        "require_full_coverage": True,
        "health_check_interval": HEALTH_CHECK_INTERVAL,
        # The cluster client retries itself (ConnectionError, TimeoutError, CLUSTERDOWN,
        # uncovered slots), refreshing the slot map in between: the same count bounds it.
        "retry": Retry(
            ExponentialWithJitterBackoff(base=RETRY_BACKOFF_BASE, cap=RETRY_BACKOFF_CAP),
            settings.retries,
        ),
        **common,
        **auth,
        **({"ssl": True, **tls} if target.tls else {}),
    }
    return DeferredCluster.build(cluster_kwargs)


def describe(client: RedisClient) -> str:
    """``cluster``, ``sentinel`` or ``single``: for logs."""
    if not isinstance(client, redis.Redis):  # RedisCluster, built or deferred
        return "cluster"
    pool = client.connection_pool
    return "sentinel" if type(pool).__name__ == "SentinelConnectionPool" else "single"
