"""The MyInvois format (SPEC §3): a Get Notifications item -> a stream entry. Pure: no I/O."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from daemon.envelope.codec import canonical_json
from daemon.envelope.entries import SCHEMA, StreamEntry, Unreadable, parse_time, rfc3339


def check_myinvois(item: Any) -> str | None:
    """Why ``item`` is not a MyInvois notification, or None when it is one."""
    if isinstance(item, Unreadable):
        return f"notification is not readable JSON: {item.reason}"
    if not isinstance(item, dict):
        return "notification is not a JSON object"
    notification_id = item.get("notificationId")
    if not isinstance(notification_id, str) or not notification_id or len(notification_id) > 200:
        return "notification has no string 'notificationId'"
    if parse_time(_with_zone(item.get("creationDateTime"))) is None:
        return "notification 'creationDateTime' is not an ISO 8601 time"
    if myinvois_type(item.get("typeId")) is None:
        return "notification 'typeId' is not a decimal type id"
    try:
        json.dumps(item, ensure_ascii=False, allow_nan=False).encode()
    except ValueError:  # NaN, Infinity or an overflowing number: not JSON (RFC 8259)
        return "notification holds NaN or Infinity, which is not JSON"
    except (UnicodeEncodeError, RecursionError):
        return "notification is not valid Unicode or is nested too deeply"
    return None


def _with_zone(value: object) -> object:
    """MyInvois times are UTC; some samples omit the ``Z``."""
    if isinstance(value, str) and value and not value.endswith("Z") and "+" not in value[10:]:
        return value + "Z"
    return value


_DECIMAL = re.compile(r"[0-9]{1,18}")  # ASCII only: "³".isdigit() is True, int("³") raises


def myinvois_type(type_id: object) -> str | None:
    """``typeId`` as decimal text (Get Notifications: a String id such as ``"34"``; an
    integer is taken too), or None when it is not one (``"³"``, ``"abc"``, ``-1``, ``3.5``).
    """
    if isinstance(type_id, bool):
        return None
    if isinstance(type_id, int) and 0 <= type_id < 10**18:
        return str(type_id)
    if isinstance(type_id, str) and _DECIMAL.fullmatch(type_id):
        return str(int(type_id))
    return None


def myinvois_created(item: dict[str, Any]) -> datetime:
    """``creationDateTime`` of a valid MyInvois notification, in UTC."""
    moment = parse_time(_with_zone(item["creationDateTime"]))
    assert moment is not None, "check_myinvois first"
    return moment.astimezone(UTC)


def myinvois_event_id(account: str, notification_id: str) -> str:
    return f"myinvois:{account}:{notification_id}"


def myinvois_entry(
    stream: str, account: str, notification: dict[str, Any], received_at: datetime
) -> StreamEntry:
    """The stream entry of a valid MyInvois notification (see :func:`check_myinvois`)."""
    event_id = myinvois_event_id(account, notification["notificationId"])
    return StreamEntry(
        stream,
        event_id,
        {
            "event_id": event_id,
            "source": "myinvois",
            "account": account,
            "type": _checked(myinvois_type(notification["typeId"])),
            "occurred_at": rfc3339(myinvois_created(notification)),
            "received_at": rfc3339(received_at),
            "delivery": "poll",
            "payload": canonical_json(notification),
            "schema": SCHEMA,
        },
    )


def _checked(type_id: str | None) -> str:
    if type_id is None:
        raise ValueError("notification 'typeId' is not a decimal type id")
    return type_id
