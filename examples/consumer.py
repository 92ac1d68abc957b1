"""A downstream service on the consumer kit, idempotent on ``event_id`` (sqlite3).

    python examples/consumer.py --redis redis://127.0.0.1:6379/0 \\
        --stream 'drainer:{docplanner}' --group billing --consumer worker-1 --db billing.db

Start more copies with other ``--consumer`` names to share the work. Each event's work and
its ``event_id`` are written in ONE transaction; the unique key makes a redelivery (this
process crashed after COMMIT but before XACK, or a claim by another consumer) a no-op.
``--count N`` exits after N events (for tests and trying it out).
"""

from __future__ import annotations

import argparse
import sqlite3

from drainer_consumer import Consumer, Event

SCHEMA = """
CREATE TABLE IF NOT EXISTS processed (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS bookings (event_id TEXT, account TEXT, type TEXT, occurred_at TEXT);
"""


def handle(db: sqlite3.Connection, event: Event) -> bool:
    """Do the work once per event_id; False when it was already done (a redelivery)."""
    with db:  # one transaction: BEGIN ... COMMIT (ROLLBACK if anything raises)
        seen = db.execute(
            "INSERT INTO processed (event_id) VALUES (?) ON CONFLICT DO NOTHING", (event.event_id,)
        )
        if seen.rowcount == 0:
            return False  # done before: the consumer acks it again, nothing else
        db.execute(  # the work itself: here, a row in the service's own table
            "INSERT INTO bookings VALUES (?, ?, ?, ?)",
            (event.event_id, event.account, event.type, event.occurred_at.isoformat()),
        )
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--stream", default="drainer:{docplanner}", help="stream key")
    parser.add_argument("--group", default="example", help="consumer group")
    parser.add_argument("--consumer", default="consumer-1", help="this consumer's name")
    parser.add_argument("--db", default="consumer.db", help="sqlite3 database file")
    parser.add_argument("--count", type=int, default=0, help="exit after N events (0: never)")
    args = parser.parse_args(argv)
    db = sqlite3.connect(args.db)
    db.executescript(SCHEMA)
    done = 0

    def on_event(event: Event) -> None:
        nonlocal done
        fresh = handle(db, event)
        print(event.entry_id, event.source, event.account, event.type, event.event_id,
              "new" if fresh else "already done", flush=True)  # fmt: skip
        done += 1
        if args.count and done >= args.count:
            consumer.stop()

    consumer = Consumer(args.redis, args.stream, args.group, args.consumer, on_event)
    try:
        consumer.run()  # until SIGTERM / Ctrl-C: the current event finishes first
    finally:
        consumer.close()
        db.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
