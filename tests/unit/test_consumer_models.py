"""The consumer kit's typed views of stream entries (pure: no Redis)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from daemon.envelope.docplanner import docplanner_entry
from daemon.envelope.entries import Invalid, deadletter_entry
from daemon.envelope.myinvois import myinvois_entry
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
