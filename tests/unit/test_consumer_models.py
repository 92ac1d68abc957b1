"""The consumer kit's typed views of stream entries (pure: no Redis)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from daemon.envelope.docplanner import check_docplanner, docplanner_entry
from daemon.envelope.entries import Invalid, deadletter_entry
from daemon.envelope.myinvois import check_myinvois, myinvois_entry
from drainer_consumer import (
    Consumer,
    DeadLetter,
    DocPlannerNotification,
    Event,
    MyInvoisNotification,
    parse_entry,
)

NOW = datetime(2026, 12, 8, 1, 2, 3, tzinfo=UTC)
BOOKED = {
    "name": "slot-booked",
    "data": {"facility": {"id": "1"}, "doctor": {"id": "2"}, "address": {"id": "3"}},
    "created_at": "2026-11-02T10:18:34+01:00",
    "new_upstream_field": True,
}


def test_a_docplanner_entry_becomes_a_typed_event() -> None:
    """Times are aware datetimes, the payload a DocPlannerNotification with extras kept."""
    fields = docplanner_entry("s", "pl", BOOKED, NOW, "pull").fields
    event = Event.from_fields("drainer:{docplanner}", "5-0", fields)
    assert isinstance(event.payload, DocPlannerNotification)
    assert event.payload.name == "slot-booked" and event.payload.data["doctor"] == {"id": "2"}
    assert event.payload.created_at == datetime(2026, 11, 2, 9, 18, 34, tzinfo=UTC)
    assert event.payload.model_extra == {"new_upstream_field": True}
    assert (event.stream, event.entry_id, event.received_at) == ("drainer:{docplanner}", "5-0", NOW)


def test_a_myinvois_entry_has_its_documented_fields_and_utc_creation_time() -> None:
    """A record without 'Z' on creationDateTime is read as UTC; typeId stays as sent."""
    record = {"notificationId": "73DKLJHH78NJUHQ", "creationDateTime": "2026-11-02T10:18:34"}
    record |= {"typeId": "6", "typeName": "Document received", "status": "delivered"}
    event = Event.from_fields("m", "1-0", myinvois_entry("m", "acme", record, NOW).fields)
    assert isinstance(event.payload, MyInvoisNotification)
    assert event.payload.creationDateTime == datetime(2026, 11, 2, 10, 18, 34, tzinfo=UTC)
    assert (event.type, event.payload.typeId, event.payload.status) == ("6", "6", "delivered")


def test_unknown_entry_fields_are_ignored_and_missing_ones_refused() -> None:
    """Tolerant reader: a field a later daemon adds is ignored; a missing field is an error."""
    fields = docplanner_entry("s", "pl", BOOKED, NOW, "push").fields
    assert parse_entry("s", "1-0", {**fields, "trace_id": "abc"}) == parse_entry("s", "1-0", fields)
    with pytest.raises(ValidationError):
        parse_entry("s", "1-0", {k: v for k, v in fields.items() if k != "occurred_at"})
    with pytest.raises(ValueError):
        parse_entry("s", "1-0", {**fields, "payload": "{not json"})


def test_a_dead_letter_entry_becomes_a_deadletter() -> None:
    """An entry with a reason and no event_id is the daemon's dead letter."""
    invalid = Invalid("invalid_json", "push body is not JSON", b'{"name": ')
    fields = deadletter_entry("d", "docplanner", "pl", invalid, NOW).fields
    letter = parse_entry("drainer:{deadletter}", "2-0", fields)
    assert isinstance(letter, DeadLetter)
    assert (letter.reason, letter.raw, letter.received_at) == ("invalid_json", '{"name": ', NOW)


def test_consumer_refuses_settings_that_cannot_work() -> None:
    """max_deliveries 0 or a zero claim_idle: a clear error before any connection."""
    with pytest.raises(ValueError, match="max_deliveries"):
        Consumer("redis://127.0.0.1:1/0", "s", "g", "c", print, max_deliveries=0)
    with pytest.raises(ValueError, match="claim_idle"):
        Consumer("redis://127.0.0.1:1/0", "s", "g", "c", print, claim_idle=0)


def test_the_kit_imports_without_the_daemon() -> None:
    """drainer_consumer (and its CLI) load with the daemon package made unimportable."""
    code = (
        "import sys; sys.modules['daemon'] = None\n"
        "import drainer_consumer, drainer_consumer.__main__, drainer_consumer.contract\n"
        "assert not [m for m in sys.modules if m.startswith('daemon.')]\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- what the daemon publishes, the kit parses ------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
# ISO 8601 as people write it (basic and extended, short offsets, a space, a comma), and
# anything else: the daemon's check decides which of them are times.
ISO = st.from_regex(
    r"\d{4}-?\d{2}-?\d{2}([T ]\d{2}(:?\d{2}(:?\d{2}([.,]\d{1,9})?)?)?)?(Z|[+-]\d{2}(:?\d{2})?)?",
    fullmatch=True,
)
OFFSETS = st.timedeltas(min_value=timedelta(hours=-23), max_value=timedelta(hours=23))
FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y%m%dT%H%M%S%z", "%Y-%m-%d %H:%M:%S.%f%z", "%Y-%m-%dT%H:%M")
TIMES = ISO | st.builds(
    lambda moment, offset, form: moment.replace(tzinfo=timezone(offset)).strftime(form),
    st.datetimes(),
    OFFSETS.map(lambda d: timedelta(minutes=d // timedelta(minutes=1))),
    st.sampled_from(FORMATS),
)
RELAXED = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.filter_too_much]
)
MYINVOIS_FIELDS = [
    *("receiverName", "notificationDeliveryId", "receivedDateTime", "notificationSubject"),
    *("deliveredDateTime", "typeName", "finalMessage", "address", "language", "status"),
    "deliveryAttempts",
]


@RELAXED
@given(
    name=st.text(min_size=1, max_size=200),
    data=st.dictionaries(st.text(), JSON, max_size=3),
    created=TIMES,
    extra=st.dictionaries(st.text(), JSON, max_size=3),
)
def test_every_docplanner_notification_the_daemon_accepts_parses_in_the_kit(
    name: Any, data: Any, created: Any, extra: dict[str, Any]
) -> None:
    """check_docplanner's yes is the kit's yes: any created_at fromisoformat reads, any data."""
    item = {**extra, "name": name, "data": data, "created_at": created}
    assume(check_docplanner(item) is None)
    try:
        fields = docplanner_entry("s", "pl", item, NOW, "pull").fields
    except (ValueError, OverflowError):  # never published (poison items, issue 24)
        assume(False)
    event = parse_entry("s", "1-0", fields)
    assert isinstance(event, Event) and isinstance(event.payload, DocPlannerNotification)
    assert event.payload.created_at == event.occurred_at


@RELAXED
@given(
    notification_id=st.text(min_size=1, max_size=200),
    created=TIMES,
    type_id=st.integers() | st.text(),
    known=st.fixed_dictionaries({}, optional=dict.fromkeys(MYINVOIS_FIELDS, JSON)),
    extra=st.dictionaries(st.text(), JSON, max_size=3),
)
def test_every_myinvois_notification_the_daemon_accepts_parses_in_the_kit(
    notification_id: Any, created: Any, type_id: Any, known: dict[str, Any], extra: dict[str, Any]
) -> None:
    """check_myinvois's yes is the kit's yes: e.g. "status": 4, a numeric notificationDeliveryId."""
    item = {**extra, **known, "notificationId": notification_id}
    item |= {"creationDateTime": created, "typeId": type_id}
    assume(check_myinvois(item) is None)
    try:
        fields = myinvois_entry("m", "acme", item, NOW).fields
    except (ValueError, OverflowError):  # a typeId "³", a year-1 time: never published
        assume(False)  # (poison items, issue 24: dead-lettered by the daemon, not the kit's)
    event = parse_entry("m", "1-0", fields)
    assert isinstance(event, Event) and isinstance(event.payload, MyInvoisNotification)
    assert event.payload.creationDateTime == event.occurred_at
    assert event.payload.model_dump(by_alias=True)["status"] == item.get("status")


def test_the_values_the_reviewer_found_parse() -> None:
    """MyInvois "status": 4 and notificationDeliveryId 12345; DocPlanner basic-format times."""
    record = {"notificationId": "N1", "creationDateTime": "2026-11-02T10:18:34Z", "typeId": 3}
    record |= {"status": 4, "notificationDeliveryId": 12345, "deliveryAttempts": [{"x": 1}]}
    event = Event.from_fields("m", "1-0", myinvois_entry("m", "acme", record, NOW).fields)
    assert isinstance(event.payload, MyInvoisNotification)
    assert (event.payload.status, event.payload.notificationDeliveryId) == (4, 12345)
    for created in ("20210512T101834+0100", "2021-05-12T10:18:34+01"):
        item = {**BOOKED, "created_at": created}
        event = Event.from_fields("s", "1-0", docplanner_entry("s", "pl", item, NOW, "pull").fields)
        assert event.payload.created_at == datetime(2021, 5, 12, 9, 18, 34, tzinfo=UTC)


def test_an_empty_typeid_is_no_myinvois_notification() -> None:
    """The entry's type is the typeId: an empty one is dead-lettered, not published as ""."""
    record = {"notificationId": "N1", "creationDateTime": "2026-11-02T10:18:34Z", "typeId": ""}
    assert check_myinvois(record) == "notification 'typeId' is not a decimal type id"
