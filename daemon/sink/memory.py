"""Redis memory policy at start-up: de-duplication keys must never be evicted.

Each published event leaves one ``seen`` key with a TTL (``SET NX PX``) beside the stream.
A ``maxmemory-policy`` other than ``noeviction`` (``allkeys-*`` evicts any key,
``volatile-*`` the keys with a TTL, which all the ``seen`` keys have) lets Redis drop them
under memory pressure, and the duplicates then come through silently.
"""

from __future__ import annotations

from typing import Any

from daemon.sink.connect import RedisClient
from daemon.sink.failures import REDIS_ERRORS

SAFE_POLICY = "noeviction"


def evicting_policy(client: RedisClient) -> str | None:
    """The ``maxmemory-policy`` when it can evict keys (with a ``maxmemory`` set), else None.

    Read from ``INFO memory`` (``CONFIG`` is often disabled on managed Redis); on a
    cluster every node is checked. None also when Redis does not answer: the daemon
    starts and spools, and this check runs again at the next start.
    """
    try:
        info: Any = client.info("memory")
    except REDIS_ERRORS:  # Redis away (any topology): checked again at the next start
        return None
    nodes = info.values() if info and all(isinstance(v, dict) for v in info.values()) else [info]
    for node in nodes:
        policy = str(node.get("maxmemory_policy", SAFE_POLICY))
        if policy != SAFE_POLICY and int(node.get("maxmemory", 0) or 0) > 0:
            return policy
    return None
