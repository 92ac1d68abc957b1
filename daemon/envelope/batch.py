"""A DocPlanner batch -> stream entries: a spooled pull body, or items pushed to us.

:class:`PullExpander` runs in the publisher thread: it turns a spooled raw pull body into
entries, deterministically (``received_at`` is stored with the record), so a replay after a
crash yields the same event ids; what it counted goes to its ``observe`` callback (the
intake metrics, :class:`daemon.metrics.docplanner.DocPlannerIntake`). Pure but for logs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog

from daemon.envelope.codec import InexactJsonError, texts_may_differ, to_raw
from daemon.envelope.docplanner import (
    PullBatch,
    docplanner_created,
    docplanner_entry,
    parse_pull_body,
)
from daemon.envelope.entries import Invalid, StreamEntry, deadletter_entry, rfc3339
from daemon.envelope.salvage import UNREADABLE_WHOLE, salvage

log = structlog.get_logger("daemon.envelope.batch")


def build_entries(
    account: str,
    stream: str,
    deadletter_stream: str,
    items: list[object],
    received_at: datetime,
    delivery: str,
    *,
    finite: bool = False,
) -> tuple[list[StreamEntry], dict[str, int], list[datetime]]:
    """Valid items -> stream entries, invalid ones -> dead-letter entries, order kept.

    Returns the entries, the dead-letter count per reason and the ``created_at`` times.
    ``finite``: orjson parsed the items; raises :class:`InexactJsonError` when one holds a
    number orjson and ``json`` may read or write differently (parse again with ``json``).
    """
    entries: list[StreamEntry] = []
    reasons: dict[str, int] = {}
    created: list[datetime] = []
    received = rfc3339(received_at)  # once per batch, not per item
    texts: list[bytes] | None = [] if finite else None  # number check: once per batch
    for position, item in enumerate(items):
        checked = docplanner_created(item)  # the problem, or created_at parsed once
        problem = checked if isinstance(checked, str) else None
        if not isinstance(checked, str):
            assert isinstance(item, dict)
            moment = checked
            try:
                entry = docplanner_entry(
                    stream, account, item, received, delivery,
                    occurred=moment, finite=finite, texts=texts,
                )  # fmt: skip
                entries.append(entry)
            except ValueError as exc:
                problem = str(exc)
            except InexactJsonError:
                raise  # the whole batch is read again with json
            except Exception as exc:  # a poison item must not stall the account (SPEC §2)
                log.exception("docplanner.item_not_normalised", account=account)
                problem = f"notification cannot be normalised: {type(exc).__name__}: {exc}"
            else:
                created.append(moment)
        if problem is not None:
            try:
                raw = to_raw(item, finite=finite)
            except (ValueError, RecursionError):
                raw = b"<item nested too deeply to re-encode>"
            invalid = Invalid("invalid_notification", problem, raw)
            entries.append(
                deadletter_entry(
                    deadletter_stream, "docplanner", account, invalid, received_at, position
                )
            )
            reasons["invalid_notification"] = reasons.get("invalid_notification", 0) + 1
    if texts and texts_may_differ(texts):
        raise InexactJsonError("a number orjson and json may read or write differently")
    return entries, reasons, created


@dataclass(frozen=True, slots=True)
class Expansion:
    """What one spooled pull body gave: its entries, and what the intake metrics count."""

    entries: list[StreamEntry]
    reasons: dict[str, int]  # dead letters per reason
    received: int  # valid notifications
    remaining: int | None  # the queue left upstream; None when the body was unreadable
    newest: float | None  # created_at of the newest valid notification (epoch seconds)
    pulled_at: float


class Received(Protocol):
    """A spooled raw body (``daemon.spool.RawBatch``), as the expander reads it."""

    @property
    def body(self) -> bytes: ...
    @property
    def received_at(self) -> float: ...
    @property
    def delivery(self) -> str: ...


class PullExpander:
    """Turns a spooled raw pull body into stream entries (runs in the publisher thread).

    Deterministic for a given record (``received_at`` is stored with it), so a replay
    after a crash yields the same event ids. Hands each :class:`Expansion` to ``observe``.
    """

    def __init__(
        self,
        account: str,
        stream: str,
        deadletter_stream: str,
        observe: Callable[[Expansion], None] | None = None,
    ) -> None:
        self.account = account
        self.stream = stream
        self.deadletter_stream = deadletter_stream
        self.observe = observe

    def __call__(self, raw: Received) -> list[StreamEntry]:
        expansion = self.expand(raw)
        if self.observe is not None:
            self.observe(expansion)
        return expansion.entries

    def expand(self, raw: Received) -> Expansion:
        received_at = datetime.fromtimestamp(raw.received_at, tz=UTC)
        parsed = parse_pull_body(raw.body)
        built = None
        if isinstance(parsed, PullBatch):
            try:
                built = self._build(parsed, received_at, raw.delivery)
            except InexactJsonError:  # rare: a number or nesting orjson may not render alike
                parsed = parse_pull_body(raw.body, exact=True)
        if isinstance(parsed, Invalid) and any(w in parsed.detail for w in UNREADABLE_WHOLE):
            parsed = _item_by_item(raw.body) or parsed  # one poison item, not the whole batch
        if isinstance(parsed, Invalid):
            # Popped upstream already: the raw body is the only copy left. Dead-letter it whole.
            log.error(
                "docplanner.unparseable_body",
                account=self.account,
                bytes=len(raw.body),
                detail=parsed.detail,
            )
            entry = deadletter_entry(
                self.deadletter_stream, "docplanner", self.account, parsed, received_at
            )
            return Expansion([entry], {parsed.reason: 1}, 0, None, None, raw.received_at)
        entries, reasons, created = built or self._build(parsed, received_at, raw.delivery)
        newest = max(created).timestamp() if created else None
        return Expansion(entries, reasons, len(created), parsed.remaining, newest, raw.received_at)

    def _build(
        self, parsed: PullBatch, received_at: datetime, delivery: str
    ) -> tuple[list[StreamEntry], dict[str, int], list[datetime]]:
        return build_entries(
            self.account,
            self.stream,
            self.deadletter_stream,
            parsed.items,
            received_at,
            delivery,
            finite=parsed.finite,
        )


def _item_by_item(body: bytes) -> PullBatch | None:
    """A complete body JSON cannot read whole (one item nested too deeply, or holding a
    huge integer), read item by item; None when it is not one (truncated, not JSON)."""
    document = salvage(body, "notifications", strict=True)
    if document is None:
        return None
    remaining = document.get("remaining", 0)
    if not isinstance(remaining, int) or isinstance(remaining, bool) or remaining < 0:
        remaining = 0
    return PullBatch(document["notifications"], remaining)
