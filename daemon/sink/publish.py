"""The Redis sink: idempotent, atomic publishing of stream entries (SPEC §2, §3).

One Lua call per run of entries for the same stream: for each entry, ``SET seen-key NX PX
window`` and, only if it was not seen, ``XADD`` (with an approximate MAXLEN trim). The seen
key and the stream share a hash slot (see :func:`related_key`), so this works on Redis
Cluster; the script is atomic, so a crash can never leave a seen key without its entry.
Works on Redis 6.2+ (``XADD ... MAXLEN ~``, ``SET ... NX PX``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import redis
from redis.commands.core import Script

from daemon.envelope import StreamEntry
from daemon.errors import SinkError
from daemon.settings import RedisSettings
from daemon.sink.connect import RedisClient
from daemon.sink.connect import connect as build_client

PUBLISH_SCRIPT = """
local window = ARGV[1]
local maxlen = tonumber(ARGV[2])
local pos = 3
local flags = {}
for i = 2, #KEYS do
  local n = tonumber(ARGV[pos])
  if redis.call('SET', KEYS[i], '1', 'NX', 'PX', window) then
    local args = {'XADD', KEYS[1]}
    if maxlen > 0 then
      table.insert(args, 'MAXLEN'); table.insert(args, '~'); table.insert(args, maxlen)
    end
    table.insert(args, '*')
    for j = pos + 1, pos + n do table.insert(args, ARGV[j]) end
    redis.call(unpack(args))
    flags[#flags + 1] = 1
  else
    flags[#flags + 1] = 0
  end
  pos = pos + n + 1
end
return flags
"""

WATERMARK_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if (not current) or tonumber(current) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1])
end
return redis.call('GET', KEYS[1])
"""

# Redis errors that mean "try again later": connection trouble, timeouts, a busy or
# read-only replica after failover, out of memory.
TRANSIENT_REDIS_ERRORS = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.BusyLoadingError,
    redis.ReadOnlyError,
    redis.ResponseError,
    redis.exceptions.ClusterError,  # e.g. "TTL exhausted" while slots move
)


def related_key(stream: str, suffix: str) -> str:
    """A key in the same hash slot as ``stream``.

    ``drainer:{docplanner}`` -> ``drainer:{docplanner}:suffix`` (the tag is kept);
    ``events`` (no tag) -> ``{events}:suffix`` (hashes like ``events`` itself).
    """
    start = stream.find("{")
    if start != -1 and stream.find("}", start + 2) != -1:
        return f"{stream}:{suffix}"
    return f"{{{stream}}}:{suffix}"


@dataclass(frozen=True, slots=True)
class PublishResult:
    published: int
    duplicates: int
    published_by_stream: dict[str, int]
    duplicates_by_stream: dict[str, int]


def connect(target: RedisSettings | str, timeout: float = 5.0) -> RedisClient:
    """A client for the ``[redis]`` settings (or a bare url): one node, Sentinel, Cluster, TLS.

    See :mod:`daemon.sink.connect`; every client has explicit timeouts.
    """
    settings = RedisSettings(url=target) if isinstance(target, str) else target
    return build_client(settings, timeout)


class RedisSink:
    """Publishes entries exactly once per de-duplication window.

    ``dedupe_window`` is the default; ``windows`` maps a stream to its own window (the
    MyInvois stream keeps its seen-keys ``dedupe_window_myinvois``, 35 days by default).
    """

    def __init__(
        self,
        client: RedisClient,
        dedupe_window: float,
        stream_maxlen: int,
        windows: Mapping[str, float] | None = None,
    ) -> None:
        self.client = client
        self._window_ms = max(1, int(dedupe_window * 1000))
        self._windows_ms = {stream: max(1, int(w * 1000)) for stream, w in (windows or {}).items()}
        self._maxlen = stream_maxlen
        self._publish: Script = client.register_script(PUBLISH_SCRIPT)
        self._watermark: Script = client.register_script(WATERMARK_SCRIPT)

    def publish(self, entries: Sequence[StreamEntry]) -> PublishResult:
        """Publish in order; one atomic script call per run of same-stream entries."""
        published: dict[str, int] = {}
        duplicates: dict[str, int] = {}
        try:
            for stream, run in _runs(entries):
                keys = [stream, *(related_key(stream, f"seen:{e.event_id}") for e in run)]
                window = self._windows_ms.get(stream, self._window_ms)
                args: list[str | int] = [window, self._maxlen]
                for entry in run:
                    args.append(len(entry.fields) * 2)
                    for field, value in entry.fields.items():
                        args.extend((field, value))
                flags = self._publish(keys=keys, args=args)
                added = sum(int(flag) for flag in flags)
                published[stream] = published.get(stream, 0) + added
                duplicates[stream] = duplicates.get(stream, 0) + len(run) - added
        except TRANSIENT_REDIS_ERRORS as exc:
            raise SinkError(f"redis publish failed: {type(exc).__name__}: {exc}") from None
        return PublishResult(
            sum(published.values()), sum(duplicates.values()), published, duplicates
        )

    def dedupe_window(self, stream: str) -> float:
        """Seconds a published event_id of ``stream`` is remembered."""
        return self._windows_ms.get(stream, self._window_ms) / 1000

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except TRANSIENT_REDIS_ERRORS:
            return False

    def stream_lengths(self, streams: Iterable[str]) -> list[tuple[str, int]]:
        try:
            return [(stream, int(self.client.xlen(stream))) for stream in streams]
        except TRANSIENT_REDIS_ERRORS as exc:
            raise SinkError(f"redis read failed: {type(exc).__name__}: {exc}") from None

    # --- MyInvois watermarks: stored beside the stream, in its hash slot ------------------

    def get_watermark(self, stream: str, account: str) -> datetime | None:
        try:
            raw = self.client.get(related_key(stream, f"watermark:{account}"))
        except TRANSIENT_REDIS_ERRORS as exc:
            raise SinkError(f"redis read failed: {type(exc).__name__}: {exc}") from None
        if raw is None:
            return None
        return datetime.fromtimestamp(float(raw), tz=UTC)

    def advance_watermark(self, stream: str, account: str, moment: datetime) -> None:
        """Move the watermark forward only (never back), atomically."""
        key = related_key(stream, f"watermark:{account}")
        try:
            self._watermark(keys=[key], args=[f"{moment.timestamp():.6f}"])
        except TRANSIENT_REDIS_ERRORS as exc:
            raise SinkError(f"redis write failed: {type(exc).__name__}: {exc}") from None


def _runs(entries: Sequence[StreamEntry]) -> Iterable[tuple[str, list[StreamEntry]]]:
    """Consecutive entries grouped by stream, order kept."""
    run: list[StreamEntry] = []
    for entry in entries:
        if run and entry.stream != run[0].stream:
            yield run[0].stream, run
            run = []
        run.append(entry)
    if run:
        yield run[0].stream, run
