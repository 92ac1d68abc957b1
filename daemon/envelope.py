"""Pure normalisation: upstream notifications -> stream entries (SPEC §3). No I/O here.

Every function takes what it needs and returns values; the sources decide what to do with
an :class:`Invalid` (dead-letter it) and the sink decides how to write a :class:`StreamEntry`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

SCHEMA = "1"


@dataclass(frozen=True, slots=True)
class StreamEntry:
    """One entry for one stream; ``event_id`` is the de-duplication key."""

    stream: str
    event_id: str
    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class Invalid:
    """Input that is not a valid notification: dead-letter ``raw`` with ``reason``."""

    reason: str
    detail: str
    raw: bytes


@dataclass(frozen=True, slots=True)
class PullBatch:
    """A parsed DocPlanner pull response: its items (raw JSON objects) and ``remaining``."""

    items: list[Any]
    remaining: int
    finite: bool = False  # parsed by orjson: no NaN/Infinity inside (see canonical_json)


def rfc3339(moment: datetime) -> str:
    """UTC, RFC 3339 with ``Z``; microseconds only when present."""
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp with an offset (or ``Z``), else None."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment


# Number text where orjson and ``json`` may differ: exponents (also every integer orjson
# read as a float because it does not fit 64 bits) and floats below 1e-4.
_FLOAT_TEXT = re.compile(rb"(?:^|[:,\[])-?(?:\d+(?:\.\d+)?e|0\.0000)")


class InexactJsonError(Exception):
    """orjson's value or text of this batch could differ from ``json``'s: redo it with ``json``."""


_DIGITS_TO_0 = bytes.maketrans(b"123456789", b"000000000")


def _may_differ(text: bytes) -> bool:
    """Cheap finds first (C speed); the regex only when a candidate is there."""
    zeroed = text.translate(_DIGITS_TO_0)  # "presence-marked" is no candidate, "1e-05" is
    if b"0e+" in zeroed or b"0e-" in zeroed or b"0.0000" in zeroed:
        return _FLOAT_TEXT.search(text) is not None
    return False


def canonical_json(value: Any, *, finite: bool = False) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same object always hashes the same.

    The text is always that of ``json.dumps(sort_keys=True, ensure_ascii=False)``, which
    the event ids were defined with. ``finite=True`` (a value orjson parsed: no NaN or
    Infinity inside) lets orjson write it, several times faster. Raises
    :class:`InexactJsonError` when the text holds a number the two libraries could read
    or write differently, so the caller re-parses the body with ``json``.
    """
    if finite:
        return canonical_bytes(value).decode()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_bytes(value: Any, *, check: bool = True) -> bytes:
    """:func:`canonical_json`'s UTF-8 text of a value orjson parsed (``finite``), as orjson
    wrote it. ``check=False`` leaves the number check to the caller: a batch checks all its
    items' texts at once with :func:`texts_may_differ` (one scan instead of one per item).
    """
    try:
        fast = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # nested deeper than 254: json decides, from the bytes
        raise InexactJsonError("nested deeper than orjson writes") from None
    if check and _may_differ(fast):
        raise InexactJsonError("a number orjson and json may read or write differently")
    return fast


def texts_may_differ(texts: list[bytes]) -> bool:
    """:func:`_may_differ` of several object texts in one scan (a newline never belongs to a
    number, and each text starts with ``{``, so the joined check finds exactly what the
    separate checks would)."""
    return _may_differ(b"\n".join(texts))


def loads(raw: bytes, *, strict: bool = True) -> Any:
    """Strict RFC 8259 ``json.loads``: ``NaN``/``Infinity``/``-Infinity`` and numbers that
    overflow a double (``1e999``, re-encoded as ``Infinity``) raise ValueError, and so does
    hostile nesting (instead of RecursionError).

    ``strict=False`` is Python's own reading (those values accepted), for a MyInvois page:
    re-readable upstream, so its good items go on and the bad ones are dead-lettered.
    """
    checks: dict[str, Any] = (
        {"parse_constant": _reject_constant, "parse_float": _finite_float} if strict else {}
    )
    try:
        return json.loads(raw, **checks)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _reject_constant(name: str) -> Any:
    """Python's json accepts these non-JSON literals; strict consumers cannot parse them."""
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} overflows a double")
    return value


def parse_fast(raw: bytes) -> tuple[Any, bool]:
    """``(value, finite)``: orjson's value when it reads ``raw``, else :func:`loads`'.

    orjson reads strict JSON only: NaN/Infinity, lone surrogates and UTF-16 are left to
    ``json``. ``finite`` means orjson read it; its integers beyond 64 bits became floats,
    which :func:`canonical_json` notices (see :class:`InexactJsonError`).
    """
    try:
        return orjson.loads(raw), True
    except orjson.JSONDecodeError:
        return loads(raw), False  # the json module accepts or rejects it, with its message


def to_raw(value: Any, *, finite: bool = False) -> bytes:
    """The JSON bytes of one item, for dead-lettering an item of a parsed batch.

    ``finite`` (orjson parsed it): raises :class:`InexactJsonError` where ``json`` could
    have parsed the body differently.
    """
    try:
        text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except RecursionError:
        if finite:
            raise InexactJsonError("nested deeper than json writes") from None
        raise
    if finite and _may_differ(text.encode(errors="surrogatepass")):
        raise InexactJsonError("a number orjson and json may read differently")
    try:
        return text.encode()
    except UnicodeEncodeError:  # an unpaired surrogate escape: keep it escaped
        return json.dumps(value, separators=(",", ":")).encode()


# --- DocPlanner -------------------------------------------------------------------------


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


# --- MyInvois ---------------------------------------------------------------------------


def check_myinvois(item: Any) -> str | None:
    """Why ``item`` is not a MyInvois notification, or None when it is one."""
    if not isinstance(item, dict):
        return "notification is not a JSON object"
    notification_id = item.get("notificationId")
    if not isinstance(notification_id, str) or not notification_id or len(notification_id) > 200:
        return "notification has no string 'notificationId'"
    if parse_time(_with_zone(item.get("creationDateTime"))) is None:
        return "notification 'creationDateTime' is not an ISO 8601 time"
    type_id = item.get("typeId")
    if not isinstance(type_id, str | int) or isinstance(type_id, bool) or type_id == "":
        return "notification 'typeId' is missing"  # an empty one cannot be the entry's type
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


def myinvois_created(item: dict[str, Any]) -> datetime:
    """``creationDateTime`` of a valid MyInvois notification, in UTC."""
    moment = parse_time(_with_zone(item["creationDateTime"]))
    assert moment is not None, "check_myinvois first"
    return moment.astimezone(UTC)


def myinvois_order_key(item: dict[str, Any]) -> tuple[datetime, str]:
    """Oldest first: creationDateTime, then notificationId."""
    return (myinvois_created(item), str(item["notificationId"]))


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
            "type": str(int(notification["typeId"]))
            if str(notification["typeId"]).isdigit()
            else str(notification["typeId"]),
            "occurred_at": rfc3339(myinvois_created(notification)),
            "received_at": rfc3339(received_at),
            "delivery": "poll",
            "payload": canonical_json(notification),
            "schema": SCHEMA,
        },
    )


# --- Dead letters -----------------------------------------------------------------------


def deadletter_entry(
    stream: str,
    source: str,
    account: str,
    invalid: Invalid,
    received_at: datetime,
    position: int = 0,
) -> StreamEntry:
    """A dead-letter entry; its id makes a replay of the same receipt idempotent.

    ``position`` (the item's index in its batch) keeps two identical bad items of one
    receipt apart.
    """
    received = rfc3339(received_at)
    key = f"{received}|{invalid.reason}|{position}|".encode()
    digest = hashlib.sha256(key + invalid.raw)
    event_id = f"deadletter:{source}:{account}:{digest.hexdigest()[:32]}"
    return StreamEntry(
        stream,
        event_id,
        {
            "source": source,
            "account": account,
            "reason": invalid.reason,
            "detail": invalid.detail[:500],
            "raw": invalid.raw.decode("utf-8", errors="replace"),
            "received_at": received,
            "schema": SCHEMA,
        },
    )
