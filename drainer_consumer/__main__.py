"""``python -m drainer_consumer``: read drainer streams in a consumer group, print each entry.

    python -m drainer_consumer --redis redis://127.0.0.1:6379/0 --group audit \\
        --consumer audit-1 --stream 'drainer:{docplanner}' --stream 'drainer:{deadletter}'

One line per entry (entry id, source, account, type, event_id; ``deadletter`` and the
reason for a dead letter), acked after it is printed. SIGTERM or Ctrl-C stops it after the
current entry. ``drainer demo`` runs it as group ``demo`` on the three demo streams.
"""

from __future__ import annotations

import argparse
import logging
import sys

import redis

from drainer_consumer.consumer import Consumer
from drainer_consumer.models import DeadLetter, Event


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m drainer_consumer", description=__doc__)
    add = parser.add_argument
    add("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    add("--stream", action="append", help="a stream key (repeatable)")
    add("--group", default="example", help="consumer group")
    add("--consumer", default="consumer-1", help="this consumer's name in the group")
    add("--claim-idle", type=float, default=60.0, help="claim others' entries idle this long")
    add("--max-deliveries", type=int, default=5, help="move an entry aside after N deliveries")
    add("--count", type=int, default=0, help="exit after N entries (0: never)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    consumer: Consumer

    def printed() -> None:
        if args.count and consumer.stats.handled + 1 >= args.count:
            consumer.stop()

    def on_event(event: Event) -> None:
        print(event.entry_id, event.source, event.account, event.type, event.event_id, flush=True)
        printed()

    def on_deadletter(dead: DeadLetter) -> None:
        print(dead.entry_id, "deadletter", dead.source, dead.account, dead.reason, flush=True)
        printed()

    streams = args.stream or ["drainer:{docplanner}"]
    consumer = Consumer(
        args.redis,
        streams,
        args.group,
        args.consumer,
        on_event,
        on_deadletter=on_deadletter,
        claim_idle=args.claim_idle,
        max_deliveries=args.max_deliveries,
    )
    try:
        consumer.run()
    except KeyboardInterrupt:  # a second signal: stop at once
        return 130
    except redis.RedisError as exc:
        print(f"drainer_consumer: {exc}", file=sys.stderr)
        return 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
