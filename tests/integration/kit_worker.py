"""A consumer-kit worker run as a real process: ``python -m tests.integration.kit_worker``.

Its handler records each event it finishes in the Redis list ``handled`` ("<name> <event_id>").
``--hang-after N``: on the next event after N, it records ``stuck`` and never returns (so the
test can SIGKILL it mid-batch). ``--hold``: each event waits until the key ``release`` exists
(so the test can send SIGTERM while an entry is in the handler).
"""

from __future__ import annotations

import argparse
import os
import threading

import redis

from drainer_consumer import Consumer, Event


def main() -> int:
    parser = argparse.ArgumentParser()
    for flag in ("--redis", "--stream", "--group", "--name"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--claim-idle", type=float, default=60.0)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--hang-after", type=int, default=-1)
    parser.add_argument("--hold", action="store_true")
    parser.add_argument("--crash-on", default="")
    parser.add_argument("--max-deliveries", type=int, default=5)
    args = parser.parse_args()
    book = redis.Redis.from_url(args.redis, socket_timeout=10)
    done = 0
    forever = threading.Event()

    def handle(event: Event) -> None:
        nonlocal done
        if event.event_id == args.crash_on:
            os._exit(3)  # a crash in the handler: no ack, no cleanup
        if done == args.hang_after:
            book.rpush("stuck", f"{args.name} {event.event_id}")
            forever.wait()  # killed here, mid-batch
        if args.hold:
            book.rpush("holding", event.event_id)
            while not book.exists("release"):
                forever.wait(0.05)
        book.rpush("handled", f"{args.name} {event.event_id}")
        done += 1

    consumer = Consumer(
        args.redis,
        args.stream,
        args.group,
        args.name,
        handle,
        claim_idle=args.claim_idle,
        count=args.count,
        block=0.5,
        max_deliveries=args.max_deliveries,
    )
    stats = consumer.run()
    book.set(f"stats:{args.name}", f"{stats.handled} {stats.acked} {stats.ack_misses}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
