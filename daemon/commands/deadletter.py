"""``drainer deadletter``: look at the dead-letter stream and send entries back (SPEC §2, §3).

- ``list``: counts by source, account and reason (``--entries``: one line per entry);
- ``show ID``: one entry's ``raw`` bytes on stdout, exactly as stored (its other fields on
  stderr), e.g. ``drainer deadletter show 1733616000000-0 > body.json``;
- ``redrive``: the selected entries (``--source``, ``--account``, ``--reason``, ``--id``)
  through the normal envelope and publish path, once their cause is fixed.

A redriven entry is normalised again exactly as the daemon does it (a DocPlanner pull body
or item by the pull expander, a MyInvois item by the poll window), with its original
``received_at``, and published through the same de-duplicating, durable sink: what is
already on the stream is skipped, so a redrive is safe to repeat. An entry whose every
notification is now on the stream is removed from the dead-letter stream (``XDEL``); one
that is still invalid, in whole or in part, stays where it is and is reported. The
MyInvois watermark is never moved. ``--dry-run`` says what would happen and writes nothing.

Needs no upstream secrets. Exit codes: 0 done, 1 Redis refused or is unreachable, 2 usage
or config error, 3 ``show`` of an id that is not there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from redis.exceptions import RedisClusterException

from daemon.envelope.batch import build_entries
from daemon.envelope.codec import loads
from daemon.envelope.docplanner import PullBatch, parse_pull_body
from daemon.envelope.entries import StreamEntry, parse_time
from daemon.errors import EXIT_FATAL, EXIT_OK, ConfigError, RedisCommandError, SinkError
from daemon.settings import Settings, config_path, load_settings
from daemon.sink import RedisSink, connect
from daemon.sources.myinvois.window import normalise_item

EXIT_NOT_FOUND = 3
PAGE = 500

EPILOG = """examples:
  drainer deadletter list                          counts by source, account, reason
  drainer deadletter list --reason publish_refused --entries
  drainer deadletter show 1733616000000-0 > raw.json
  drainer deadletter redrive --reason publish_refused --dry-run
  drainer deadletter redrive --account acme --id 1733616000000-0

exit codes: 0 done; 1 Redis unreachable or refusing; 2 usage or config error;
  3 show: no entry with that id. A redriven entry leaves the dead-letter stream once every
  notification in it is on its stream; one still invalid stays and is reported."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="counts by source, account and reason")
    show = actions.add_parser("show", help="one entry's raw bytes on stdout")
    redrive = actions.add_parser("redrive", help="send entries back through the normal path")
    for sub in (listing, show, redrive):
        sub.add_argument("--config", metavar="PATH", help="TOML config file")
    for sub in (listing, redrive):
        sub.add_argument("--source", choices=("docplanner", "myinvois"))
        sub.add_argument("--account", metavar="NAME")
        sub.add_argument("--reason", metavar="REASON", help="e.g. invalid_notification")
        sub.add_argument("--id", dest="ids", action="append", metavar="ID", default=[])
    listing.add_argument("--entries", action="store_true", help="one line per entry")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show.add_argument("id", metavar="ID", help="the dead-letter stream entry id")
    redrive.add_argument("--dry-run", action="store_true", help="report, write nothing")


@dataclass(frozen=True)
class Letter:
    """One dead-letter stream entry."""

    id: str
    fields: dict[str, str]

    def get(self, name: str) -> str:
        return self.fields.get(name, "")


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def letters(client: Any, stream: str, args: argparse.Namespace) -> Iterator[Letter]:
    """The entries of ``stream`` matching the filters, oldest first (read in pages)."""
    wanted = set(args.ids)
    start = "-"
    while True:
        page = client.xrange(stream, min=start, max="+", count=PAGE)
        for entry_id, raw_fields in page:
            letter = Letter(_text(entry_id), {_text(k): _text(v) for k, v in raw_fields.items()})
            if _matches(letter, args, wanted):
                yield letter
        if len(page) < PAGE:
            return
        start = "(" + _text(page[-1][0])


def _matches(letter: Letter, args: argparse.Namespace, wanted: set[str]) -> bool:
    return (
        (not wanted or letter.id in wanted)
        and (args.source is None or letter.get("source") == args.source)
        and (args.account is None or letter.get("account") == args.account)
        and (args.reason is None or letter.get("reason") == args.reason)
    )


def run(args: argparse.Namespace) -> int:
    settings = load_settings(config_path(args.config, os.environ), os.environ, secrets=False)
    client = connect(settings.redis, timeout=5)
    stream = settings.streams.deadletter
    try:
        if args.action == "list":
            return list_letters(client, stream, args)
        if args.action == "show":
            return show_letter(client, stream, args.id)
        return redrive(client, settings, args)
    except (redis.RedisError, RedisClusterException, SinkError, RedisCommandError) as exc:
        print(f"drainer deadletter: redis: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FATAL
    finally:
        client.close()


def list_letters(client: Any, stream: str, args: argparse.Namespace) -> int:
    found = list(letters(client, stream, args))
    if args.entries:
        for letter in found:
            line = [letter.id, letter.get("source"), letter.get("account"), letter.get("reason")]
            line += [letter.get("received_at"), letter.get("detail")[:100]]
            print(
                "  ".join(line) if not args.json else json.dumps({"id": letter.id, **letter.fields})
            )
        return EXIT_OK
    counts = Counter((x.get("source"), x.get("account"), x.get("reason")) for x in found)
    if args.json:
        rows = [
            {"source": s, "account": a, "reason": r, "count": n} for (s, a, r), n in counts.items()
        ]
        print(json.dumps({"stream": stream, "total": len(found), "groups": sorted(rows, key=str)}))
        return EXIT_OK
    table = [("source", "account", "reason", "count")]
    table += [(s, a, r, str(n)) for (s, a, r), n in sorted(counts.items())]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"{len(found)} dead letters in {stream}")
    return EXIT_OK


def show_letter(client: Any, stream: str, entry_id: str) -> int:
    try:
        found = client.xrange(stream, min=entry_id, max=entry_id, count=1)
    except redis.ResponseError:  # not a stream id at all
        found = []
    if not found:
        print(f"drainer deadletter: no entry {entry_id!r} in {stream}", file=sys.stderr)
        return EXIT_NOT_FOUND
    fields = {_text(k): _text(v) for k, v in found[0][1].items()}
    raw = fields.pop("raw", "")
    print(json.dumps({"id": entry_id, **fields}), file=sys.stderr)
    sys.stdout.buffer.write(raw.encode("utf-8", errors="surrogateescape"))
    sys.stdout.flush()
    return EXIT_OK


def rebuild(letter: Letter, settings: Settings) -> tuple[list[StreamEntry], int]:
    """The stream entries of one dead letter, built as the daemon builds them, and how many
    of its notifications are still invalid (0: all of it is in the entries)."""
    source, account = letter.get("source"), letter.get("account")
    raw = letter.get("raw").encode()
    received = parse_time(letter.get("received_at")) or datetime.now(UTC)
    streams = settings.streams
    if source == "myinvois":
        try:
            item = loads(raw, strict=False)
        except ValueError:
            return [], 1
        built = normalise_item(streams.myinvois, account, item, received)
        return ([built], 0) if isinstance(built, StreamEntry) else ([], 1)
    if source != "docplanner":
        return [], 1
    parsed = parse_pull_body(raw, exact=True)
    if not isinstance(parsed, PullBatch):
        return [], 1
    # ``delivery`` is not kept in a dead letter (and is not part of the event id): a pull body
    # was pulled; a lone notification was pushed if the account only takes pushes.
    configured = settings.docplanner_account(account)
    pushed = configured is not None and configured.mode == "push"
    whole_body = b'"notifications"' in raw or b'"_items"' in raw
    delivery = "push" if pushed and not whole_body else "pull"
    entries, reasons, _ = build_entries(
        account, streams.docplanner, streams.deadletter, parsed.items, received, delivery
    )
    valid = [e for e in entries if e.stream != streams.deadletter]
    return valid, sum(reasons.values())


def redrive(client: Any, settings: Settings, args: argparse.Namespace) -> int:
    if not (args.source or args.account or args.reason or args.ids):
        raise ConfigError("redrive: select entries with --source, --account, --reason or --id")
    stream = settings.streams.deadletter
    sink = None if args.dry_run else RedisSink.configured(client, settings)
    totals = Counter[str]()
    for letter in letters(client, stream, args):
        entries, invalid = rebuild(letter, settings)
        whole = bool(entries) and not invalid  # every notification in it is valid now
        label = f"{letter.id} {letter.get('source')}/{letter.get('account')} {letter.get('reason')}"
        if sink is None:
            state = "would be removed" if whole else "would stay"
            print(f"{label}: {len(entries)} valid, {invalid} still invalid; {state}")
        else:
            result = sink.publish(entries) if entries else None
            if whole:
                client.xdel(stream, letter.id)  # only once its entries are durably published
            new = result.published if result else 0
            state = "removed" if whole else "kept"
            print(
                f"{label}: {len(entries)} valid ({new} new, {len(entries) - new} already on"
                f" the stream), {invalid} still invalid; {state}"
            )
        totals.update(letters=1, entries=len(entries), invalid=invalid, whole=int(whole))
    done = "would leave" if sink is None else "removed from"
    print(
        f"{totals['letters']} dead letters: {totals['entries']} valid notifications"
        f" ({'dry run: nothing written' if sink is None else 'published'}),"
        f" {totals['invalid']} still invalid; {totals['whole']} {done} {stream}"
    )
    return EXIT_OK
