"""The verdict of ``drainer demo``: what the sandboxes handed out vs. what is on the streams.

For every account the demo knows the exact upstream truth (the sandboxes keep books of
every notification they generated and handed out, or pushed with a 2xx answer), and
derives each one's deterministic ``event_id`` (SPEC §3). The guarantee holds when every
handed-out notification is on the stream exactly once and nothing else is there.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from daemon.envelope.docplanner import check_docplanner, docplanner_event_id
from daemon.envelope.myinvois import myinvois_event_id
from daemon.sandbox import DocPlannerSandbox, MyInvoisSandbox
from daemon.settings import StreamSettings

READ_CHUNK = 1000
Books = dict[tuple[str, str], list[str]]  # (source, account) -> event_ids in stream order


@dataclass(frozen=True)
class AccountCheck:
    """The comparison for one account; ``note`` says what the figures cannot show."""

    label: str
    generated: int
    handed_out: int
    on_stream: int
    duplicates: int
    missing: int
    unexpected: int = 0
    deadletter: int = 0
    note: str = ""

    @property
    def exact(self) -> bool:
        """Every handed-out notification is on the stream once; nothing else is there."""
        return self.duplicates == 0 and self.missing == 0 and self.unexpected == 0

    @property
    def not_handed_out(self) -> int:
        return self.generated - self.handed_out

    def line(self) -> str:
        text = (
            f"{self.label}: generated {self.generated}, handed out {self.handed_out}, "
            f"on stream {self.on_stream}, duplicates {self.duplicates}, missing {self.missing}"
        )
        if self.unexpected:
            text += f", unexpected {self.unexpected}"
        if self.deadletter:
            text += f", dead-letter {self.deadletter}"
        return f"{text}  ({self.note})" if self.note else text


def compare(
    label: str,
    generated: int,
    handed_out_ids: Iterable[str],
    stream_ids: Iterable[str],
    deadletter: int = 0,
    note: str = "",
) -> AccountCheck:
    """Count duplicates, missing and unexpected ``event_id`` values of one account."""
    expected = set(handed_out_ids)
    seen = Counter(stream_ids)
    return AccountCheck(
        label=label,
        generated=generated,
        handed_out=len(expected),
        on_stream=sum(seen.values()),
        duplicates=sum(count - 1 for count in seen.values() if count > 1),
        missing=len(expected - seen.keys()),
        unexpected=len(seen.keys() - expected),
        deadletter=deadletter,
        note=note,
    )


Entry = tuple[str, dict[str, str]]  # (entry id, fields)


def stream_page(
    client: redis.Redis, stream: str, count: int, start: str = "-", newest_first: bool = False
) -> list[Entry]:
    """Up to ``count`` entries from ``start`` (XRANGE), or the newest ones (XREVRANGE)."""
    raw: Any = (
        client.xrevrange(stream, count=count)
        if newest_first
        else client.xrange(stream, min=start, count=count)
    )
    return [(_s(entry_id), {_s(k): _s(v) for k, v in fields.items()}) for entry_id, fields in raw]


def read_stream(client: redis.Redis, stream: str) -> Iterator[dict[str, str]]:
    """Every entry of ``stream``, in chunks, oldest first."""
    start = "-"
    while True:
        chunk = stream_page(client, stream, READ_CHUNK, start)
        for _, fields in chunk:
            yield fields
        if len(chunk) < READ_CHUNK:
            return
        start = "(" + chunk[-1][0]


def _s(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def stream_books(client: redis.Redis, streams: StreamSettings) -> tuple[Books, Books]:
    """(event_ids per account on the two streams, dead-letter reasons per account)."""
    books: Books = {}
    for stream in (streams.docplanner, streams.myinvois):
        for entry in read_stream(client, stream):
            key = (entry.get("source", ""), entry.get("account", ""))
            books.setdefault(key, []).append(entry.get("event_id", ""))
    dead: Books = {}
    for entry in read_stream(client, streams.deadletter):
        key = (entry.get("source", ""), entry.get("account", ""))
        dead.setdefault(key, []).append(entry.get("reason", ""))
    return books, dead


def check_pull(
    dp: DocPlannerSandbox, client_id: str, account: str, books: Books, dead: Books
) -> AccountCheck:
    """A pull account: generated = handed out + still queued + lost in flight + expired."""
    handed = dp.handed_out(client_id)
    upstream = len(dp.lost_in_flight(client_id)) + len(dp.expired(client_id))
    key = ("docplanner", account)
    return compare(
        f"docplanner/{account}",
        len(handed) + dp.queue_length(client_id) + upstream,
        [docplanner_event_id(account, n) for n in handed if check_docplanner(n) is None],
        books.get(key, []),
        len(dead.get(key, [])),
    )


def check_push(
    dp: DocPlannerSandbox, client_id: str, account: str, books: Books, dead: Books
) -> AccountCheck:
    """A push-only account: every arrival is queued and pushed; handed out = got a 2xx."""
    failed = len(dp.failed_pushes(client_id))
    key = ("docplanner", account)
    return compare(
        f"docplanner/{account}",
        dp.queue_length(client_id),
        [docplanner_event_id(account, n) for n in dp.pushed(client_id)],
        books.get(key, []),
        len(dead.get(key, [])),
        f"{failed} pushes got no 2xx; DocPlanner re-sends them after a release" if failed else "",
    )


def check_poll(
    mi: MyInvoisSandbox,
    client_id: str,
    account: str,
    books: Books,
    dead: Books,
    tin: str | None = None,
) -> AccountCheck:
    """A MyInvois account (an intermediary's: its ``tin``): handed out = every
    notificationId served in any page."""
    key = ("myinvois", account)
    return compare(
        f"myinvois/{account}",
        len(mi.notifications(client_id, tin)),
        [myinvois_event_id(account, i) for i in mi.handed_out(client_id, tin)],
        books.get(key, []),
        len(dead.get(key, [])),
    )


def verdict(
    checks: Sequence[AccountCheck], daemon_exit: int | None, settled: bool = True
) -> tuple[bool, str]:
    """(passed, the RESULT line). ``settled``: the daemon was let finish before it stopped."""
    broken = [check for check in checks if not check.exact]
    if broken:
        what = "; ".join(
            f"{c.label} missing {c.missing}, duplicates {c.duplicates}, unexpected {c.unexpected}"
            for c in broken
        )
        if not settled:  # e.g. a MyInvois window served but not finished: re-read on restart
            return False, f"RESULT: INCOMPLETE, stopped before the daemon had finished: {what}"
        return False, f"RESULT: FAILED, the streams do not match what was handed out: {what}"
    if daemon_exit != 0:
        return False, f"RESULT: FAILED, the daemon exited with code {daemon_exit} (see its log)"
    if not checks:
        return False, "RESULT: FAILED, no account could be checked"
    left = sum(check.not_handed_out for check in checks)
    if left:
        return True, (
            "RESULT: every notification handed out was published exactly once "
            f"({left} generated ones were still upstream when the demo stopped)"
        )
    return True, "RESULT: every generated notification was published exactly once"
