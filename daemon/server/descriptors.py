"""Enough file descriptors for the configured connection limits, checked at start.

Each listener may hold ``server.connection_limit`` client sockets; the daemon needs more
for itself (:data:`RESERVE`: listening sockets, waitress's wake-up pipes, Redis and
upstream connections, spool files, logs). :func:`ensure_descriptors` raises the soft
``RLIMIT_NOFILE`` up to the hard one when that is enough; otherwise the daemon refuses to
start: a :class:`ConfigError` (exit 2, one line) naming ``server.connection_limit`` and
both figures. Refusing beats running with a limit the kernel would break under load: past
it, ``accept()`` fails and the I/O thread of every listener stops serving.
"""

from __future__ import annotations

import resource

from daemon.errors import ConfigError

RESERVE = 128  # descriptors for the daemon itself
PER_ACCOUNT = 4  # an upstream connection, a spool file and its directory, a Redis connection


def descriptors_needed(connection_limit: int, listeners: int, accounts: int) -> int:
    return connection_limit * listeners + RESERVE + PER_ACCOUNT * accounts


def ensure_descriptors(connection_limit: int, listeners: int, accounts: int) -> int:
    """Make the soft RLIMIT_NOFILE cover the need; return it, or raise ConfigError."""
    need = descriptors_needed(connection_limit, listeners, accounts)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return need
    if hard == resource.RLIM_INFINITY or hard >= need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
        return need
    most = max((hard - RESERVE - PER_ACCOUNT * accounts) // listeners, 0)
    raise ConfigError(
        f"server.connection_limit: {connection_limit} per listener x {listeners} needs {need} "
        f"file descriptors, the limit is {hard} (LimitNOFILE / ulimit -n): raise it, or set "
        f"connection_limit to at most {most}"
    )
