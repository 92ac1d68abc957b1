"""A consumer-group reader of the drainer streams that does the safe thing by default.

One :meth:`Consumer.tick` is one cycle: claim what dead consumers left pending
(``XAUTOCLAIM``, entries idle longer than ``claim_idle``), then read (first this consumer's
own pending entries, from an earlier life under the same name, then new ones with a
blocking ``XREADGROUP``), then hand each entry to the handler and ``XACK`` it once the
handler has returned. :meth:`Consumer.run` drives ticks until :meth:`Consumer.stop` or
SIGTERM/SIGINT (the handler only sets a flag; the current entry is finished and acked).

An entry is delivered again until it is acknowledged, so a handler that raises leaves it
pending and it comes back after ``claim_idle``. Redis counts deliveries (``XPENDING``): an
entry delivered ``max_deliveries`` times without success, or one that is not a valid
entry, is copied to the consumer-side dead-letter stream (its fields verbatim plus
``failed_*`` fields saying why) and acknowledged, in one MULTI/EXEC. Nothing is dropped.

The library acknowledges an entry only after its handler returned; a consumer can still
die between the two, so handlers must be idempotent on ``event_id`` (README: "Consuming the
streams").
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import redis

from drainer_consumer.models import DeadLetter, Event, parse_entry
from drainer_consumer.redis_errors import no_retry, transient

log = logging.getLogger("drainer_consumer")

FAILED_STREAM = "{stream}:failed:{group}"  # same hash tag as the stream: one Cluster slot
Fields = dict[bytes, bytes]


@dataclass
class Stats:
    """What this consumer did; ``ack_misses`` counts acks another consumer had made first."""

    handled: int = 0
    acked: int = 0
    failed: int = 0
    claimed: int = 0
    moved: int = 0
    ack_misses: int = 0


class Consumer:
    """Reads ``streams`` as ``name`` in consumer ``group``; see the module docstring.

    ``handler`` gets each :class:`Event`; ``on_deadletter`` each :class:`DeadLetter` (the
    daemon's dead-letter stream; without it such entries are moved aside). ``claim_idle``
    must exceed the longest time one handler call may take (else a live consumer's entry
    is claimed and handled twice; ``stats.ack_misses`` shows it).
    """

    def __init__(
        self,
        redis_url: str,
        streams: str | Sequence[str],
        group: str,
        name: str,
        handler: Callable[[Event], object],
        *,
        on_deadletter: Callable[[DeadLetter], object] | None = None,
        claim_idle: float = 60.0,
        max_deliveries: int = 5,
        count: int = 10,
        block: float = 2.0,
        failed_stream: str = FAILED_STREAM,
        start_id: str = "0",
        socket_timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        if claim_idle <= 0 or max_deliveries < 1 or count < 1 or block <= 0:
            raise ValueError("claim_idle, block > 0 and max_deliveries, count >= 1 required")
        self.streams = [streams] if isinstance(streams, str) else list(streams)
        self.group, self.name = group, name
        self.handler, self.on_deadletter = handler, on_deadletter
        self.claim_idle, self.max_deliveries = claim_idle, max_deliveries
        self.count, self.block, self.start_id = count, block, start_id
        self.failed_stream = failed_stream
        self.stats = Stats()
        self.stopping = threading.Event()
        self.client = redis.Redis.from_url(
            redis_url,
            socket_timeout=max(socket_timeout, block + 5.0),  # a blocking read outlasts BLOCK
            socket_connect_timeout=connect_timeout,
            retry=no_retry(),  # a lost reply is never re-sent: the run loop is the retry
            health_check_interval=30,
        )
        self._ready = False
        self._own = {stream: "0" for stream in self.streams}  # cursors over our own PEL
        self._claim_from = dict.fromkeys(self.streams, "0-0")
        self._next_claim = 0.0

    # -- driving -------------------------------------------------------------------------

    def run(self) -> Stats:
        """Tick until stopped; transient Redis errors are logged once and retried with backoff
        (:mod:`drainer_consumer.redis_errors`); any other Redis error is raised."""
        delay = 0.0
        with self._signals():
            while not self.stopping.is_set():
                try:
                    self.tick()
                except redis.RedisError as exc:
                    if isinstance(exc, redis.ResponseError) and "NOGROUP" in str(exc):
                        log.warning("consumer.group_missing %s; creating it again", exc)
                        self._ready = False
                    elif not transient(exc):
                        raise
                    else:
                        if not delay:  # logged once per outage, not per retry
                            log.warning(
                                "consumer.redis_unavailable %s: %s; retrying with backoff",
                                type(exc).__name__,
                                exc,
                            )
                        # what a lost reply delivered to us, or a failed move left: ours first
                        self._own = dict.fromkeys(self.streams, "0")
                        delay = min(5.0, max(0.25, delay * 2))
                        self.stopping.wait(delay * random.uniform(0.8, 1.2))
                        continue
                if delay:
                    log.warning("consumer.redis_back")
                delay = 0.0
        return self.stats

    def stop(self) -> None:
        """Finish the current entry, then return from :meth:`run`."""
        self.stopping.set()

    def close(self) -> None:
        self.client.close()

    def tick(self) -> int:
        """One cycle: claim, read, handle; returns how many entries it looked at."""
        if not self._ready:
            self._ensure_groups()
        seen = 0
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_idle / 2
            for stream in self.streams:
                for _ in range(self.count):  # one at a time (see _claim)
                    claimed = self._claim(stream)
                    if self.stopping.is_set() or not (claimed or self._claim_from[stream] != "0-0"):
                        break  # stopping, or the whole PEL scanned
                    seen += self._process(stream, claimed, fresh=False)
                else:
                    self._next_claim = 0.0  # more may be waiting: claim again next tick
        if self.stopping.is_set():
            return seen
        backlog = [s for s in self.streams if self._own[s] != ">"]
        if backlog:  # our own pending entries from an earlier life, oldest first
            reply: Any = self.client.xreadgroup(  # one at a time (see _claim)
                self.group, self.name, {s: self._own[s] for s in backlog}, count=1
            )
            found = {_text(stream): entries for stream, entries in reply or []}
            for stream in backlog:
                entries = found.get(stream, [])
                self._own[stream] = _text(entries[-1][0]) if entries else ">"
                seen += self._process(stream, entries, fresh=False)
            return seen
        reply = self.client.xreadgroup(  # (Any: redis-py's stubs do not know reply shapes)
            self.group,
            self.name,
            dict.fromkeys(self.streams, ">"),
            count=self.count,
            block=int(self.block * 1000),
        )
        for stream, entries in reply or []:
            seen += self._process(_text(stream), entries, fresh=True)
        return seen

    # -- steps ---------------------------------------------------------------------------

    def _ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._ready = True

    def _claim(self, stream: str) -> list[tuple[bytes, Fields | None]]:
        """The next entry idle past ``claim_idle`` in any consumer's PEL becomes ours.

        One at a time, as our own pending entries are re-read: a claim or a re-read counts a
        delivery, so an entry that crashes its consumer must not push the count of the
        entries behind it (they would be moved aside without ever reaching a handler).
        """
        reply: Any = self.client.xautoclaim(
            stream,
            self.group,
            self.name,
            min_idle_time=int(self.claim_idle * 1000),
            start_id=self._claim_from[stream],
            count=1,
        )
        self._claim_from[stream] = _text(reply[0])
        entries: list[tuple[bytes, Fields | None]] = list(reply[1])
        if entries:
            self.stats.claimed += len(entries)
            log.info("consumer.claimed %d entries of %s", len(entries), stream)
        return entries

    def _process(self, stream: str, entries: Sequence[tuple[Any, Any]], *, fresh: bool) -> int:
        if not entries:
            return 0
        counts = {} if fresh else self._deliveries(stream, entries)
        done = 0
        for entry_id, fields in entries:
            if self.stopping.is_set():
                break  # the rest stays pending: re-read by this name or claimed by another
            self._one(stream, _text(entry_id), fields, counts.get(_text(entry_id), 1))
            done += 1
        return done

    def _deliveries(self, stream: str, entries: Sequence[tuple[Any, Any]]) -> dict[str, int]:
        """Each entry's delivery count (XPENDING), this delivery included."""
        pipe = self.client.pipeline(transaction=False)
        for entry_id, _ in entries:
            pipe.xpending_range(stream, self.group, min=entry_id, max=entry_id, count=1)
        replies: Any = pipe.execute()
        return {_text(r["message_id"]): int(r["times_delivered"]) for rows in replies for r in rows}

    def _one(self, stream: str, entry_id: str, raw: Fields | None, deliveries: int) -> None:
        if raw is None:  # trimmed before it was claimed (Redis 6.2): nothing left to handle
            self._ack(stream, entry_id)
            return
        if deliveries > self.max_deliveries:
            self._move(stream, entry_id, raw, deliveries, "max_deliveries", "")
            return
        try:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            item = parse_entry(stream, entry_id, fields)
        except ValueError as exc:  # UnicodeDecodeError and pydantic's ValidationError too
            self._move(stream, entry_id, raw, deliveries, "invalid_entry", str(exc))
            return
        try:
            if isinstance(item, Event):
                self.handler(item)
            elif self.on_deadletter is not None:
                self.on_deadletter(item)
            else:
                self._move(stream, entry_id, raw, deliveries, "no_deadletter_handler", "")
                return
        except Exception as exc:  # a handler's failure: counted, redelivered, then moved
            self.stats.failed += 1
            log.warning(
                "consumer.handler_failed %s %s delivery %d: %r", stream, entry_id, deliveries, exc
            )
            if deliveries >= self.max_deliveries:
                self._move(stream, entry_id, raw, deliveries, "handler_failed", repr(exc))
            return
        self.stats.handled += 1
        self._ack(stream, entry_id)

    def _ack(self, stream: str, entry_id: str) -> None:
        if self.client.xack(stream, self.group, entry_id):
            self.stats.acked += 1
        else:
            self.stats.ack_misses += 1
            log.warning("consumer.ack_missed %s %s: claimed by another consumer", stream, entry_id)

    def _move(
        self, stream: str, entry_id: str, raw: Fields, deliveries: int, reason: str, error: str
    ) -> None:
        """Copy the entry to the consumer-side dead-letter stream and ack it, atomically."""
        target = self.failed_stream.format(stream=stream, group=self.group)
        now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        extra = {
            "failed_stream": stream,
            "failed_id": entry_id,
            "failed_group": self.group,
            "failed_consumer": self.name,
            "failed_deliveries": str(deliveries),
            "failed_reason": reason,
            "failed_error": error[:500],
            "failed_at": now,
        }
        pipe = self.client.pipeline(transaction=True)
        copy: dict[Any, Any] = {**raw, **{k.encode(): v.encode() for k, v in extra.items()}}
        pipe.xadd(target, copy)
        pipe.xack(stream, self.group, entry_id)
        _, acked = pipe.execute()
        self.stats.moved += 1
        if not acked:
            self.stats.ack_misses += 1
        log.warning("consumer.moved_aside %s %s -> %s: %s", stream, entry_id, target, reason)

    @contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGINT set the stop flag (main thread only); a second one interrupts."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handle(signum: int, frame: FrameType | None) -> None:
            if self.stopping.is_set():
                raise KeyboardInterrupt
            self.stopping.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
