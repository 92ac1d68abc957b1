"""The DocPlanner format (SPEC §3): the pull body, a notification's checks, id and entry.

Pure: no I/O. A whole batch becomes entries in :mod:`daemon.envelope.batch`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from daemon.envelope.codec import (
    canonical_bytes,
    canonical_json,
    loads,
    parse_fast,
)
from daemon.envelope.entries import (
    SCHEMA,
    Invalid,
    StreamEntry,
    Unreadable,
    parse_time,
    rfc3339,
)


@dataclass(frozen=True, slots=True)
class PullBatch:
    """A parsed DocPlanner pull response: its items (raw JSON objects) and ``remaining``."""

    items: list[Any]
    remaining: int
    finite: bool = False  # parsed by orjson: no NaN/Infinity inside (see canonical_json)


def parse_pull_body(body: bytes, *, exact: bool = False) -> PullBatch | Invalid:
    """``{"notifications": [...], "remaining": n}``; also ``_items`` and a bare object.

    orjson reads it unless ``exact`` (the ``json`` module only, as after an
    :class:`InexactJsonError`).
    """
    try:
        document, finite = (loads(body), False) if exact else parse_fast(body)
    except (ValueError, RecursionError) as exc:
        return Invalid("unparseable_body", f"pull response is not JSON: {exc}", body)
    if isinstance(document, dict) and "name" in document and "notifications" not in document:
        return PullBatch([document], 0, finite)  # GET /notifications: one bare notification
    if not isinstance(document, dict):
        return Invalid("unparseable_body", "pull response is not a JSON object", body)
    items = document.get("notifications", document.get("_items"))
    remaining = document.get("remaining", 0)
    if not isinstance(items, list):
        return Invalid("unparseable_body", "pull response has no notifications list", body)
    if not isinstance(remaining, int) or isinstance(remaining, bool) or remaining < 0:
        remaining = 0
    return PullBatch(items, remaining, finite)


def check_docplanner(item: Any) -> str | None:
    """Why ``item`` is not a DocPlanner notification, or None when it is one."""
    checked = docplanner_created(item)
    return checked if isinstance(checked, str) else None


def docplanner_created(item: Any) -> str | datetime:
    """Why ``item`` is not a DocPlanner notification (a str), or its ``created_at`` time."""
    if isinstance(item, Unreadable):
        return f"notification is not readable JSON: {item.reason}"
    if not isinstance(item, dict):
        return "notification is not a JSON object"
    name = item.get("name")
    if not isinstance(name, str) or not name or len(name) > 200:
        return "notification has no string 'name'"
    if not isinstance(item.get("data"), dict):
        return "notification 'data' is not an object"
    moment = parse_time(item.get("created_at"))
    if moment is None:
        return "notification 'created_at' is not an ISO 8601 time with offset"
    return moment


def docplanner_event_id(account: str, notification: Any) -> str:
    """``docplanner:<account>:<first 32 hex of sha256(canonical JSON)>``."""
    return _docplanner_id(account, canonical_json(notification).encode())


def _docplanner_id(account: str, canonical: bytes) -> str:
    digest = hashlib.sha256(canonical).hexdigest()[:32]
    return f"docplanner:{account}:{digest}"


def docplanner_entry(
    stream: str,
    account: str,
    notification: dict[str, Any],
    received_at: datetime | str,
    delivery: str,
    *,
    occurred: datetime | None = None,
    finite: bool = False,
    texts: list[bytes] | None = None,
) -> StreamEntry:
    """The stream entry of a valid DocPlanner notification (see :func:`check_docplanner`).

    A batch passes ``received_at`` already in RFC 3339 and the ``occurred`` time it parsed,
    so neither is worked out again per item. Raises ValueError for an object JSON cannot
    encode (e.g. nested too deeply). With ``finite`` and ``texts``, the item's canonical
    text is appended to ``texts`` unchecked: the caller checks the whole batch at once
    (:func:`texts_may_differ`) before it uses any entry.
    """
    if occurred is None:
        occurred = parse_time(notification["created_at"])
    assert occurred is not None, "check_docplanner first"
    try:
        if finite:
            text = canonical_bytes(notification, check=texts is None)
            if texts is not None:
                texts.append(text)
            payload = text.decode()
        else:
            payload = canonical_json(notification)
            text = payload.encode()
    except RecursionError:
        raise ValueError("notification nested too deeply") from None
    event_id = _docplanner_id(account, text)
    return StreamEntry(
        stream,
        event_id,
        {
            "event_id": event_id,
            "source": "docplanner",
            "account": account,
            "type": notification["name"],
            "occurred_at": rfc3339(occurred),
            "received_at": received_at if isinstance(received_at, str) else rfc3339(received_at),
            "delivery": delivery,
            "payload": payload,
            "schema": SCHEMA,
        },
    )
