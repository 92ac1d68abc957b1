"""MyInvois Get Notifications query: parameter validation, filters, newest-first paging.

Source of every rule: the official Get Notifications page,
https://sdk.myinvois.hasil.gov.my/api/06-get-notifications/ (seed copy:
/work/shared/upstream/myinvois-get-notifications.txt), and the standard error codes of
https://sdk.myinvois.hasil.gov.my/standard-error-response/ (400 BadArgument, ``target``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from daemon.sandbox.clock import parse_iso
from daemon.sandbox.records import STATUSES

MAX_PAGE_SIZE = 100
_UTC_Z = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,7})?Z$")

Stored = tuple[float, dict[str, Any]]
"""A record with the time it was sent (``receivedDateTime``) in Unix seconds."""


class BadArgumentError(ValueError):
    """A query parameter the API rejects with ``400 BadArgument``; ``target`` names it."""

    def __init__(self, target: str, message: str) -> None:
        super().__init__(message)
        self.target = target


def _number(param: Callable[[str], str | None], name: str, default: int, high: int) -> int:
    raw = param(name)
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= high:
        # Standard errors: 400 BadArgument, "Name of the argument is provided in target".
        raise BadArgumentError(name, f"{name} must be a whole number from 1 to {high}")
    return int(raw)


def _stamp(param: Callable[[str], str | None], name: str) -> float | None:
    raw = param(name)
    if raw is None:
        return None
    if not _UTC_Z.match(raw):
        # Get Notifications: dates look like 2015-02-13T14:20:10Z; other forms: docs
        # silent; stricter than the client (400 BadArgument).
        raise BadArgumentError(name, f"{name} must be a UTC time such as 2024-07-01T00:00:00Z")
    return parse_iso(raw).timestamp()


@dataclass(frozen=True)
class Query:
    """``dateFrom <= receivedDateTime <= dateTo`` (inclusive), type, language, status, page."""

    date_from: float | None = None
    date_to: float | None = None
    type_id: str | None = None
    language: str | None = None
    status: str | None = None
    page_no: int = 1
    page_size: int = MAX_PAGE_SIZE

    @classmethod
    def parse(cls, param: Callable[[str], str | None], max_page_size: int = MAX_PAGE_SIZE) -> Query:
        """Validated parameters (``param(name)`` reads one); raises :class:`BadArgumentError`.

        ``max_page_size``: "Maximum page size allowed is defined by e-Invoice system
        administrators" (Get Notifications), 100 today; a larger pageSize is 400 BadArgument.
        """
        date_from, date_to = _stamp(param, "dateFrom"), _stamp(param, "dateTo")
        if date_from is not None and date_to is not None and date_from > date_to:
            # An inverted range: docs silent; stricter than the client (400 BadArgument).
            raise BadArgumentError("dateFrom", "dateFrom must not be after dateTo")
        # pageNo from 1: docs silent ("number of the page to retrieve"); stricter.
        page_no = _number(param, "pageNo", 1, 10**9)
        # Get Notifications: "Page size cannot exceed system configured maximum page size".
        page_size = _number(param, "pageSize", max_page_size, max_page_size)
        type_id, language, status = param("type"), param("language"), param("status")
        # Get Notifications: type is a type id, language "ms" or "en", status a status id.
        if type_id is not None and not type_id.isdigit():
            raise BadArgumentError("type", "type must be a notification type id")
        if language is not None and language not in ("en", "ms"):
            raise BadArgumentError("language", "language must be en or ms")
        if status is not None:
            status = STATUSES.get(status, status.lower())
            if status not in STATUSES.values():
                raise BadArgumentError("status", "status must be a notification status id, 1 to 5")
        return cls(date_from, date_to, type_id, language, status, page_no, page_size)

    def matches(self, stamp: float, record: dict[str, Any]) -> bool:
        # Get Notifications: dateFrom/dateTo select "based on the date sent", i.e. the
        # receivedDateTime ("when notification was sent out"); inclusive bounds: docs silent.
        return (
            (self.date_from is None or stamp >= self.date_from)
            and (self.date_to is None or stamp <= self.date_to)
            and (self.type_id is None or _field(record, "typeId") == self.type_id)
            and (self.language is None or _field(record, "language") == self.language)
            and (self.status is None or _field(record, "status") == self.status)
        )

    def page(self, records: Sequence[Stored]) -> tuple[list[dict[str, Any]], bool]:
        """This page of the matching records, newest first, and whether another follows."""
        matching = [item for item in records if self.matches(*item)]
        # Get Notifications: "ordered based on descending notification date"; which date is
        # not said: the date sent, the one the filter uses (then notificationId, descending).
        matching.sort(key=lambda item: (item[0], _id_text(item[1])), reverse=True)
        # Get Notifications: pageNo/pageSize paging; metadata carries only hasNext.
        start = (self.page_no - 1) * self.page_size
        page = [record for _, record in matching[start : start + self.page_size]]
        return page, start + self.page_size < len(matching)


def _field(record: Any, name: str) -> object:
    """A field of a stored record; an injected poison item may not be an object."""
    return record.get(name) if isinstance(record, dict) else None


def _id_text(record: Any) -> str:
    return str(_field(record, "notificationId") or "")
