"""A minimal consumer-group reader of a drainer stream (needs only ``redis``).

    python examples/consumer.py --redis redis://127.0.0.1:6379/0 \\
        --stream 'drainer:{docplanner}' --group billing --consumer worker-1

Creates the group if needed (from the start of the stream), then loops: XREADGROUP with
BLOCK, print each entry's source/account/type/event_id, XACK it. First it re-reads its
own pending entries (delivered earlier but never acknowledged, e.g. it crashed), then
new ones. ``--count N`` exits after N entries (for tests and trying it out).
"""

from __future__ import annotations

import argparse
import sys

import redis

BLOCK_MS = 2000


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="Redis URL")
    parser.add_argument("--stream", default="drainer:{docplanner}", help="stream key")
    parser.add_argument("--group", default="example", help="consumer group")
    parser.add_argument("--consumer", default="consumer-1", help="this consumer's name")
    parser.add_argument("--count", type=int, default=0, help="exit after N entries (0: never)")
    return parser.parse_args(argv)


def ensure_group(client: redis.Redis, stream: str, group: str) -> None:
    """XGROUP CREATE <stream> <group> 0 MKSTREAM; an existing group is fine."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consume(args: argparse.Namespace) -> int:
    client = redis.Redis.from_url(args.redis, decode_responses=True)
    ensure_group(client, args.stream, args.group)
    seen = 0
    cursor = "0"  # our own pending entries first, then ">" (never delivered to anyone)
    while not args.count or seen < args.count:
        want = args.count - seen if args.count else 100
        reply = client.xreadgroup(
            args.group, args.consumer, {args.stream: cursor}, count=want, block=BLOCK_MS
        )
        entries = reply[0][1] if reply else []
        if cursor == "0" and not entries:
            cursor = ">"
            continue
        for entry_id, fields in entries:
            print(
                entry_id,
                fields.get("source"),
                fields.get("account"),
                fields.get("type"),
                fields.get("event_id"),
                flush=True,
            )
            client.xack(args.stream, args.group, entry_id)
            seen += 1
    return 0


def main() -> int:
    try:
        return consume(parse_args())
    except KeyboardInterrupt:
        return 0
    except redis.RedisError as exc:
        print(f"consumer: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
