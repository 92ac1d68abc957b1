"""The daemon's exceptions, one tree::

    DrainerError
    ├── ConfigError            bad or missing configuration -> exit code 2
    ├── UpstreamError          an upstream API did not give us what we asked for
    │   ├── TransientError     5xx, WAF 405, connection reset, timeout, truncated body: retry later
    │   ├── RateLimitedError   429: no request before ``retry_at``
    │   ├── AuthError          token endpoint refused the credentials
    │   ├── ForbiddenError     403 on a pull or a page: back off (capped), retry, resume
    │   ├── NotFoundError      a 404 that is not DocPlanner's documented empty queue (wrong
    │   │                      base_url, moved route): failing, named in /readyz, retried
    │   └── BadRequestError    400 on a page: our request is wrong; visible failing state
    │       └── PageSizeRefusedError  the 400 names ``pageSize``: ask for smaller pages
    ├── SpoolError             the local write-ahead spool cannot be written
    │   ├── SpoolFullError     ``spool.max_bytes`` reached: pause intake
    │   └── SpoolInUseError    another daemon holds ``spool.dir``'s lock -> exit code 1
    ├── SinkError              Redis did not accept a publish (connection, timeout, OOM,
    │   │                      READONLY/LOADING/MOVED/CLUSTERDOWN while a failover runs)
    │   └── DurabilityError    written, but fewer replicas (or AOF fsyncs) acknowledged
    │                          than ``redis.durability`` asks for: the record stays spooled
    ├── RedisCommandError      Redis refused a command for good (WRONGTYPE on our key, a
    │                          script error, NOPERM): an operator must act; the record stays
    │                          spooled, the publisher logs it with a traceback and retries slowly
    ├── ListenError            an HTTP listen address cannot be bound -> exit code 1
    └── InvariantError         a broken internal invariant: exit 1 so systemd restarts us

Expected transient errors (TransientError, RateLimitedError, SpoolFullError, SinkError)
are caught narrowly by the worker loops, counted and retried with backoff.
RedisCommandError does not end the run: exiting would stop DocPlanner pulling too, and
an unpulled queue expires upstream after 72 h.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2


class DrainerError(Exception):
    """Root of every error the daemon raises on purpose."""


class ConfigError(DrainerError):
    """Configuration is invalid; the message is one line naming the file and the key."""


class UpstreamError(DrainerError):
    """An upstream API call failed."""


class TransientError(UpstreamError):
    """A failure worth retrying after a backoff."""


class RateLimitedError(UpstreamError):
    """The upstream answered 429; ``retry_at`` is the monotonic time of the next allowed call."""

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class AuthError(UpstreamError):
    """The token endpoint refused our credentials."""


class ForbiddenError(UpstreamError):
    """403: not allowed now. Pulls, pages and release back off (capped) and retry."""


class NotFoundError(UpstreamError):
    """A 404 that does not mean "empty queue": a wrong ``base_url`` or a moved route."""


class BadRequestError(UpstreamError):
    """400 on a request we built: repeating it unchanged cannot help (MyInvois BadRequest)."""


class PageSizeRefusedError(BadRequestError):
    """A 400 that names ``pageSize``: the administrators' maximum is below what we asked."""


class SpoolError(DrainerError):
    """The spool could not be written or read."""


class SpoolFullError(SpoolError):
    """The spool reached ``spool.max_bytes``; intake pauses until records are published."""


class SpoolInUseError(SpoolError):
    """Another process holds the spool directory's lock: one daemon per spool directory."""


class SinkError(DrainerError):
    """Redis did not accept a publish."""


class DurabilityError(SinkError):
    """The entries were written but not acknowledged by enough replicas (or AOF) in time."""


class RedisCommandError(DrainerError):
    """Redis refused a command in a way retrying will not fix; an operator has to act."""


class ListenError(DrainerError):
    """``server.listen`` or ``server.push_listen`` cannot be bound (in use, not local)."""


class InvariantError(DrainerError):
    """An internal invariant is broken; the process exits non-zero."""
