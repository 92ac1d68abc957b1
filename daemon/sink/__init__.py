"""Redis, the only place the daemon writes to.

- :mod:`.connect`: the client the ``[redis]`` settings ask for (one node, Sentinel, Cluster),
  with explicit timeouts and retry policy; :mod:`.deferred`: a Cluster discovered lazily;
- :mod:`.publish`: atomic de-duplicated ``XADD`` and the MyInvois watermarks;
- :mod:`.durability`: the ``WAIT``/``WAITAOF`` a publish needs before it is released;
- :mod:`.failures`: the one classification of Redis errors (retried, or an operator acts);
- :mod:`.health`: the background probe behind ``/readyz`` and the Redis-derived metrics;
- :mod:`.scripts`: the Lua publish and watermark scripts;
- :mod:`.lease`: per-account leases for two daemons on one config;
- :mod:`.retention`: MINID / consumer-group trimming.
"""

from daemon.sink.publish import (
    TRANSIENT_REDIS_ERRORS,
    PublishResult,
    RedisSink,
    WatermarkUpdate,
    connect,
    related_key,
    watermark_key,
)

__all__ = [
    "TRANSIENT_REDIS_ERRORS",
    "PublishResult",
    "RedisSink",
    "WatermarkUpdate",
    "connect",
    "related_key",
    "watermark_key",
]
