"""The stream contract as pydantic models: what an entry holds on the wire, and typed views.

Two layers:

- the **wire** models (:class:`EntryFields`, :class:`DeadLetterFields`) are the entries as
  Redis holds them, every value a string; the published JSON Schemas are generated from
  them (:mod:`drainer_consumer.contract`), so the schema and this code cannot drift;
- the **typed** views (:class:`Event`, :class:`DeadLetter`) are what a handler receives:
  times as aware ``datetime``, the payload parsed per source.

Parsing is a tolerant reader: fields this version does not know are ignored, so a consumer
keeps working when a later daemon adds one (the published schema is exact, so the daemon's
tests notice the change).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    WithJsonSchema,
)

SCHEMA_VERSION = "1"
RFC3339_Z = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"
ACCOUNT = r"[a-z0-9][a-z0-9_-]{0,62}"
EVENT_ID = rf"^(docplanner:{ACCOUNT}:[0-9a-f]{{32}}|myinvois:{ACCOUNT}:[\s\S]+)$"

Source = Literal["docplanner", "myinvois"]
Delivery = Literal["pull", "push", "poll"]


class EntryFields(BaseModel):
    """One entry of a notification stream (drainer:{docplanner}, drainer:{myinvois})."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        title="drainer stream entry (schema 1)",
        json_schema_extra={
            "allOf": [
                {
                    "if": {"properties": {"source": {"const": "docplanner"}}},
                    "then": {
                        "properties": {
                            "event_id": {"pattern": "^docplanner:"},
                            "delivery": {"enum": ["pull", "push"]},
                        }
                    },
                },
                {
                    "if": {"properties": {"source": {"const": "myinvois"}}},
                    "then": {
                        "properties": {
                            "event_id": {"pattern": "^myinvois:"},
                            "delivery": {"const": "poll"},
                        }
                    },
                },
            ]
        },
    )

    event_id: str = Field(
        pattern=EVENT_ID,
        description="De-duplication key: docplanner:<account>:<32 hex of sha256 of the "
        "canonical JSON> or myinvois:<account>:<notificationId>. Make your processing "
        "idempotent on it.",
    )
    source: Source = Field(description="Which upstream the notification came from.")
    account: str = Field(pattern=f"^{ACCOUNT}$", description="The configured account name.")
    type: str = Field(
        min_length=1,
        description="DocPlanner notification name (unknown names pass through); MyInvois "
        "typeId as decimal.",
    )
    occurred_at: str = Field(
        pattern=RFC3339_Z,
        json_schema_extra={"format": "date-time"},
        description="Upstream time, UTC, RFC 3339 with Z (DocPlanner created_at, MyInvois "
        "creationDateTime).",
    )
    received_at: str = Field(
        pattern=RFC3339_Z,
        json_schema_extra={"format": "date-time"},
        description="When the daemon received it, UTC, RFC 3339 with Z.",
    )
    delivery: Delivery = Field(description="How it arrived: pull or push (DocPlanner), poll.")
    payload: str = Field(
        min_length=2,
        json_schema_extra={"contentMediaType": "application/json"},
        description="The upstream notification object as JSON (sorted keys, compact).",
    )
    schema_version: Literal["1"] = Field(alias="schema", description="Entry format version.")


class DeadLetterFields(BaseModel):
    """One entry of drainer:{deadletter}: input that was not a valid notification."""

    model_config = ConfigDict(extra="forbid", frozen=True, title="drainer dead-letter entry")

    source: Source = Field(description="Where the bad input came from.")
    account: str = Field(pattern=f"^{ACCOUNT}$", description="The configured account name.")
    reason: str = Field(
        min_length=1,
        description="Why it was set aside: unparseable_body (a whole pull response), "
        "invalid_json, invalid_notification; later versions may add reasons.",
        examples=["unparseable_body", "invalid_json", "invalid_notification"],
    )
    detail: str = Field(default="", max_length=500, description="A human-readable detail.")
    raw: str = Field(description="The bytes as received, UTF-8 with replacement.")
    received_at: str = Field(
        pattern=RFC3339_Z,
        json_schema_extra={"format": "date-time"},
        description="When the daemon received it, UTC, RFC 3339 with Z.",
    )
    schema_version: Literal["1"] = Field(alias="schema", description="Entry format version.")


# --- payloads ------------------------------------------------------------------------------


def _parse_time(value: object) -> datetime | None:
    """The daemon's rule for an upstream time (daemon/envelope.py ``parse_time``, copied: the
    kit imports nothing of the daemon): a string of at most 64 characters that
    ``datetime.fromisoformat`` reads (``Z`` allowed), with an offset."""
    if isinstance(value, datetime):  # built in Python rather than read from an entry
        return value if value.tzinfo is not None else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _offset_time(value: object) -> datetime:
    moment = _parse_time(value)
    if moment is None:
        raise ValueError("not an ISO 8601 time with an offset (datetime.fromisoformat)")
    return moment


def _utc_time(value: object) -> datetime:
    """MyInvois times are UTC; some records omit the ``Z`` (daemon: ``_with_zone``)."""
    if isinstance(value, str) and value and not value.endswith("Z") and "+" not in value[10:]:
        value += "Z"
    return _offset_time(value)


def _time_schema(description: str) -> WithJsonSchema:
    # a string, but not "format": "date-time": upstream times are not always RFC 3339
    return WithJsonSchema({"type": "string", "description": description})


OffsetTime = Annotated[
    datetime,
    BeforeValidator(_offset_time),
    _time_schema(
        "ISO 8601 with an offset, as Python's datetime.fromisoformat reads it (also the "
        "basic format 20210512T101834+0100 and short offsets such as +01)."
    ),
]
UtcTime = Annotated[
    datetime,
    BeforeValidator(_utc_time),
    _time_schema("ISO 8601, UTC; some records omit the Z (read as UTC)."),
]


class DocPlannerNotification(BaseModel):
    """A DocPlanner notification: ``name``, ``data``, ``created_at``; nothing else promised.

    ``data`` always has ``facility``, ``doctor``, ``address``; per name also
    ``visit_booking``, ``old_visit_booking``/``new_visit_booking``, ``break``,
    ``address_service``, ``visit_payment_status``, ``presence``. Names seen: slot-booked,
    booking-canceled, booking-confirmed, booking-moved, booking-payment-status-changed,
    break-created, break-moved, break-removed, presence-marked, address-service-created,
    -changed, -deleted, address-commercial-type-changed, address-assigned,
    address-unassigned, slot-booking, booking-moving; unknown names pass through.
    """

    model_config = ConfigDict(extra="allow", frozen=True, title="DocPlanner notification")

    name: str = Field(min_length=1, max_length=200, examples=["slot-booked"])
    data: dict[str, Any] = Field(description="The event's objects (facility, doctor, ...).")
    created_at: OffsetTime


def _as_sent(description: str) -> Any:
    """An upstream field the daemon passes on unchecked: any JSON value, or absent (None)."""
    return Field(default=None, description=f"{description} Any JSON type, as upstream sent it.")


class MyInvoisNotification(BaseModel):
    """A MyInvois notification (Get Notifications, ``Notification``); extra fields allowed.

    The daemon guarantees ``notificationId``, ``creationDateTime`` and ``typeId``; every
    other field is as upstream sent it, of whatever JSON type (the documented types are
    strings, but the daemon does not check them, so neither does the kit). Status 1 New,
    2 Pending, 3 Batched, 4 Delivered, 5 Error. Types 3, 6, 7, 8, 10, 11, 15, 26, 33, 34, 35.
    """

    model_config = ConfigDict(extra="allow", frozen=True, title="MyInvois notification")

    notificationId: str = Field(min_length=1, max_length=200)  # noqa: N815
    creationDateTime: UtcTime  # noqa: N815
    typeId: str | int  # noqa: N815
    receiverName: Any = _as_sent("Documented as a string.")  # noqa: N815
    notificationDeliveryId: Any = _as_sent("Documented as a string.")  # noqa: N815
    receivedDateTime: Any = _as_sent("Documented as an ISO 8601 string.")  # noqa: N815
    notificationSubject: Any = _as_sent("Documented as a string.")  # noqa: N815
    deliveredDateTime: Any = _as_sent("Documented as an ISO 8601 string.")  # noqa: N815
    typeName: Any = _as_sent("Documented as a string.")  # noqa: N815
    finalMessage: Any = _as_sent("Documented as a string.")  # noqa: N815
    address: Any = _as_sent("Documented as a string.")
    language: Any = _as_sent("Documented as a string.")
    status: Any = _as_sent("1 New, 2 Pending, 3 Batched, 4 Delivered, 5 Error: a number or name.")
    deliveryAttempts: Any = _as_sent(  # noqa: N815
        "Documented as a list of {attemptDateTime, status, statusDetails}."
    )


# --- typed views ---------------------------------------------------------------------------


class Event(BaseModel):
    """One notification from a drainer stream, typed; ``stream`` and ``entry_id`` locate it."""

    model_config = ConfigDict(frozen=True)

    stream: str
    entry_id: str
    event_id: str
    source: Source
    account: str
    type: str
    occurred_at: AwareDatetime
    received_at: AwareDatetime
    delivery: Delivery
    payload: DocPlannerNotification | MyInvoisNotification
    schema_version: str = SCHEMA_VERSION

    @classmethod
    def from_fields(cls, stream: str, entry_id: str, fields: dict[str, str]) -> Event:
        """Validate one entry's fields (unknown ones ignored); raises pydantic ValidationError."""
        wire = EntryFields.model_validate(_known(EntryFields, fields))
        document = json.loads(wire.payload)
        payload: DocPlannerNotification | MyInvoisNotification
        if wire.source == "docplanner":
            payload = DocPlannerNotification.model_validate(document)
        else:
            payload = MyInvoisNotification.model_validate(document)
        return cls(
            stream=stream,
            entry_id=entry_id,
            event_id=wire.event_id,
            source=wire.source,
            account=wire.account,
            type=wire.type,
            occurred_at=_utc(wire.occurred_at),
            received_at=_utc(wire.received_at),
            delivery=wire.delivery,
            payload=payload,
            schema_version=wire.schema_version,
        )


class DeadLetter(BaseModel):
    """One entry of the daemon's dead-letter stream, typed."""

    model_config = ConfigDict(frozen=True)

    stream: str
    entry_id: str
    source: Source
    account: str
    reason: str
    detail: str
    raw: str
    received_at: AwareDatetime
    schema_version: str = SCHEMA_VERSION

    @classmethod
    def from_fields(cls, stream: str, entry_id: str, fields: dict[str, str]) -> DeadLetter:
        """Validate one dead-letter entry's fields; raises pydantic ValidationError."""
        wire = DeadLetterFields.model_validate(_known(DeadLetterFields, fields))
        return cls(
            stream=stream,
            entry_id=entry_id,
            source=wire.source,
            account=wire.account,
            reason=wire.reason,
            detail=wire.detail,
            raw=wire.raw,
            received_at=_utc(wire.received_at),
            schema_version=wire.schema_version,
        )


def parse_entry(stream: str, entry_id: str, fields: dict[str, str]) -> Event | DeadLetter:
    """An :class:`Event`, or a :class:`DeadLetter` for a dead-letter entry (no ``event_id``,
    a ``reason``). Raises ``ValueError`` (pydantic's ValidationError is one) when the entry
    is neither."""
    if "event_id" not in fields and "reason" in fields:
        return DeadLetter.from_fields(stream, entry_id, fields)
    return Event.from_fields(stream, entry_id, fields)


def _known(model: type[BaseModel], fields: dict[str, str]) -> dict[str, str]:
    names = {info.alias or name for name, info in model.model_fields.items()}
    return {key: value for key, value in fields.items() if key in names}


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
