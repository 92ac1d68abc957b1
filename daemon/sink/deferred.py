"""A Redis Cluster client whose node discovery waits until a node answers.

redis-py's ``RedisCluster`` asks a startup node for the slot map (``CLUSTER SLOTS``)
while it is built, and raises when none answers. The daemon must start, serve
``/healthz`` and pull into the spool while Redis is away (SPEC §2 "Redis down"), so
:meth:`DeferredCluster.build` returns the real client when the cluster answers, and
otherwise this stand-in, which builds the real client at its first command: until then
every command raises the cluster client's own error (``RedisClusterException``, a
transient error for :mod:`daemon.sink.failures`) within the configured timeouts.
"""

from __future__ import annotations

import threading
from typing import Any, cast

import structlog
from redis._parsers import Encoder
from redis.cluster import RedisCluster
from redis.commands.core import Script

from daemon.sink.failures import REDIS_ERRORS, is_transient

log = structlog.get_logger("daemon.sink")


class DeferredCluster:
    """Builds a ``RedisCluster`` from ``kwargs`` at its first use, then delegates to it."""

    def __init__(self, kwargs: dict[str, Any]) -> None:
        self._kwargs = kwargs
        self._client: RedisCluster | None = None
        self._lock = threading.Lock()

    @classmethod
    def build(cls, kwargs: dict[str, Any]) -> RedisCluster:
        """The real client if the cluster answers now, else a stand-in that retries later."""
        try:
            return RedisCluster(**kwargs)
        except REDIS_ERRORS as exc:
            if not is_transient(exc):
                raise
        # Not logged here: whoever uses the client (the probe, a publish, `drainer status`)
        # gets the same error from its first command and says it once.
        return cast(RedisCluster, cls(kwargs))

    def resolve(self) -> RedisCluster:
        """The real client, built now if it was not (raises while no node answers)."""
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = RedisCluster(**self._kwargs)
                log.info("redis.cluster_discovered")
            return self._client

    # Without I/O, so the sink and the leases can be built while the cluster is away.
    def register_script(self, script: str | bytes) -> Script:
        return Script(cast(RedisCluster, self), script)

    def get_encoder(self) -> Encoder:
        encoder: Any = Encoder  # redis-py leaves it unannotated
        return cast(
            Encoder,
            encoder(
                self._kwargs.get("encoding", "utf-8"),
                self._kwargs.get("encoding_errors", "strict"),
                self._kwargs.get("decode_responses", False),
            ),
        )

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in ("_kwargs", "_client", "_lock"):
            raise AttributeError(name)
        return getattr(self.resolve(), name)


def as_cluster(client: object) -> RedisCluster | None:
    """``client`` as a Cluster client (built or deferred), or None for one node/Sentinel."""
    if isinstance(client, RedisCluster | DeferredCluster):
        return cast(RedisCluster, client)
    return None
