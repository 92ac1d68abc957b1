"""Redis, the only place the daemon writes to.

- :mod:`.connect`: the client the ``[redis]`` settings ask for (one node, Sentinel, Cluster),
  with explicit timeouts and retry policy; :mod:`.deferred`: a Cluster discovered lazily;
- :mod:`.publish`: atomic de-duplicated ``XADD`` and the MyInvois watermarks;
- :mod:`.keys`: the keys kept beside a stream (watermarks, leases), in its hash slot;
- :mod:`.durability`: the ``WAIT``/``WAITAOF`` a publish needs before it is released;
- :mod:`.failures`: the one classification of Redis errors (retried, or an operator acts);
- :mod:`.health`: the background probe behind ``/readyz`` and the Redis-derived metrics;
- :mod:`.scripts`: the Lua publish and watermark scripts;
- :mod:`.lease`: the per-account lease protocol for two daemons on one config (the
  decorator that ticks a worker only while it is held is ``daemon.runtime.leased``);
- :mod:`.retention`: MINID / consumer-group trimming.
"""

from daemon.sink.keys import related_key, watermark_key
from daemon.sink.publish import (
    TRANSIENT_REDIS_ERRORS,
    PublishResult,
    RedisSink,
    WatermarkUpdate,
    connect,
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
